"""Test helpers for real rclpy on loopback: a peer node that publishes and collects, the node as a subprocess.

Everything here talks to the node only through ROS topics and services (rmw_fastrtps, the domain and
discovery range the conftest sets). Every wait is bounded.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

NS = 1_000_000_000


def node_executable() -> str:
    """The installed fol_vpr_node (lib/fol_vpr_ros of the colcon install, put on PATH by tools/ros_env.sh)."""
    found = shutil.which("fol_vpr_node")
    if found is None:
        prefixes = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
        for prefix in filter(None, prefixes):
            path = Path(prefix) / "lib" / "fol_vpr_ros" / "fol_vpr_node"
            if path.is_file():
                return str(path)
        raise FileNotFoundError("fol_vpr_node is not installed: build the package with colcon (make ros)")
    return found


class Peer:
    """An rclpy node in its own context and executor thread: publishers, collecting subscriptions, clients."""

    def __init__(self, name: str = "fol_vpr_test_peer") -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self.cond = threading.Condition()
        self.got: dict[str, list[Any]] = {}
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def collect(self, topic: str, msg_type: type, qos: Any = 100) -> list[Any]:
        """Subscribe to ``topic``; its messages are appended to the returned list."""
        box = self.got.setdefault(topic, [])

        def on_msg(msg: Any) -> None:
            with self.cond:
                box.append(msg)
                self.cond.notify_all()

        self.node.create_subscription(msg_type, topic, on_msg, qos)
        return box

    def wait(self, predicate: Callable[[], bool], timeout: float, poll: Callable[[], None] | None = None,
             poll_every: float = 0.5) -> bool:
        """Wait until ``predicate()``; ``poll`` (e.g. a re-publish) runs every ``poll_every`` s meanwhile."""
        deadline = time.monotonic() + timeout
        last = -1e9
        while True:
            with self.cond:
                if predicate():
                    return True
            now = time.monotonic()
            if now > deadline:
                return False
            if poll is not None and now - last >= poll_every:
                poll()
                last = now
            with self.cond:
                self.cond.wait(0.05)

    def call(self, srv_type: type, name: str, request: Any, timeout: float = 30.0) -> Any:
        """Call a service (waits for it); the response, or AssertionError on timeout."""
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available within {timeout} s"
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        assert done.wait(timeout), f"service {name} did not answer within {timeout} s"
        return future.result()

    def close(self) -> None:
        """Stop spinning first (join the thread), then destroy the node and the context: destroying
        them under a spinning executor can deadlock rclpy."""
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(10.0)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


def image_msg(rgb: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "camera") -> Any:
    """sensor_msgs/Image of an RGB uint8 array in ``encoding`` (rgb8, bgr8, mono8, rgba8, bgra8, mono16)."""
    from sensor_msgs.msg import Image

    if encoding == "rgb8":
        arr = rgb
    elif encoding == "bgr8":
        arr = rgb[..., ::-1]
    elif encoding == "rgba8":
        arr = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    elif encoding == "bgra8":
        arr = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
    elif encoding == "mono8":
        arr = rgb.mean(axis=2).astype(np.uint8)
    elif encoding == "mono16":
        arr = (rgb.mean(axis=2) * 257).astype("<u2")
    else:
        raise ValueError(encoding)
    arr = np.ascontiguousarray(arr)
    msg = Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding,
                step=arr.shape[1] * (arr.shape[2] if arr.ndim == 3 else 1) * arr.dtype.itemsize,
                data=arr.tobytes())
    stamp(msg, stamp_ns, frame_id)
    return msg


def compressed_msg(rgb: np.ndarray, fmt: str, stamp_ns: int, frame_id: str = "camera") -> Any:
    """sensor_msgs/CompressedImage (jpeg or png) of an RGB array."""
    from sensor_msgs.msg import CompressedImage

    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG" if fmt == "jpeg" else "PNG")
    msg = CompressedImage(format=fmt, data=buf.getvalue())
    stamp(msg, stamp_ns, frame_id)
    return msg


def stamp(msg: Any, stamp_ns: int, frame_id: str) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), NS)
    msg.header.frame_id = frame_id


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * NS + int(header.stamp.nanosec)


def diag_values(array_msg: Any, node: str) -> dict[str, str]:
    """Key/values of the fol_vpr status of node ``node`` (its fully qualified name) in a DiagnosticArray, or {}."""
    for status in array_msg.status:
        if status.name.startswith("fol_vpr") and status.hardware_id == node:
            level = status.level[0] if isinstance(status.level, bytes) else int(status.level)
            return {kv.key: kv.value for kv in status.values} | {"_level": level, "_message": status.message}
    return {}


class NodeProcess:
    """The installed fol_vpr_node in its own process, started as the launch file would start it."""

    def __init__(self, ros_args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([node_executable(), "--ros-args", *ros_args], stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def rss_kib(self) -> int:
        """Resident set size of the node process (VmRSS, KiB)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the node if it still runs (cleanup after a failed test)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT, wait; SIGKILL if it does not stop. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def wait_started(peer: Peer, node: NodeProcess, ns: str, timeout: float) -> None:
    """Wait for the node's result publisher ``<ns>/fol_vpr/result`` (discovery) or its death; assert it lives."""
    topic = f"{ns}/fol_vpr/result"
    ok = peer.wait(lambda: node.proc.poll() is not None or peer.node.count_publishers(topic) > 0, timeout)
    assert node.proc.poll() is None, f"node exited with {node.proc.returncode}:\n{node.output()}"
    assert ok, f"no publisher on {topic} within {timeout} s:\n{node.output()}"


# ---------------------------------------------------------------------------- /tf and ~/loop_closure collectors
def tf_qos() -> Any:
    """The /tf QoS of tf2_ros' broadcasters and listeners (reliable, volatile, depth 100), as the node publishes."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                      durability=DurabilityPolicy.VOLATILE)


def collect_tf(peer: Peer, topic: str = "/tf") -> list[Any]:
    """Collect tf2_msgs/TFMessage on ``topic`` (list filled as they arrive)."""
    from tf2_msgs.msg import TFMessage

    return peer.collect(topic, TFMessage, tf_qos())


def transforms_between(messages: list[Any], parent: str, child: str) -> list[Any]:
    """Every geometry_msgs/TransformStamped parent -> child in the collected TFMessages, in arrival order."""
    return [t for msg in list(messages) for t in msg.transforms
            if t.header.frame_id == parent and t.child_frame_id == child]


def collect_loop_closures(peer: Peer, topic: str) -> list[Any]:
    """Collect fol_vpr_ros/LoopClosure on ``topic`` (e.g. /<ns>/fol_vpr/loop_closure)."""
    from fol_vpr_ros.msg import LoopClosure

    return peer.collect(topic, LoopClosure)
