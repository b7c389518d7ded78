"""The rclpy node end to end on real rclpy + rmw_fastrtps (own ROS domain, LOCALHOST discovery; conftest).

The node runs as the launch file runs it: the installed ``fol_vpr_node`` executable with ``--ros-args``,
the packaged params file plus overrides, remaps and a namespace. A peer node in this process publishes
images and reads results, /diagnostics, /rosout and the parameter services. A 1-block ViT-S at
224 x 224 (synthetic weights saved as a checkpoint) and a 10-image corridor map keep it quick.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import ros_import, tiny_checkpoint

pytestmark = pytest.mark.ros

rclpy = ros_import("rclpy")
ros_import("fol_vpr_ros.msg")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from fol_vpr_ros.msg import LoopClosure, PlaceRecognitionResult  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from rosnet import (  # noqa: E402
    NodeProcess,
    Peer,
    compressed_msg,
    diag_values,
    image_msg,
    node_executable,
    stamp_ns,
    wait_started,
)
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from fol_vpr_ros.image_io import read_image  # noqa: E402
from fol_vpr_ros.jobs.build_map import build_map  # noqa: E402
from fol_vpr_ros.mapping import VprMap  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "config" / "localize.yaml"
S = 1_000_000_000
START_TIMEOUT = 90.0  # node start (torch import, model, map) on 2 busy cores
ANSWER_TIMEOUT = 60.0
RAW_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8", "mono16")
CAMERA = "camera/image_raw"  # relative: each node process gets its own namespace (tests run side by side)
LOAD_HZ = 30.0
LOAD_SECONDS = 20.0
ROSOUT_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module")
def assets(shared_data, tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("rclpy_node")
    weights = tiny_checkpoint(tmp / "fol_tiny.pth", seed=3)
    images = tmp / "ref"
    images.mkdir()
    for i in range(10):
        shutil.copyfile(shared_data / "vprbench_corridor" / "ref" / f"{i:07d}.jpg", images / f"{i:07d}.jpg")
    build_map(images, tmp / "map", str(weights), resize=(224, 224), progress=False)
    return {"weights": str(weights), "map": str(tmp / "map"), "tmp": str(tmp),
            "query": str(shared_data / "vprbench_corridor" / "query" / "0000003.jpg")}


def _args(assets: dict[str, str], ns: str, *extra: str, mode: str = "localize") -> list[str]:
    """What localize.launch.py passes: node name, params file + overrides, remaps, namespace."""
    return ["-r", "__node:=fol_vpr", "-r", f"__ns:={ns}", "--params-file", str(PARAMS),
            "-p", f"weights:={assets['weights']}", "-p", "input_size:=[224, 224]", "-p", "top_k:=3",
            "-p", "rerank_k:=3", "-p", "min_rerank_score:=0.0", "-p", "odometry.topic:=''",
            "-p", "keyframe.min_interval_sec:=0.0", "-p", "diagnostics.period_sec:=0.5", "-p", f"mode:={mode}",
            "-r", f"image:={ns}/{CAMERA}", "-r", f"image/compressed:={ns}/{CAMERA}/compressed", *extra]


def _started(peer: Peer, node: NodeProcess, ns: str) -> None:
    """Wait for the node's result publisher (discovery) or its death."""
    wait_started(peer, node, ns, START_TIMEOUT)


def _send_until_answered(peer: Peer, pub, msg, results: list, want_stamp: int, timeout: float = ANSWER_TIMEOUT):
    """Publish ``msg`` every 0.5 s until a result with ``want_stamp`` arrives; that result."""
    def got():
        return next((r for r in results if stamp_ns(r.header) == want_stamp), None)
    assert peer.wait(lambda: got() is not None, timeout, poll=lambda: pub.publish(msg)), \
        f"no result for stamp {want_stamp} within {timeout} s"
    return got()


