"""The DDS node (fol_vpr_ros.ros.dds_node) end to end over real Cyclone DDS on 127.0.0.1.

A test participant publishes images (sensor_msgs/Image rgb8/bgr8, CompressedImage JPEG) from the bundled
corridor data; the node, with a 1-block ViT-S at 224 x 224 (synthetic weights saved as a checkpoint) and a map
of 20 corridor reference images built with build_map, answers on ROS 2 topics read back by the test.
Domain id from the pid; every wait is bounded.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("cyclonedds")

from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic

from fol_vpr_ros.build_map import build_map
from fol_vpr_ros.describe import Describer, DescriberConfig
from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.image_io import read_image
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model
from fol_vpr_ros.node import NodeCore, NodeParams, load_params
from fol_vpr_ros.ros import dds_types as dds
from fol_vpr_ros.ros import interfaces as ifc
from fol_vpr_ros.ros import messages as m
from fol_vpr_ros.ros.dds_node import DdsNode
from fol_vpr_ros.ros.node_cli import add_node_parser, cmd_node, default_params_path, parse_overrides

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "localize.yaml"
DOMAIN = 10 + os.getpid() % 90  # not ROS' default 0, not test_interfaces' 100..199
S = 1_000_000_000
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
ODOM = "nav_msgs/msg/Odometry"
MAP_SIZE = 20
LOAD_SECONDS = 20.0
CAMERA_HZ = 30.0


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def assets(shared_data, tmp_path_factory) -> dict[str, Any]:
    """A checkpoint (ViT-S depth 1, 224 x 224) and a map of corridor ref 0..19 with poses x = i m."""
    tmp = tmp_path_factory.mktemp("dds_node")
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weights = save_checkpoint(synthetic_model(cfg, seed=3), tmp / "fol_tiny.pth")
    corridor = shared_data / "vprbench_corridor"
    images = tmp / "ref"
    images.mkdir()
    rows = ["image,x,y,z"]
    for i in range(MAP_SIZE):
        shutil.copyfile(corridor / "ref" / f"{i:07d}.jpg", images / f"{i:07d}.jpg")
        rows.append(f"{i:07d}.jpg,{float(i)},0.0,0.0")
    (tmp / "poses.csv").write_text("\n".join(rows) + "\n")
    vmap = build_map(images, tmp / "map", str(weights), poses=tmp / "poses.csv", resize=(224, 224), progress=False)
    assert vmap.keyframes == MAP_SIZE
    return {"weights": str(weights), "map": str(tmp / "map"), "corridor": corridor, "tmp": tmp}


@pytest.fixture(scope="module")
def participant():
    previous = os.environ.get(dds.CYCLONEDDS_URI_ENV)
    dds.loopback_config(override=True)  # read when the domain is created (first participant of DOMAIN)
    try:
        yield DomainParticipant(DOMAIN)
    finally:
        if previous is None:
            os.environ.pop(dds.CYCLONEDDS_URI_ENV, None)
        else:
            os.environ[dds.CYCLONEDDS_URI_ENV] = previous


def node_params(assets: dict[str, Any], **overrides: Any) -> NodeParams:
    base = {"weights": assets["weights"], "map_path": assets["map"], "input_size": [224, 224], "top_k": 5,
            "rerank_k": 5, "min_rerank_score": 0.0, "keyframe.min_interval_sec": 0.0, "odometry.topic": "",
            "diagnostics.period_sec": 0.2}
    node_name = overrides.pop("node_name", "fol_vpr")
    return load_params(CONFIG, node_name, {**base, **overrides})


@pytest.fixture
def make_node(participant) -> Callable[..., DdsNode]:
    nodes: list[DdsNode] = []

    def make(params: NodeParams, core: NodeCore | None = None) -> DdsNode:
        node = DdsNode(params, core, domain_id=DOMAIN)
        nodes.append(node)
        return node.start()

    yield make
    for node in nodes:
        node.close()


class Collector:
    """Reads one topic in a background thread; messages converted to rosbags objects."""

    def __init__(self, participant: DomainParticipant, topic: str, typename: str) -> None:
        self.typename, self.cls = typename, dds.dds_type(typename)
        self.reader = DataReader(participant, Topic(participant, topic, self.cls), qos=dds.reliable_qos(100))
        self.messages: list[Any] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            for sample in self.reader.take(N=100):
                if isinstance(sample, self.cls):
                    msg = dds.from_dds(sample, self.typename)
                    with self._lock:
                        self.messages.append(msg)

    def wait(self, predicate: Callable[[Any], bool] = lambda _: True, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = next((msg for msg in self.messages if predicate(msg)), None)
            if found is not None:
                return found
            time.sleep(0.01)
        raise AssertionError(f"no matching {self.typename} on {self.reader.topic.name} within {timeout} s")

    def all(self) -> list[Any]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def collect(participant) -> Callable[[str, str], Collector]:
    made: list[Collector] = []

    def make(topic: str, typename: str) -> Collector:
        made.append(Collector(participant, topic, typename))
        return made[-1]

    yield make
    for c in made:
        c.close()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def wait_matched(node: DdsNode, writer: DataWriter, outputs: list[Collector]) -> None:
    """Both sides of every link discovered (best-effort images sent earlier would be lost)."""
    wait_until(lambda: writer.get_matched_subscriptions() and node._inputs[0][0].get_matched_publications(),
               what="image writer/reader matched")
    for c in outputs:
        wait_until(lambda c=c: c.reader.get_matched_publications(), what=f"{c.reader.topic.name} matched")


def image_writer(participant: DomainParticipant, topic: str, typename: str = IMAGE) -> DataWriter:
    return DataWriter(participant, Topic(participant, topic, dds.dds_type(typename)), qos=dds.sensor_data_qos())


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = "cam_front", encoding: str = "rgb8",
              step: int | None = None, height: int | None = None) -> Any:
    h, w = rgb.shape[:2]
    data = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
    return ifc.make_message(IMAGE, header=ifc.make_header(stamp_ns, frame_id), height=h if height is None else height,
                            width=w, encoding=encoding, step=w * 3 if step is None else step,
                            data=np.ascontiguousarray(data).reshape(-1))


def jpeg_msg(jpeg: bytes, stamp_ns: int, frame_id: str = "cam_front") -> Any:
    return ifc.make_message(COMPRESSED, header=ifc.make_header(stamp_ns, frame_id), format="jpeg",
                            data=np.frombuffer(jpeg, np.uint8))


def publish(writer: DataWriter, msg: Any, typename: str = IMAGE) -> None:
    writer.write(dds.to_dds(msg, typename))


def stamp_of(msg: Any) -> int:
    return ifc.time_to_ns(msg.header.stamp)


def query_image(assets: dict[str, Any], i: int) -> np.ndarray:
    return read_image(assets["corridor"] / "query" / f"{i:07d}.jpg")


def check_candidate_order(result: Any) -> None:
    cands = result.candidates
    assert [c.rank for c in cands] == list(range(len(cands)))
    for a, b in itertools.pairwise(cands):
        assert a.rerank_score >= b.rerank_score or b.rerank_score == -1
        if a.rerank_score == b.rerank_score:
            assert a.global_similarity >= b.global_similarity


def diagnostics_values(msg: Any, hardware_id: str) -> dict[str, str] | None:
    for status in msg.status:
        if status.hardware_id == hardware_id and status.name == m.DIAGNOSTIC_NAME:
            return {kv.key: kv.value for kv in status.values}
    return None


# ---------------------------------------------------------------------------- unit checks
def test_topics_names_and_refusals(assets, participant):
    params = node_params(assets, mode="loop_closure", **{"lio_sam.enabled": True, "image_transport": "compressed",
                                                         "odometry.topic": "/robot/odom"})
    core = NodeCore(params)
    node = DdsNode(params, core, domain_id=DOMAIN)
    try:
        assert {role: topic for role, (topic, _) in node.topics.items()} == {
            "image": "rt/image/compressed", "result": "rt/fol_vpr/result", "pose": "rt/fol_vpr/pose",
            "markers": "rt/fol_vpr/markers", "diagnostics": "rt/diagnostics", "odometry": "rt/robot/odom",
            "loop_closure": "rt/fol_vpr/loop_closure", "lio_sam": "rt/lio_loop/loop_closure_detection"}
        assert node.topics["image"][1] == COMPRESSED
    finally:
        node.close()
    ns = load_params(CONFIG, "vpr", {"weights": assets["weights"], "map_path": assets["map"],
                                     "input_size": [224, 224]}, namespace="/robot1")
    node = DdsNode(ns, domain_id=DOMAIN)
    try:
        assert node.topics["image"][0] == "rt/robot1/image" and node.topics["result"][0] == "rt/robot1/vpr/result"
        assert node.topics["diagnostics"][0] == "rt/diagnostics" and node.topics["odometry"][0] == "rt/robot1/odom"
    finally:
        node.close()
    with pytest.raises(ConfigError, match="publish_tf"):
        DdsNode(node_params(assets, publish_tf=True), domain_id=DOMAIN)


def test_cli_overrides_and_default_params():
    assert default_params_path() == CONFIG
    got = parse_overrides(["top_k=7", "min_rerank_score=30", "input_size=[224, 224]", "map_path=2024",
                           "publish_tf=false", "mode=loop_closure", "weights="])
    assert got == {"top_k": 7, "min_rerank_score": 30.0, "input_size": [224, 224], "map_path": "2024",
                   "publish_tf": False, "mode": "loop_closure", "weights": ""}
    assert type(got["min_rerank_score"]) is float
    with pytest.raises(ConfigError, match="name=value"):
        parse_overrides(["top_k"])
    parser = argparse.ArgumentParser()
    add_node_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["node", "--set", "top_k=3", "--set", "rerank_k=1", "--no-loopback"])
    assert args.overrides == ["top_k=3", "rerank_k=1"] and not args.loopback and args.func is cmd_node
    assert parser.parse_args(["node"]).loopback  # loopback by default


# ---------------------------------------------------------------------------- end to end
def test_raw_images_end_to_end(assets, participant, make_node, collect):
    node = make_node(node_params(assets))
    results = collect("rt/fol_vpr/result", m.RESULT_TYPE)
    poses = collect("rt/fol_vpr/pose", m.POSE_TYPE)
    markers = collect("rt/fol_vpr/markers", m.MARKERS_TYPE)
    diagnostics = collect("rt/diagnostics", m.DIAGNOSTICS_TYPE)
    writer = image_writer(participant, "rt/image")
    wait_matched(node, writer, [results, poses, markers, diagnostics])

    frames = [(0, "rgb8"), (0, "bgr8"), (3, "rgb8"), (6, "bgr8")]
    stamps = [100 * S + k * S + 123_456_789 for k in range(len(frames))]
    got = []
    for (i, encoding), stamp in zip(frames, stamps):
        publish(writer, image_msg(query_image(assets, i), stamp, encoding=encoding))
        got.append(results.wait(lambda r, s=stamp: stamp_of(r) == s))
    for result, stamp in zip(got, stamps):
        assert stamp_of(result) == stamp and result.header.frame_id == "map"
        assert result.camera_frame_id == "cam_front" and len(result.candidates) == 5
        check_candidate_order(result)
        assert result.accepted and result.accepted_index == 0 and result.status == "ok"
        assert result.describe_ms > 0 and result.rerank_ms > 0 and result.total_ms >= result.describe_ms
        assert all(c.has_pose and c.pose_frame_id == "map" for c in result.candidates)
        pose = poses.wait(lambda p, s=stamp: stamp_of(p) == s)
        assert pose.header.frame_id == "map"
        assert pose.pose.pose.position.x == pytest.approx(float(result.candidates[0].keyframe_id))
        assert pose.pose.covariance[0] > 0 and pose.pose.covariance[35] > 0
        marker_array = markers.wait(lambda a, s=stamp: stamp_of(a.markers[0]) == s)
        assert all(mk.header.frame_id == "map" and mk.ns == "fol_vpr" and stamp_of(mk) == stamp
                   for mk in marker_array.markers)
    rgb, bgr = got[0], got[1]  # the same image as rgb8 and bgr8
    assert [c.keyframe_id for c in rgb.candidates] == [c.keyframe_id for c in bgr.candidates]
    assert [c.rerank_score for c in rgb.candidates] == [c.rerank_score for c in bgr.candidates]
    first_markers = markers.wait(lambda a: stamp_of(a.markers[0]) == stamps[0])
    points = [mk for mk in first_markers.markers if mk.id == m.MAP_MARKER]
    assert len(points) == 1 and len(points[0].points) == MAP_SIZE  # all map keyframes with poses

    diag = diagnostics.wait(lambda d: (diagnostics_values(d, "/fol_vpr") or {}).get("frames_processed") == "4")
    values = diagnostics_values(diag, "/fol_vpr")
    assert values["localized"] == "yes" and values["map_size"] == str(MAP_SIZE) and values["errors"] == "0"
    assert float(values["latency_ms.total.mean"]) > 0 and "latency_ms.describe.p95" in values
    assert stamp_of(diag) == stamps[-1]  # diagnostics carry the last image stamp
    print(f"\nDDS localize latency (ms, 1-block ViT-S 224, map {MAP_SIZE}, rerank 5): "
          f"{', '.join(f'{r.total_ms:.0f}' for r in got)}; diagnostics mean {values['latency_ms.total.mean']}")


def test_compressed_images_end_to_end(assets, participant, make_node, collect):
    node = make_node(node_params(assets, image_transport="compressed"))
    results = collect("rt/fol_vpr/result", m.RESULT_TYPE)
    writer = image_writer(participant, "rt/image/compressed", COMPRESSED)
    wait_matched(node, writer, [results])
    stamps = []
    for k, i in enumerate((2, 5)):
        jpeg = (assets["corridor"] / "query" / f"{i:07d}.jpg").read_bytes()
        stamps.append(200 * S + k * S)
        publish(writer, jpeg_msg(jpeg, stamps[-1], frame_id="cam_jpeg"), COMPRESSED)
        result = results.wait(lambda r, s=stamps[-1]: stamp_of(r) == s)
        assert result.camera_frame_id == "cam_jpeg" and result.header.frame_id == "map" and result.accepted
        check_candidate_order(result)
    direct = node.core.process_now(m.image_payload(image_msg(query_image(assets, 5), 300 * S)))
    assert [c.keyframe_id for c in direct.candidates] == [c.keyframe_id for c in result.candidates]


def test_faults_are_counted_logged_once_and_the_node_keeps_answering(assets, participant, make_node, collect,
                                                                     caplog):
    caplog.set_level(logging.WARNING, logger="fol_vpr_ros.node")
    raw = make_node(node_params(assets))
    comp = make_node(node_params(assets, node_name="fol_vpr_jpeg", image_transport="compressed"))
    raw_results = collect("rt/fol_vpr/result", m.RESULT_TYPE)
    comp_results = collect("rt/fol_vpr_jpeg/result", m.RESULT_TYPE)
    diagnostics = collect("rt/diagnostics", m.DIAGNOSTICS_TYPE)
    raw_writer = image_writer(participant, "rt/image")
    comp_writer = image_writer(participant, "rt/image/compressed", COMPRESSED)
    wait_matched(raw, raw_writer, [raw_results, diagnostics])
    wait_matched(comp, comp_writer, [comp_results])

    good = query_image(assets, 1)
    w = good.shape[1]
    jpeg = (assets["corridor"] / "query" / "0000001.jpg").read_bytes()
    faults = [
        (raw, raw_writer, IMAGE, lambda s: image_msg(good, s, step=w * 3 - 1)),  # wrong step
        (raw, raw_writer, IMAGE, lambda s: image_msg(good, s, encoding="yuv422")),  # unknown encoding
        (raw, raw_writer, IMAGE, lambda s: image_msg(good[:0], s)),  # zero size
        (comp, comp_writer, COMPRESSED, lambda s: jpeg_msg(jpeg[: len(jpeg) // 3], s)),  # truncated JPEG
    ]
    stamp = 500 * S
    for node, writer, typename, make in faults * 2:  # every kind twice: counted twice, logged once
        failed = node.core.diagnostics().frames_failed
        stamp += S
        publish(writer, make(stamp), typename)
        wait_until(lambda n=node, f=failed: n.core.diagnostics().frames_failed == f + 1, what="fault counted")
    assert raw_results.all() == [] and comp_results.all() == []
    stamp += S
    publish(raw_writer, image_msg(good, stamp), IMAGE)
    assert raw_results.wait(lambda r: stamp_of(r) == stamp).accepted
    publish(comp_writer, jpeg_msg(jpeg, stamp), COMPRESSED)
    assert comp_results.wait(lambda r: stamp_of(r) == stamp).accepted

    expected = {"error.bad_step": "2", "error.unknown_encoding": "2", "error.zero_size": "2", "frames_failed": "6",
                "frames_processed": "1", "errors": "6"}
    diag = diagnostics.wait(lambda d: all((diagnostics_values(d, "/fol_vpr") or {}).get(k) == v
                                          for k, v in expected.items()))
    assert diagnostics_values(diag, "/fol_vpr")["localized"] == "yes"
    assert diag.status[0].level == 0 and "frames with errors" in diag.status[0].message
    diagnostics.wait(lambda d: (diagnostics_values(d, "/fol_vpr_jpeg") or {}).get("error.corrupt_compressed") == "2")
    logged = [r.getMessage() for r in caplog.records if r.name == "fol_vpr_ros.node"]
    for kind in ("bad_step", "unknown_encoding", "zero_size", "corrupt_compressed"):
        assert sum(msg.startswith(kind) for msg in logged) == 1, (kind, logged)


def test_loop_closure_and_lio_sam_over_dds(assets, participant, make_node, collect):
    revisit = [0, 1, 2]
    sequence = list(range(8))
    describer = Describer.from_config(DescriberConfig(assets["weights"], input_size=(224, 224)))
    corridor = [read_image(assets["corridor"] / "ref" / f"{i:07d}.jpg") for i in sequence]
    counts = [d.local_count for d in describer.describe_arrays(corridor)]
    threshold = float(int(0.8 * min(counts)))  # an identical image scores ~ its local count, other places less
    params = node_params(assets, mode="loop_closure", map_path="", min_rerank_score=threshold,
                         **{"exclusion.min_time_sec": 4.0, "exclusion.min_keyframes": 3,
                            "loop_closure.consistent_hits": 2, "lio_sam.enabled": True, "odometry.topic": "odom",
                            "loop_closure.save_on_shutdown": False})
    node = make_node(params)
    results = collect("rt/fol_vpr/result", m.RESULT_TYPE)
    loops = collect("rt/fol_vpr/loop_closure", m.LOOP_TYPE)
    lio = collect("rt/lio_loop/loop_closure_detection", m.LIO_SAM_TYPE)
    markers = collect("rt/fol_vpr/markers", m.MARKERS_TYPE)
    writer = image_writer(participant, "rt/image")
    odom_writer = DataWriter(participant, Topic(participant, "rt/odom", dds.dds_type(ODOM)), qos=dds.reliable_qos())
    wait_matched(node, writer, [results, loops, lio, markers])
    wait_until(lambda: odom_writer.get_matched_subscriptions(), what="odometry matched")

    base = 1000 * S
    for t, i in enumerate(sequence + revisit):
        stamp = base + t * S
        odom = ifc.make_message(ODOM, header=ifc.make_header(stamp, "odom"), child_frame_id="base_link")
        odom.pose.pose.position.x, odom.pose.pose.orientation.w = float(t), 1.0
        publish(odom_writer, odom, ODOM)
        wait_until(lambda s=stamp: node.core.odometry.pose_at(s) is not None, what="odometry received")
        publish(writer, image_msg(corridor[i], stamp))
        result = results.wait(lambda r, s=stamp: stamp_of(r) == s)
        assert result.query_id == t  # the keyframe id in loop-closure mode
    accepted = [lc for lc in loops.all() if lc.status == ifc.msg_class(m.LOOP_TYPE).ACCEPTED]
    assert [(lc.query_keyframe_id, lc.match_keyframe_id) for lc in accepted] == [(9, 1), (10, 2)]
    for lc in accepted:
        assert stamp_of(lc) == ifc.time_to_ns(lc.query_stamp) == base + lc.query_keyframe_id * S
        assert ifc.time_to_ns(lc.match_stamp) == base + lc.match_keyframe_id * S
        assert lc.header.frame_id == "map" and lc.consistent_hits >= 2 and lc.rerank_score >= threshold
    waiting = [lc for lc in loops.all() if lc.query_keyframe_id == 8]
    assert waiting and waiting[0].status == ifc.msg_class(m.LOOP_TYPE).REJECTED  # 1 of 2 consistent hits
    wait_until(lambda: len(lio.all()) >= 2, timeout=10, what="two LIO-SAM messages")
    assert [x.data.tolist() for x in lio.all()] == [[(base + 9 * S) / S, (base + 1 * S) / S],
                                                    [(base + 10 * S) / S, (base + 2 * S) / S]]
    line = markers.wait(lambda a: stamp_of(a.markers[0]) == base + 9 * S)
    (link,) = [mk for mk in line.markers if mk.id == m.LINE_MARKER]
    assert link.header.frame_id == "odom" and [p.x for p in link.points] == [9.0, 1.0]  # odometry over DDS


# ---------------------------------------------------------------------------- load
class SlowDescriber(Describer):
    """~100 ms per frame: a real description (memoised per image content) plus a sleep."""

    def __init__(self, weights: str, delay: float) -> None:
        loaded = Describer.from_config(DescriberConfig(weights, input_size=(224, 224))).loaded
        super().__init__(loaded, batch_size=1)
        self.delay, self.cache, self.names = delay, {}, []

    def describe_arrays(self, images, order="rgb", names=None):
        out = []
        for image in images:
            key = hashlib.sha1(image.tobytes()).digest()
            if key not in self.cache:
                self.cache[key] = super().describe_arrays([image], order)[0]
            out.append(self.cache[key])
        time.sleep(self.delay)
        return out


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.mark.slow
def test_load_camera_faster_than_processing(assets, participant, make_node, collect):
    """30 Hz of 640 x 480 images (0.9 MB each) for LOAD_SECONDS while processing takes ~100 ms/frame: RSS stays
    flat, the newest frame is always the one processed, every other frame is counted as dropped."""
    params = node_params(assets, top_k=1, rerank_k=0)
    core = NodeCore(params, SlowDescriber(assets["weights"], delay=0.1))
    submitted: list[tuple[float, int]] = []
    outputs: list[tuple[float, int]] = []
    real_submit = core.submit_image

    def submit(payload):  # logged after the frame is in the slot
        real_submit(payload)
        submitted.append((time.monotonic(), payload.stamp_ns))

    core.submit_image = submit
    node = make_node(params, core)
    publish_output = node.publish_output

    def on_output(out):  # logged when the worker is about to take the next frame
        outputs.append((time.monotonic(), out.stamp_ns))
        publish_output(out)

    core.set_output_callback(on_output)
    results = collect("rt/fol_vpr/result", m.RESULT_TYPE)
    writer = image_writer(participant, "rt/image")
    wait_matched(node, writer, [results])

    frames = [np.kron(query_image(assets, i), np.ones((4, 4, 1), np.uint8)) for i in range(10)]  # 480 x 640
    assert frames[0].shape == (480, 640, 3)
    rss: list[float] = []
    published: list[int] = []
    start = time.monotonic()
    n = int(LOAD_SECONDS * CAMERA_HZ)
    for k in range(n):
        wait = start + k / CAMERA_HZ - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        stamp = 2000 * S + k * S // 30
        publish(writer, image_msg(frames[k % len(frames)], stamp))
        published.append(stamp)
        if k % 15 == 0:
            rss.append(_rss_mb())
    elapsed = time.monotonic() - start
    assert core.wait_idle(10)
    time.sleep(0.3)

    processed = [s for _, s in outputs]
    assert len(processed) >= 0.5 * LOAD_SECONDS / 0.1 and processed == sorted(set(processed))  # strictly increasing
    assert set(processed) <= set(published)
    received = [s for _, s in submitted]
    assert received == sorted(received) and len(received) >= 0.9 * n
    for (t_done, _), nxt in zip(outputs, processed[1:]):  # the next frame is the newest one at take time
        newest = max((s for t, s in submitted if t <= t_done), default=-1)
        assert nxt >= newest, (nxt, newest)
    diag = core.diagnostics()
    assert diag.frames_received == len(received) and diag.pending == 0 and diag.frames_failed == 0
    assert diag.frames_dropped == diag.frames_received - diag.frames_processed > 0
    results.wait(lambda r: stamp_of(r) == processed[-1], timeout=10)
    got = [stamp_of(r) for r in results.all()]
    assert got == processed  # every processed frame published, in order
    growth = max(rss[4:]) - rss[2]  # after ~1 s of warm-up
    print(f"\nload: {n} frames in {elapsed:.1f} s, received {diag.frames_received}, processed "
          f"{diag.frames_processed}, dropped {diag.frames_dropped}; RSS {rss[2]:.0f} -> {max(rss[4:]):.0f} MB "
          f"(+{growth:.1f}), mean total latency {diag.latency_ms['total'].mean:.0f} ms")
    assert growth < 100, f"RSS grew by {growth:.0f} MB"


# ---------------------------------------------------------------------------- fol-vpr node
def test_cmd_node_with_duration(assets, participant, collect):
    parser = argparse.ArgumentParser()
    add_node_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args([
        "node", "--params", str(CONFIG), "--weights", assets["weights"], "--map", assets["map"],
        "--set", "input_size=[224, 224]", "--set", "keyframe.min_interval_sec=0", "--set", "top_k=3",
        "--set", "rerank_k=3", "--set", "min_rerank_score=0", "--set", "odometry.topic=''",
        "--node-name", "fol_vpr_cli", "--domain-id", str(DOMAIN), "--duration", "8"])
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(cmd_node(args)), daemon=True)
    started = time.monotonic()
    thread.start()
    results = collect("rt/fol_vpr_cli/result", m.RESULT_TYPE)
    writer = image_writer(participant, "rt/image")
    stamp = 3000 * S
    image = image_msg(query_image(assets, 4), stamp, frame_id="cli_cam")
    deadline = time.monotonic() + 7.5
    while not results.all() and time.monotonic() < deadline:  # the node starts in the thread: repeat
        publish(writer, image)
        time.sleep(0.3)
    result = results.wait(lambda r: stamp_of(r) == stamp, timeout=2)
    assert result.camera_frame_id == "cli_cam" and len(result.candidates) == 3 and result.accepted
    thread.join(20)
    assert not thread.is_alive() and codes == [0]
    assert 7.5 < time.monotonic() - started < 20


def test_node_subprocess_stops_on_sigterm_and_saves_the_online_map(assets, participant, collect, tmp_path):
    out_map = tmp_path / "online"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop(dds.CYCLONEDDS_URI_ENV, None)  # the node's --loopback (default) sets it
    cmd = [sys.executable, "-m", "fol_vpr_ros.ros.node_cli", "--weights", assets["weights"], "--node-name",
           "fol_vpr_sub", "--domain-id", str(DOMAIN), "--duration", "60", "--set", "mode=loop_closure",
           "--set", "input_size=[224, 224]", "--set", f"loop_closure.output_map_path={out_map}",
           "--set", "keyframe.min_interval_sec=0.0"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        results = collect("rt/fol_vpr_sub/result", m.RESULT_TYPE)
        writer = image_writer(participant, "rt/image")
        stamp = 4000 * S
        deadline = time.monotonic() + 45
        while not results.all() and time.monotonic() < deadline and proc.poll() is None:
            publish(writer, image_msg(query_image(assets, 7), stamp))
            time.sleep(0.3)
        assert results.all(), f"no result from the node process: {proc.poll()}"
        assert stamp_of(results.all()[0]) == stamp
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, output[-3000:]
    assert "SIGTERM: shutting down" in output and f"map saved to {out_map}" in output
    assert (out_map / "manifest.json").is_file()
