"""Images from ROS bags (rosbag2 sqlite3/mcap directories or files, ROS 1 .bag) via rosbags' AnyReader.

Time stamps: the header stamp, or the bag (receive) time where the header stamp is zero (counted).
Frames are handed out in header-stamp order: out-of-order stamps are counted and the frames
re-sorted (not dropped); a frame whose stamp equals an earlier frame's is dropped and counted.
Pixels are decoded by ``sources.image_decode``, the node's decoder.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FolVprError, ImageError
from ..mapping import stamp_ns_from_ros
from ..progress import progress_bar
from .image_decode import COMPRESSED_TYPE, IMAGE_TYPE, ImageDecodeError, check_payload, decode, payload_from_message

__all__ = [
    "IMAGE_TYPES",
    "BagError",
    "BagImage",
    "BagImageSource",
    "BagMessage",
    "BagTopic",
    "ImageRecord",
    "ImageScan",
    "ImageScanner",
    "decode_message",
    "format_topics",
    "header_stamp_ns",
    "image_problem",
    "list_topics",
    "open_bag",
    "read_topics",
    "resolve_bag_path",
]

log = logging.getLogger(__name__)

IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
STORAGE_SUFFIXES = (".mcap", ".db3")
REASON_DUPLICATE = "duplicate header stamp (later frame dropped)"
REASON_UNREADABLE = "message could not be deserialised"


class BagError(FolVprError):
    """A missing, unreadable, truncated or empty bag, or a missing or unsuitable topic."""


@dataclass(frozen=True)
class BagTopic:
    """A topic of a bag: name, message type and message count."""

    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class BagMessage:
    """One message read from a bag; ``msg`` None with ``error`` set when it could not be deserialised."""

    topic: str
    msgtype: str
    bag_ns: int
    msg: Any
    error: str | None = None


def format_topics(topics: Sequence[BagTopic]) -> str:
    """One indented line per topic: name, type, count."""
    if not topics:
        return "  (no topics)"
    width = max(len(t.name) for t in topics)
    return "\n".join(f"  {t.name:<{width}}  {t.msgtype}  ({t.count} msgs)" for t in topics)


def resolve_bag_path(path: str | Path) -> Path:
    """The path AnyReader should open: a rosbag2 directory, an .mcap/.db3 file or a ROS 1 .bag.

    A rosbag2 directory without metadata.yaml (a recording that was not closed cleanly) is read
    through its single storage file.
    """
    p = Path(path)
    if not p.exists():
        raise BagError(f"{p}: bag not found")
    if p.is_file() and p.name == "metadata.yaml":
        p = p.parent
    if p.is_dir():
        if (p / "metadata.yaml").is_file():
            return p
        files = sorted(f for f in p.iterdir() if f.suffix in STORAGE_SUFFIXES)
        if len(files) == 1:
            log.warning("%s has no metadata.yaml (recording not closed cleanly?); reading %s directly",
                        p, files[0].name)
            return files[0]
        if not files:
            raise BagError(f"{p}: not a rosbag2 directory (no metadata.yaml and no .mcap/.db3 file)")
        raise BagError(f"{p}: no metadata.yaml and {len(files)} storage files; run `ros2 bag reindex {p}` first")
    if p.suffix not in (*STORAGE_SUFFIXES, ".bag"):
        raise BagError(f"{p}: not a bag (expected a rosbag2 directory, an .mcap/.db3 file or a ROS 1 .bag)")
    return p


def _storage_files(p: Path) -> list[Path]:
    if p.is_dir():
        return [f for f in sorted(p.iterdir()) if f.suffix in STORAGE_SUFFIXES]
    return [p]


_REPAIR = {".bag": "`rosbag reindex`", ".db3": "`ros2 bag reindex`", ".mcap": "`mcap recover`"}


def _read_failure(p: Path, exc: BaseException, when: str) -> BagError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    files = _storage_files(p)
    where = f"{p} ({', '.join(f.name for f in files)})" if p.is_dir() and files else str(p)
    tools = sorted({_REPAIR[f.suffix] for f in files if f.suffix in _REPAIR})
    repair = f"; a recording that was not closed cleanly may be repaired with {' or '.join(tools)}" if tools else ""
    return BagError(f"{where}: cannot read the bag {when} (truncated or corrupt?{repair}): "
                    f"{type(exc).__name__}: {text}")


def _default_typestore(p: Path) -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS1_NOETIC if p.suffix == ".bag" else Stores.ROS2_HUMBLE)


@contextmanager
def open_bag(path: str | Path) -> Iterator[tuple[Any, Path, list[BagTopic]]]:
    """``(AnyReader, resolved path, topics)``; every reader failure becomes a BagError naming the file.

    Bags without embedded message definitions (rosbag2 from Humble and older) use the Humble types.
    """
    try:
        from rosbags.highlevel import AnyReader
    except ImportError:
        raise BagError("reading bags needs the rosbags package: pip install rosbags") from None

    p = resolve_bag_path(path)
    try:
        reader = AnyReader([p], default_typestore=_default_typestore(p))
        reader.open()
    except Exception as exc:  # rosbags raises AnyReaderError, FileNotFoundError, apsw and parser errors
        raise _read_failure(p, exc, "on open") from None
    try:
        topics = sorted((BagTopic(name, info.msgtype or "?", int(info.msgcount))
                         for name, info in reader.topics.items()), key=lambda t: t.name)
        if reader.message_count == 0:
            raise BagError(f"{p}: the bag is empty (no messages); topics:\n{format_topics(topics)}")
        yield reader, p, topics
    finally:
        reader.close()


def list_topics(path: str | Path) -> list[BagTopic]:
    """Topics of a bag with their types and message counts."""
    with open_bag(path) as (_, _, topics):
        return topics


def read_topics(reader: Any, path: Path, topics: Sequence[str]) -> Iterator[BagMessage]:
    """Messages of ``topics`` in bag-time order; read failures raise BagError naming the file,
    messages that cannot be deserialised come back with ``msg=None`` and the error."""
    wanted = set(topics)
    conns = [c for c in reader.connections if c.topic in wanted]
    if not conns:
        return
    gen = reader.messages(connections=conns)
    n = 0
    while True:
        try:
            conn, bag_ns, raw = next(gen)
        except StopIteration:
            return
        except Exception as exc:
            raise _read_failure(path, exc, f"after {n} messages") from None
        n += 1
        try:
            msg = reader.deserialize(raw, conn.msgtype)
        except Exception as exc:
            yield BagMessage(conn.topic, conn.msgtype, int(bag_ns), None, f"{type(exc).__name__}: {exc}")
            continue
        yield BagMessage(conn.topic, conn.msgtype, int(bag_ns), msg)


def header_stamp_ns(msg: Any) -> int:
    """``msg.header.stamp`` in integer nanoseconds."""
    s = msg.header.stamp
    return stamp_ns_from_ros(s.sec, s.nanosec)


def image_problem(msgtype: str, msg: Any) -> str | None:
    """Why a message cannot become an image, as far as it shows without decoding pixels, or None."""
    try:
        check_payload(payload_from_message(msgtype, msg, 0))
    except ImageDecodeError as exc:
        return str(exc)
    return None


def decode_message(msgtype: str, msg: Any) -> np.ndarray:
    """H x W x 3 uint8 RGB of an image message read from a bag, by the node's decoder; ImageDecodeError if not."""
    return decode(payload_from_message(msgtype, msg, 0))