# ---------------------------------------------------------------------------------------------- raw images
@pytest.fixture(scope="module")
def raw_node(assets, tmp_path_factory):
    log = tmp_path_factory.mktemp("raw_node") / "node.log"
    ns = "/robot_raw"
    peer = Peer()
    results = peer.collect(f"{ns}/fol_vpr/result", PlaceRecognitionResult)
    diagnostics = peer.collect("/diagnostics", DiagnosticArray)
    rosout = peer.collect("/rosout", Log, ROSOUT_QOS)
    node = NodeProcess(_args(assets, ns, "-p", f"map_path:={assets['map']}"), log)
    try:
        _started(peer, node, ns)
        pub = peer.node.create_publisher(Image, f"{ns}/{CAMERA}", qos_profile_sensor_data)
        yield {"peer": peer, "node": node, "pub": pub, "results": results, "diagnostics": diagnostics,
               "rosout": rosout, "rgb": read_image(assets["query"]), "ns": ns, "fqn": f"{ns}/fol_vpr"}
    finally:
        code = node.stop()
        peer.close()
        assert code == 0, f"node exited with {code}:\n{node.output()}"


@pytest.mark.parametrize("encoding", RAW_ENCODINGS)
def test_raw_encodings_answered_with_input_stamps(raw_node, encoding):
    t = (100 + RAW_ENCODINGS.index(encoding)) * S + 12345
    msg = image_msg(raw_node["rgb"], encoding, t, frame_id="cam_front")
    r = _send_until_answered(raw_node["peer"], raw_node["pub"], msg, raw_node["results"], t)
    assert r.header.frame_id == "map" and r.camera_frame_id == "cam_front"
    assert len(r.candidates) == 3 and [c.rank for c in r.candidates] == [0, 1, 2]
    assert r.accepted and r.accepted_index == 0 and r.status == "ok"
    assert r.total_ms >= r.describe_ms > 0


def test_parameters_declared_with_descriptors_and_listed_over_services(raw_node):
    peer = raw_node["peer"]
    listed = peer.call(ListParameters, f"{raw_node['ns']}/fol_vpr/list_parameters", ListParameters.Request())
    names = set(listed.result.names)
    assert {"top_k", "rerank_k", "weights", "map_path", "input_size", "keyframe.min_interval_sec",
            "use_sim_time"} <= names
    req = DescribeParameters.Request(names=["top_k", "rerank_threshold", "mode"])
    top_k, thr, mode = peer.call(DescribeParameters, f"{raw_node['ns']}/fol_vpr/describe_parameters", req).descriptors
    assert top_k.read_only and top_k.description and top_k.integer_range[0].from_value == 1
    assert thr.floating_point_range and thr.floating_point_range[0].to_value <= 1.0
    assert "localize" in mode.additional_constraints and "loop_closure" in mode.additional_constraints
    got = peer.call(GetParameters, f"{raw_node['ns']}/fol_vpr/get_parameters",
                    GetParameters.Request(names=["top_k", "input_size", "map_path"])).values
    assert got[0].integer_value == 3 and list(got[1].integer_array_value) == [224, 224]  # overrides win
    assert Path(got[2].string_value).name == "map"


