"""The fol_vpr node without ROS: speaks the ROS 2 wire protocol through Cyclone DDS (what rmw_cyclonedds does).

Topics (node ``fol_vpr`` in namespace ``ns``; ROS name -> DDS topic):

* in: ``image_topic`` (default ``image`` -> ``rt/ns/image``; ``<topic>/compressed`` with
  ``image_transport: compressed``), sensor-data QoS by default (``qos.image.*``); ``odometry.topic``
  (nav_msgs/Odometry, optional, '' = none).
* out (reliable, keep last 10): ``~/result``, ``~/pose``, ``~/markers``, ``~/loop_closure``
  (loop_closure mode), ``/diagnostics`` every ``diagnostics.period_sec``, and with ``lio_sam.enabled``
  ``lio_loop/loop_closure_detection`` (std_msgs/Float64MultiArray, what LIO-SAM subscribes to).

One reader thread waits on a WaitSet, converts samples and hands them to ``NodeCore.submit_image``
(never blocks: the core keeps only the newest frame). The core's worker thread publishes outputs.
No TF: ``publish_tf: true`` is rejected. ``run`` is the blocking entry of ``fol-vpr node``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cyclonedds.core import GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from ..errors import ConfigError
from ..node.core import FrameOutput, NodeCore
from ..node.params import NodeParams, load_params
from . import messages as m
from .dds_types import (
    CYCLONEDDS_URI_ENV,
    dds_type,
    from_dds,
    loopback_config,
    reliable_qos,
    ros_domain_id,
    sensor_data_qos,
    to_dds,
    topic_name,
)

__all__ = ["DdsNode", "run"]

log = logging.getLogger("fol_vpr_ros.ros.dds")

_TAKE_BATCH = 32
_WAIT = duration(milliseconds=200)
_OUTPUT_DEPTH = 10


def _image_qos(params: NodeParams) -> Qos:
    q = params.qos.image
    if q.reliability == "best_effort":
        return sensor_data_qos(q.depth)
    return Qos(Policy.Reliability.Reliable(duration(milliseconds=100)), Policy.History.KeepLast(q.depth),
               Policy.Durability.Volatile)


class DdsNode:
    """NodeCore + Cyclone DDS readers/writers with ROS 2 names, types and QoS."""

    def __init__(self, params: NodeParams, core: NodeCore | None = None, *, domain_id: int | None = None) -> None:
        if params.publish_tf:
            raise ConfigError("parameter publish_tf: true is not supported by the DDS node (no TF broadcaster); "
                              "set it to false, or run the rclpy node")
        self.params = params
        self.core = core if core is not None else NodeCore(params)
        self.domain_id = ros_domain_id() if domain_id is None else int(domain_id)
        if not 0 <= self.domain_id <= 232:
            raise ConfigError(f"domain id {self.domain_id} is outside 0..232")
        ns, name = params.namespace, params.node_name
        image_type = "sensor_msgs/msg/Image" if params.image_transport == "raw" else "sensor_msgs/msg/CompressedImage"
        self.topics: dict[str, tuple[str, str]] = {  # role -> (DDS topic, message type)
            "image": (topic_name(m.image_topic_name(params), ns, name), image_type),
            "result": (topic_name("~/result", ns, name), m.RESULT_TYPE),
            "pose": (topic_name("~/pose", ns, name), m.POSE_TYPE),
            "markers": (topic_name("~/markers", ns, name), m.MARKERS_TYPE),
            "diagnostics": (topic_name("/diagnostics", ns, name), m.DIAGNOSTICS_TYPE),
        }
        if params.odometry.topic:
            self.topics["odometry"] = (topic_name(params.odometry.topic, ns, name), "nav_msgs/msg/Odometry")
        if params.mode == "loop_closure":
            self.topics["loop_closure"] = (topic_name("~/loop_closure", ns, name), m.LOOP_TYPE)
            if params.lio_sam.enabled:
                self.topics["lio_sam"] = (topic_name(m.LIO_SAM_TOPIC, ns, name), m.LIO_SAM_TYPE)
        self._errors: Counter[str] = Counter()
        self._errors_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._started = False

        self.participant = DomainParticipant(self.domain_id)
        self._entities: list[Any] = []  # deleted in reverse order by close()
        try:
            self._create_entities(params, image_type)
        except Exception:
            self._delete_entities()
            raise
        self.core.set_output_callback(self.publish_output)

    # ------------------------------------------------------------------ DDS entities
    def _create_entities(self, params: NodeParams, image_type: str) -> None:
        self._writers: dict[str, tuple[DataWriter, str]] = {}
        for role, (topic, typename) in self.topics.items():
            if role in ("image", "odometry"):
                continue
            self._writers[role] = (self._track(DataWriter(self.participant, self._topic(topic, typename),
                                                          qos=reliable_qos(_OUTPUT_DEPTH))), typename)
        self._inputs: list[tuple[DataReader, type, str, Callable[[Any], None]]] = []
        self._waitset = self._track(WaitSet(self.participant))
        self._guard = self._track(GuardCondition(self.participant))
        self._waitset.attach(self._guard)
        handler = self._on_image if image_type.endswith("/Image") else self._on_compressed
        self._add_input("image", _image_qos(params), handler)
        if "odometry" in self.topics:
            self._add_input("odometry", sensor_data_qos(50), self._on_odometry)  # matches any publisher

    def _delete_entities(self) -> None:
        for entity in reversed(self._entities):
            entity.__del__()  # cyclonedds deletes an entity in __del__: do it now, children first
        self._entities.clear()
        self.participant.__del__()

    def _track(self, entity: Any) -> Any:
        self._entities.append(entity)
        return entity

    def _topic(self, name: str, typename: str) -> Topic:
        return self._track(Topic(self.participant, name, dds_type(typename)))

    def _add_input(self, role: str, qos: Qos, handler: Callable[[Any], None]) -> None:
        topic, typename = self.topics[role]
        reader = self._track(DataReader(self.participant, self._topic(topic, typename), qos=qos))
        condition = self._track(ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Any))
        self._waitset.attach(condition)
        self._inputs.append((reader, dds_type(typename), typename, handler))

    # ------------------------------------------------------------------ inputs
    def _count_error(self, kind: str, message: str) -> None:
        with self._errors_lock:
            self._errors[kind] += 1
            first = self._errors[kind] == 1
        if first:
            log.warning("%s: %s (logged once per kind; see diagnostics for counts)", kind, message)

    def _on_image(self, msg: Any) -> None:
        self.core.submit_image(m.image_payload(msg))

    def _on_compressed(self, msg: Any) -> None:
        self.core.submit_image(m.compressed_payload(msg))

    def _on_odometry(self, msg: Any) -> None:
        try:
            self.core.submit_odometry(m.odom_pose(msg))
        except ConfigError as exc:
            self._count_error("bad_odometry", str(exc))

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._waitset.wait(_WAIT)
            except Exception as exc:  # the waitset was deleted under us, or DDS failed
                if not self._stop.is_set():
                    self._count_error("dds_wait_failed", str(exc))
                    time.sleep(0.1)
                continue
            if self._stop.is_set():
                return
            for reader, cls, typename, handler in self._inputs:
                self._drain(reader, cls, typename, handler)

    def _drain(self, reader: DataReader, cls: type, typename: str, handler: Callable[[Any], None]) -> None:
        for _ in range(64):  # bounded: other inputs get their turn
            try:
                samples = reader.take(N=_TAKE_BATCH)
            except Exception as exc:  # undecodable sample
                self._count_error("dds_take_failed", f"{self._topics_of(typename)}: {exc}")
                return
            for sample in samples:
                if not isinstance(sample, cls):  # instance state changes carry no data
                    continue
                try:
                    handler(from_dds(sample, typename))
                except Exception as exc:
                    self._count_error("input_conversion_failed", f"{typename}: {exc}")
            if len(samples) < _TAKE_BATCH:
                return

    def _topics_of(self, typename: str) -> str:
        return ", ".join(t for t, n in self.topics.values() if n == typename)

    # ------------------------------------------------------------------ outputs
    def _write(self, role: str, msg: Any) -> None:
        if msg is None or role not in self._writers or self._closed:
            return
        writer, typename = self._writers[role]
        writer.write(to_dds(msg, typename))

    def publish_output(self, out: FrameOutput) -> None:
        """Publish one processed keyframe (the core's on_output callback; runs on its worker thread)."""
        p = self.params
        loop = out.loop_closure
        if out.mode == "loop_closure":
            self._write("loop_closure", m.loop_closure_msg(out, p.frames.map))
            if loop is not None and p.lio_sam.enabled:
                self._write("lio_sam", m.lio_sam_msg(loop))
        self._write("pose", m.pose_msg(out))
        self._write("markers", m.markers_msg(out))
        self._write("result", m.result_msg(out, p))

    def adapter_errors(self) -> dict[str, int]:
        """Errors of the DDS adapter itself, per kind (image errors are counted by the core)."""
        with self._errors_lock:
            return dict(self._errors)

    def publish_diagnostics(self) -> None:
        """Publish /diagnostics now (stamp: last image stamp the core saw, 0 before any)."""
        snap = self.core.diagnostics()
        extra = {f"adapter_error.{k}": str(v) for k, v in self.adapter_errors().items()}
        extra["domain_id"] = str(self.domain_id)
        self._write("diagnostics", m.diagnostics_msg(snap, snap.last_stamp_ns or 0,
                                                     self.params.fully_qualified_name, extra))

    def _diagnostics_loop(self) -> None:
        while not self._stop.wait(self.params.diagnostics.period_sec):
            try:
                self.publish_diagnostics()
            except Exception as exc:
                self._count_error("diagnostics_failed", str(exc))

    # ------------------------------------------------------------------ life cycle
    def start(self) -> DdsNode:
        """Start the core's worker, the reader thread and the diagnostics thread."""
        if self._closed:
            raise RuntimeError("DdsNode is closed")
        if self._started:
            return self
        self._started = True
        self.core.start()
        for target, name in ((self._read_loop, "fol_vpr-dds-reader"), (self._diagnostics_loop, "fol_vpr-dds-diag")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("fol_vpr (DDS, domain %d): %s %s -> %s", self.domain_id, self.topics["image"][1],
                 self.topics["image"][0], ", ".join(t for r, (t, _) in self.topics.items() if r != "image"))
        return self

    def close(self, timeout: float = 10.0) -> Path | None:
        """Stop reading, let the core finish its frame (outputs still published), save the online map when
        configured, then delete the DDS entities. Returns the saved map path (or None)."""
        if self._closed:
            return None
        self._stop.set()
        with contextlib.suppress(Exception):  # best-effort wake-up of the reader thread
            self._guard.set(True)
        for thread in self._threads:
            thread.join(timeout)
        saved = self.core.shutdown(timeout)
        try:
            self.publish_diagnostics()
        except Exception as exc:
            log.debug("final diagnostics not published: %s", exc)
        self._closed = True
        self.core.set_output_callback(None)
        self._delete_entities()
        return saved

    def __enter__(self) -> DdsNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _apply_loopback() -> None:
    previous = os.environ.get(CYCLONEDDS_URI_ENV)
    xml = loopback_config(override=True)
    if previous and previous != xml:
        log.warning("loopback: replacing %s=%s (pass --no-loopback to keep it)", CYCLONEDDS_URI_ENV, previous)


def run(params_path: str | os.PathLike | None, overrides: Mapping[str, Any] | None = None,
        stop_event: threading.Event | None = None, *, node_name: str = "fol_vpr", namespace: str = "",
        domain_id: int | None = None, loopback: bool = True, duration_sec: float | None = None,
        on_started: Callable[[DdsNode], None] | None = None) -> dict[str, Any]:
    """Run the DDS node until ``stop_event``, SIGINT/SIGTERM (main thread only) or ``duration_sec``.

    ``loopback`` keeps DDS traffic on 127.0.0.1 (sets CYCLONEDDS_URI before the participant is created).
    On stop: the worker finishes its frame and, in loop_closure mode with ``loop_closure.save_on_shutdown``,
    the online map is saved. Returns a summary (frames received/processed/dropped/failed, saved map).
    """
    if loopback:
        _apply_loopback()
    params = load_params(params_path, node_name, overrides, namespace)
    stop = stop_event if stop_event is not None else threading.Event()
    previous: dict[int, Any] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("%s: shutting down", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        node = DdsNode(params, domain_id=domain_id).start()
        saved = None
        try:
            if on_started is not None:
                on_started(node)
            deadline = None if duration_sec is None else time.monotonic() + duration_sec
            while not stop.is_set():
                left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                if left <= 0:
                    break
                stop.wait(left)
        finally:
            saved = node.close()
        d = node.core.diagnostics()
        summary = {"received": d.frames_received, "processed": d.frames_processed, "dropped": d.frames_dropped,
                   "failed": d.frames_failed, "errors": dict(d.errors), "saved_map": saved}
        log.info("fol_vpr stopped: %d frame(s) received, %d processed, %d dropped, %d failed%s",
                 d.frames_received, d.frames_processed, d.frames_dropped, d.frames_failed,
                 f"; map saved to {saved}" if saved else "")
        return summary
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