# ---------------------------------------------------------------------------------------------- images
@dataclass(frozen=True)
class ImageRecord:
    """An image message found by the scan: bag-order index, effective stamp, bag time, frame, encoding."""

    index: int
    stamp_ns: int
    bag_ns: int
    frame_id: str
    encoding: str


@dataclass(frozen=True)
class ImageScan:
    """What a scan of the image topic found: usable records in stamp order and what was skipped."""

    path: Path
    topic: str
    msgtype: str
    total: int
    records: tuple[ImageRecord, ...]
    skipped: Mapping[str, int] = field(default_factory=dict)
    stamps_from_bag_time: int = 0
    out_of_order: int = 0
    expected: int | None = None

    @property
    def notes(self) -> list[str]:
        out = []
        if self.expected is not None and self.expected != self.total:
            out.append(f"the bag index lists {self.expected} messages on {self.topic} but {self.total} were read "
                       "(truncated or re-indexed bag?)")
        if self.stamps_from_bag_time:
            out.append(f"{self.stamps_from_bag_time} frame(s) had a zero header stamp: bag (receive) time used")
        if self.out_of_order:
            out.append(f"{self.out_of_order} frame(s) had header stamps out of order: frames re-sorted by stamp")
        return out


@dataclass(frozen=True, eq=False)
class BagImage:
    """A decoded frame: stamp (ns), camera frame id, H x W x 3 uint8 RGB, bag index and bag time."""

    stamp_ns: int
    frame_id: str
    rgb: np.ndarray
    index: int = 0
    bag_ns: int = 0


