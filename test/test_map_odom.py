"""map->odom correction (fol_vpr_ros.node.map_odom): known poses give the known correction, smoothing, jumps, rate."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.node import NodeParams
from fol_vpr_ros.node.gating import OdomPose
from fol_vpr_ros.node.map_odom import CorrectionOutcome, MapOdomBroadcaster, MapOdomConfig, map_odom_correction
from fol_vpr_ros.node.pose import PoseEstimate
from fol_vpr_ros.sources.geometry import RigidTransform, quat_angle, quat_from_axis_angle

S = 1_000_000_000
COV = tuple([0.0] * 36)


def _estimate(t: RigidTransform, stamp: int = 5 * S, frame: str = "map") -> PoseEstimate:
    return PoseEstimate(stamp, frame, t.translation, t.rotation, COV, 1.0, 0.1, 3)


def _odom(t: RigidTransform, stamp: int = 5 * S, frame: str = "odom") -> OdomPose:
    return OdomPose(stamp, t.translation, t.rotation, frame)


def _yaw(deg: float) -> tuple[float, ...]:
    return tuple(quat_from_axis_angle((0.0, 0.0, 1.0), math.radians(deg)))


def _close(a: RigidTransform, b: RigidTransform) -> bool:
    return np.allclose(a.translation, b.translation, atol=1e-9) and float(quat_angle(a.rotation, b.rotation)) < 1e-9


def test_known_poses_give_the_known_correction():
    t_map_odom = RigidTransform((10.0, -4.0, 0.5), _yaw(30.0))
    t_odom_base = RigidTransform((2.0, 1.0, 0.0), _yaw(-75.0))
    t_map_base = t_map_odom @ t_odom_base
    c = map_odom_correction(_estimate(t_map_base), _odom(t_odom_base))
    assert (c.parent_frame, c.child_frame, c.stamp_ns) == ("map", "odom", 5 * S)
    assert _close(c.transform, t_map_odom)
    # the correction maps the odometry pose onto the map pose
    assert _close(c.transform @ t_odom_base, t_map_base)


def test_first_correction_taken_as_is_then_smoothed_toward_new_ones():
    b = MapOdomBroadcaster(MapOdomConfig(rate_hz=10.0, smoothing=0.25))
    base = RigidTransform((1.0, 0.0, 0.0))
    assert b.current is None and b.due(0) is None
    assert b.update(_estimate(RigidTransform((5.0, 0.0, 0.0), _yaw(0.0)) @ base), _odom(base)) \
        is CorrectionOutcome.FIRST
    assert _close(b.current.transform, RigidTransform((5.0, 0.0, 0.0)))
    assert b.update(_estimate(RigidTransform((9.0, 0.0, 0.0), _yaw(40.0)) @ base), _odom(base)) \
        is CorrectionOutcome.SMOOTHED
    got = b.current.transform
    assert got.translation == pytest.approx((6.0, 0.0, 0.0))  # 5 + 0.25 * (9 - 5)
    assert math.degrees(float(quat_angle(got.rotation, (0.0, 0.0, 0.0, 1.0)))) == pytest.approx(10.0)


def test_jumps_above_the_limits_are_refused():
    b = MapOdomBroadcaster(MapOdomConfig(smoothing=1.0, max_jump_m=2.0, max_jump_deg=20.0))
    base = RigidTransform()
    b.update(_estimate(RigidTransform((0.0, 0.0, 0.0))), _odom(base))
    assert b.update(_estimate(RigidTransform((3.0, 0.0, 0.0))), _odom(base)) is CorrectionOutcome.JUMP_REFUSED
    assert b.update(_estimate(RigidTransform((0.0, 0.0, 0.0), _yaw(25.0))), _odom(base)) \
        is CorrectionOutcome.JUMP_REFUSED
    assert _close(b.current.transform, RigidTransform())
    assert b.update(_estimate(RigidTransform((1.5, 0.0, 0.0))), _odom(base)) is CorrectionOutcome.SMOOTHED
    assert b.current.transform.translation == pytest.approx((1.5, 0.0, 0.0))


def test_missing_odometry_and_same_frame_leave_it_alone():
    b = MapOdomBroadcaster(MapOdomConfig())
    assert b.update(_estimate(RigidTransform()), None) is CorrectionOutcome.NO_ODOMETRY
    assert b.update(_estimate(RigidTransform(), frame="odom"), _odom(RigidTransform())) is CorrectionOutcome.SAME_FRAME
    assert b.current is None


def test_rate_limited_and_restamped_with_the_current_time():
    b = MapOdomBroadcaster(MapOdomConfig(rate_hz=4.0))
    b.update(_estimate(RigidTransform((1.0, 2.0, 3.0))), _odom(RigidTransform()))
    sent = [t for t in range(0, 2 * S, S // 20) if b.due(10 * S + t) is not None]
    assert len(sent) == 8  # 2 s at 4 Hz
    assert all(b - a >= S // 4 for a, b in itertools.pairwise(sent))
    out = b.due(20 * S)
    assert out.stamp_ns == 20 * S and out.transform.translation == pytest.approx((1.0, 2.0, 3.0))
    assert b.due(20 * S + 1) is None
    assert b.due(19 * S) is not None  # the clock went back (a bag replay restarted): send again


@pytest.mark.parametrize("kwargs, word", [({"rate_hz": 0.0}, "tf.rate_hz"), ({"smoothing": 0.0}, "tf.smoothing"),
                                          ({"smoothing": 1.5}, "tf.smoothing"), ({"max_jump_m": -1.0}, "max_jump_m")])
def test_bad_settings_name_the_parameter(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        MapOdomConfig(**kwargs)


def test_params_build_the_config_and_publish_tf_needs_localize_with_odometry():
    cfg = MapOdomConfig.from_params(NodeParams())
    assert (cfg.rate_hz, cfg.smoothing, cfg.max_jump_m, cfg.max_jump_deg) == (10.0, 0.5, 0.0, 0.0)
    NodeParams(publish_tf=True)
    with pytest.raises(ConfigError, match="publish_tf"):
        NodeParams(publish_tf=True, mode="loop_closure")
    from fol_vpr_ros.node.params import OdometryParams

    with pytest.raises(ConfigError, match=r"odometry\.topic"):
        NodeParams(publish_tf=True, odometry=OdometryParams(topic=""))