BAD_INPUTS = {  # name -> (message builder, error kind counted in diagnostics)
    "wrong encoding": (lambda m: setattr(m, "encoding", "yuv9000"), "unknown_encoding"),
    "short data": (lambda m: setattr(m, "data", bytes(m.data)[: len(m.data) // 2]), "bad_step"),
    "wrong step": (lambda m: setattr(m, "step", m.width), "bad_step"),
    "0x0": (lambda m: (setattr(m, "height", 0), setattr(m, "width", 0), setattr(m, "step", 0),
                       setattr(m, "data", b"")), "zero_size"),
}


def test_bad_inputs_logged_to_rosout_counted_at_warn_and_the_node_keeps_answering(raw_node):
    peer, pub, rgb = raw_node["peer"], raw_node["pub"], raw_node["rgb"]
    kinds = {}
    for i, (spoil, kind) in enumerate(BAD_INPUTS.values()):
        msg = image_msg(rgb, "rgb8", (300 + i) * S)
        spoil(msg)
        for _ in range(3):  # best effort: send a few times
            pub.publish(msg)
            time.sleep(0.2)
        kinds[kind] = kinds.get(kind, 0) + 1

    def counted():
        fqn = raw_node["fqn"]
        last = next((diag_values(d, fqn) for d in reversed(raw_node["diagnostics"]) if diag_values(d, fqn)), {})
        return last if all(int(last.get(f"error.{k}", 0)) >= 1 for k in kinds) else None
    assert peer.wait(lambda: counted() is not None, ANSWER_TIMEOUT), "errors not counted in /diagnostics"
    values = counted()
    assert values["_level"] in (1, 2), values  # WARN (some frames failed) or ERROR (all recent frames failed)
    assert int(values["frames_failed"]) >= len(BAD_INPUTS)
    logged = [log.msg for log in raw_node["rosout"] if log.name == "robot_raw.fol_vpr"]
    for kind in kinds:
        assert any(kind in text for text in logged), f"{kind} not on /rosout: {logged}"
    t = 400 * S
    r = _send_until_answered(peer, pub, image_msg(rgb, "rgb8", t), raw_node["results"], t)
    assert r.accepted
    # once good frames flow again, the level recovers as the failures age out of the window
    more = itertools.count(401)
    assert peer.wait(lambda: any(diag_values(d, raw_node["fqn"]).get("_level") == 0
                                 for d in raw_node["diagnostics"][-3:]), 30.0,
                     poll=lambda: pub.publish(image_msg(rgb, "rgb8", next(more) * S)))


@pytest.mark.parametrize("case", ["missing params file", "bad domain id", "typo in params file", "missing map",
                                  "bad value"])
def test_bad_start_ups_give_one_line_and_exit_2(assets, tmp_path, case):
    env = dict(os.environ)
    args = _args(assets, "/robot_bad", "-p", f"map_path:={assets['map']}")
    if case == "missing params file":
        args += ["--params-file", str(tmp_path / "nope.yaml")]
        want = "nope.yaml: no such file"
    elif case == "bad domain id":
        env["ROS_DOMAIN_ID"] = "abc"
        want = "ROS_DOMAIN_ID"
    elif case == "typo in params file":
        typo = tmp_path / "typo.yaml"
        typo.write_text("/**:\n  ros__parameters:\n    top_kk: 5\n")
        args += ["--params-file", str(typo)]
        want = "top_kk"
    elif case == "missing map":
        args += ["-p", f"map_path:={tmp_path / 'no_map'}"]
        want = "no_map"
    else:
        args += ["-p", "top_k:=0"]
        want = "top_k"
    proc = subprocess.run([node_executable(), "--ros-args", *args], env=env, capture_output=True, text=True,
                          timeout=START_TIMEOUT)
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(errors) == 1 and want in errors[0] and "Traceback" not in proc.stderr, proc.stderr


def test_30hz_for_20s_latest_frame_processing(raw_node):
    peer, pub, rgb, node = raw_node["peer"], raw_node["pub"], raw_node["rgb"], raw_node["node"]
    results = raw_node["results"]
    before = len(results)
    base = 1000 * S
    period = 1.0 / LOAD_HZ
    sent = []
    rss = []
    t0 = time.monotonic()
    n = int(LOAD_HZ * LOAD_SECONDS)
    for i in range(n):
        due = t0 + i * period
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        t = base + round(i * period * S)
        pub.publish(image_msg(rgb, "rgb8", t))
        sent.append(t)
        if i % int(LOAD_HZ) == 0:
            rss.append(node.rss_kib())
    elapsed = time.monotonic() - t0
    peer.wait(lambda: False, 3.0)  # let the last frame finish
    got = [stamp_ns(r.header) for r in results[before:] if stamp_ns(r.header) >= base]
    assert got and set(got) <= set(sent), "results must carry the stamps of the images they answer"
    assert got == sorted(got)
    snap = next(v for d in reversed(raw_node["diagnostics"]) if (v := diag_values(d, raw_node["fqn"])))
    received, processed, dropped = (int(snap[k]) for k in ("frames_received", "frames_processed",
                                                            "frames_dropped"))
    assert dropped > 0 and processed + dropped <= received
    growth_mib = (max(rss[len(rss) // 2:]) - rss[len(rss) // 2]) / 1024
    assert growth_mib < 64, f"RSS grew {growth_mib:.1f} MiB in the second half of the load: {rss}"
    print(f"\n30 Hz load: {n} sent in {elapsed:.1f} s, {len(got)} answered, node: received {received}, "
          f"processed {processed}, dropped {dropped}; RSS {rss[0] / 1024:.0f} -> {rss[-1] / 1024:.0f} MiB")


# ---------------------------------------------------------------------------------------------- compressed
def test_compressed_jpeg_png_and_garbage(assets, tmp_path):
    ns = "/robot_compressed"
    peer = Peer()
    results = peer.collect(f"{ns}/fol_vpr/result", PlaceRecognitionResult)
    diagnostics = peer.collect("/diagnostics", DiagnosticArray)
    node = NodeProcess(_args(assets, ns, "-p", f"map_path:={assets['map']}", "-p", "image_transport:=compressed"),
                       tmp_path / "node.log")
    try:
        _started(peer, node, ns)
        pub = peer.node.create_publisher(CompressedImage, f"{ns}/{CAMERA}/compressed", qos_profile_sensor_data)
        rgb = read_image(assets["query"])
        garbage = compressed_msg(rgb, "jpeg", 5 * S)
        garbage.data = b"\xff\xd8\xff\xe0 not a jpeg at all"
        for _ in range(3):
            pub.publish(garbage)
            time.sleep(0.2)
        for i, fmt in enumerate(("jpeg", "png")):
            t = (10 + i) * S
            r = _send_until_answered(peer, pub, compressed_msg(rgb, fmt, t), results, t)
            assert r.accepted and len(r.candidates) == 3
        assert peer.wait(lambda: any(int(diag_values(d, f"{ns}/fol_vpr").get("error.corrupt_compressed", 0)) >= 1
                                     for d in diagnostics), 10.0)
    finally:
        code = node.stop()
        peer.close()
    assert code == 0, node.output()


# ---------------------------------------------------------------------------------------------- loop closure
def _loop_node(assets, tmp_path, map_dir: Path, ns: str):
    peer = Peer()
    results = peer.collect(f"{ns}/fol_vpr/result", PlaceRecognitionResult)
    loops = peer.collect(f"{ns}/fol_vpr/loop_closure", LoopClosure)
    node = NodeProcess(_args(assets, ns, "-p", f"map_path:={map_dir}", "-p", "exclusion.min_time_sec:=0.0",
                             "-p", "exclusion.min_keyframes:=0", mode="loop_closure"), tmp_path / "node.log")
    try:
        _started(peer, node, ns)
    except BaseException:
        node.kill()
        peer.close()
        raise
    pub = peer.node.create_publisher(Image, f"{ns}/{CAMERA}", qos_profile_sensor_data)
    return peer, node, pub, results, loops


def _feed(peer, pub, results, rgb, stamps):
    for t in stamps:
        _send_until_answered(peer, pub, image_msg(rgb, "rgb8", t), results, t)


@pytest.mark.parametrize("signals", [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)],
                         ids=["sigint", "sigterm", "double-sigint"])
def test_loop_closure_saves_its_map_on_shutdown_signals(assets, tmp_path, signals):
    map_dir = tmp_path / "online_map"
    ns = "/robot_" + "_".join(signal.Signals(s).name.lower() for s in signals)
    peer, node, pub, results, loops = _loop_node(assets, tmp_path, map_dir, ns)
    try:
        rgb = read_image(assets["query"])
        _feed(peer, pub, results, rgb, [(20 + i) * S for i in range(3)])
        assert peer.wait(lambda: len(loops) >= 2, 10.0), f"loop closures expected for repeated images: {loops}"
        for i, sig in enumerate(signals):
            if i:
                time.sleep(0.3)
            node.signal(sig)
        code = node.wait(60)
    finally:
        peer.close()
        node.kill()
    out = node.output()
    assert code == 0, out
    saved = VprMap.open(map_dir)
    assert len(saved) >= 3, out  # each frame was answered (a re-sent frame may be a keyframe twice)


def test_save_map_service_while_images_flow(assets, tmp_path):
    map_dir = tmp_path / "online_map"
    ns = "/robot_save"
    peer, node, pub, results, _ = _loop_node(assets, tmp_path, map_dir, ns)
    try:
        rgb = read_image(assets["query"])
        _feed(peer, pub, results, rgb, [30 * S])
        stop = False

        def stream():
            i = 0
            while not stop:
                pub.publish(image_msg(rgb, "rgb8", (40 + i) * S))
                i += 1
                time.sleep(0.1)

        th = threading.Thread(target=stream, daemon=True)
        before = len(results)
        th.start()
        response = peer.call(Trigger, f"{ns}/fol_vpr/save_map", Trigger.Request(), timeout=60.0)
        assert response.success, response.message
        assert peer.wait(lambda: len(results) > before + 1, ANSWER_TIMEOUT), "images stopped during save_map"
        stop = True
        th.join(5)
        assert len(VprMap.open(map_dir)) >= 1
    finally:
        peer.close()
        node.stop()