class ImageScanner:
    """Collects image headers of one topic (no pixel decoding), counting what cannot be used."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.msgtype = ""
        self.total = 0
        self.records: list[ImageRecord] = []
        self.skipped: Counter[str] = Counter()
        self.from_bag_time = 0
        self.out_of_order = 0
        self._seen: set[int] = set()
        self._max: int | None = None

    def add(self, m: BagMessage) -> None:
        index = self.total
        self.total += 1
        self.msgtype = m.msgtype
        if m.msg is None:
            self.skipped[REASON_UNREADABLE] += 1
            return
        problem = image_problem(m.msgtype, m.msg)
        if problem:
            self.skipped[problem] += 1
            return
        stamp = header_stamp_ns(m.msg)
        if stamp == 0:
            stamp = m.bag_ns
            self.from_bag_time += 1
        if stamp in self._seen:
            self.skipped[REASON_DUPLICATE] += 1
            return
        if self._max is not None and stamp < self._max:
            self.out_of_order += 1
        self._max = stamp if self._max is None else max(self._max, stamp)
        self._seen.add(stamp)
        enc = str(getattr(m.msg, "encoding", "") or getattr(m.msg, "format", ""))
        self.records.append(ImageRecord(index, stamp, m.bag_ns, str(m.msg.header.frame_id), enc))

    def finish(self, path: Path, expected: int | None = None) -> ImageScan:
        records = tuple(sorted(self.records, key=lambda r: (r.stamp_ns, r.index)))
        return ImageScan(path, self.topic, self.msgtype, self.total, records, dict(self.skipped),
                         self.from_bag_time, self.out_of_order, expected)


def _skip_summary(skipped: Mapping[str, int]) -> str:
    return "; ".join(f"{n} x {reason}" for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1]))


class BagImageSource:
    """Frames of one image topic (sensor_msgs Image or CompressedImage) of a bag, in stamp order.

    Raises BagError at construction when the bag cannot be read, is empty, or lacks the topic
    (the message lists the bag's topics with their types). Iterating decodes every usable frame;
    ``scan`` reads headers only and ``images(indices)`` decodes a chosen subset.
    """

    def __init__(self, path: str | Path, image_topic: str) -> None:
        self.topic = image_topic
        with open_bag(path) as (_, resolved, topics):
            self.path = resolved
            self.topics = topics
        by_name = {t.name: t for t in topics}
        t = by_name.get(image_topic)
        if t is None:
            raise BagError(f"{self.path}: no topic {image_topic!r}; the bag has:\n{format_topics(topics)}")
        if t.msgtype not in IMAGE_TYPES:
            images = [x.name for x in topics if x.msgtype in IMAGE_TYPES]
            raise BagError(f"{self.path}: topic {image_topic!r} is a {t.msgtype}, not an image "
                           f"({' or '.join(IMAGE_TYPES)}); image topics: {', '.join(images) or 'none'}")
        if t.count == 0:
            raise BagError(f"{self.path}: topic {image_topic!r} has no messages")
        self.msgtype = t.msgtype
        self.count = t.count
        self.decode_skipped: Counter[str] = Counter()
        self._scan: ImageScan | None = None

    def scan(self, others: Mapping[str, Callable[[BagMessage], None]] | None = None,
             progress: bool = False) -> ImageScan:
        """Read the image headers (and hand messages of ``others`` topics to their callbacks in the same pass).

        Raises BagError when no frame is usable, with the reasons."""
        others = dict(others or {})
        scanner = ImageScanner(self.topic)
        with open_bag(self.path) as (reader, _, topics):
            total = sum(t.count for t in topics if t.name == self.topic or t.name in others)
            bar = progress_bar(total=total, desc="scan bag", unit="msg", enabled=progress)
            for m in read_topics(reader, self.path, [self.topic, *others]):
                if m.topic == self.topic:
                    scanner.add(m)
                else:
                    others[m.topic](m)
                bar.update(1)
            bar.close()
        scan = scanner.finish(self.path, self.count)
        if not scan.records:
            raise BagError(f"{self.path}: none of the {scan.total} messages on {self.topic} is a usable image: "
                           f"{_skip_summary(scan.skipped)}")
        for note in scan.notes:
            log.warning("%s %s: %s", self.path, self.topic, note)
        self._scan = scan
        return scan

    def ordered_messages(self, records: Sequence[ImageRecord]) -> Iterator[tuple[ImageRecord, BagMessage]]:
        """(record, raw message) of the given scan records in their order, in one pass over the bag;
        messages that arrive out of order are held back until their turn."""
        pos_of = {r.index: k for k, r in enumerate(records)}
        buffer: dict[int, BagMessage] = {}
        nxt, ordinal = 0, 0
        with open_bag(self.path) as (reader, _, _):
            for m in read_topics(reader, self.path, [self.topic]):
                k = pos_of.get(ordinal)
                ordinal += 1
                if k is None:
                    continue
                buffer[k] = m
                while nxt in buffer:
                    yield records[nxt], buffer.pop(nxt)
                    nxt += 1
        if nxt < len(records):
            raise BagError(f"{self.path}: {self.topic} changed while reading ({len(records) - nxt} frames missing)")

    def images(self, indices: Iterable[int] | None = None) -> Iterator[BagImage]:
        """Decoded frames in stamp order (only the bag indices given, if any). Frames that fail to
        decode are counted in ``decode_skipped``; if every requested frame fails, ImageError."""
        scan = self._scan or self.scan()
        wanted = set(indices) if indices is not None else None
        order = [r for r in scan.records if wanted is None or r.index in wanted]
        yielded = 0
        for rec, msg in self.ordered_messages(order):
            try:
                rgb = decode_message(msg.msgtype, msg.msg)
            except ImageError as exc:
                self.decode_skipped[str(exc)] += 1
                log.warning("%s %s: skipping frame %d (stamp %d): %s", self.path, self.topic, rec.index,
                            rec.stamp_ns, exc)
                continue
            yielded += 1
            yield BagImage(rec.stamp_ns, rec.frame_id, rgb, rec.index, rec.bag_ns)
        if order and not yielded:
            raise ImageError(f"{self.path} {self.topic}: no frame could be decoded: "
                             f"{_skip_summary(self.decode_skipped)}")

    def __iter__(self) -> Iterator[BagImage]:
        return self.images()
