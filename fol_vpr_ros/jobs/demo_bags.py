"""The bag demo: a Nordland route driven twice (summer, then winter), as a robot would see it through ROS 2.

What it writes under ``out_dir``:

* ``bags/nordland_summer``, ``bags/nordland_winter``: rosbag2 (mcap), ``/camera/image_raw`` (rgb8) at
  1 Hz, ``/camera/camera_info`` (a nominal pinhole), ``/odom`` (nav_msgs/Odometry in frame ``map``) and
  ``/gps/fix`` (NavSatFix), one per season;
* ``bags/nordland_route``: the same route driven twice in one bag (summer, then winter): the second
  half revisits every place of the first, which is what loop closure is for;
* ``maps/nordland_summer``: the map built from the summer bag (``build_map_from_bag``);
* ``reports/localize``: the winter run localized against the summer map, through the rclpy node;
* ``reports/loop_closure``: the route bag through the node in loop-closure mode, its loop closures
  scored against the ground truth (precision-recall over the re-rank score, the node's decisions);
* ``results/*.mcap``: images + the node's output messages, for Foxglove/RViz.

Data: the bundled Nordland thumbnails are every 10th frame of the train videos, about
``METRES_PER_STORED_FRAME`` = 10 m apart; the demo takes ``DEMO_FRAMES`` consecutive frames from
``DEMO_FIRST_FRAME`` on (a stretch without tunnels or stations), so neighbouring frames are 10 m apart
and the 5/10/25 m rows differ (5 m: the same place only, 10 m: +-1 frame, 25 m: +-2). Poses are
synthesised along a gently curving line (the copy has none; the videos are frame-synchronised, so the
same file name in both seasons is the same place), GPS fixes are the same positions in UTM zone 33W.

Parameters: the node's shipped parameter file (``config/localize.yaml``) unchanged, except the map,
the weights and the mode; both are printed and written in the reports. Speed: the node runs at the
camera rate (``DEMO_RATE_FACTOR`` = 1.0: one frame per second); the keep-up verdict compares the
node's image -> result p95 with the camera period. Without a checkpoint the weights are synthetic and
the accuracy is meaningless (said in the table, the reports and on every figure).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..console import fraction, percent
from ..errors import ConfigError
from ..stamps import NS_PER_SEC

__all__ = [
    "DEMO_FIRST_FRAME",
    "DEMO_FRAMES",
    "DEMO_RATE_FACTOR",
    "FRAME_PERIOD_S",
    "METRES_PER_STORED_FRAME",
    "BagDemoResult",
    "DemoRun",
    "nordland_track",
    "run_bag_demo",
    "write_nordland_bag",
]

log = logging.getLogger(__name__)

DEMO_FIRST_FRAME = 2400  # images-02400.png: after the tunnel at 1880-2020
DEMO_FRAMES = 60  # per season: 600 m of line
METRES_PER_STORED_FRAME = 10.0
FRAME_PERIOD_S = 1.0
ROUTE_GAP_S = 10.0  # between the summer and the winter drive in the route bag
DEMO_RATE_FACTOR = 1.0  # through the node: the 1 Hz camera in real time
IMAGE_TOPIC = "/camera/image_raw"
SEASON_T0_NS = {"summer": 1_339_000_000 * NS_PER_SEC, "winter": 1_362_000_000 * NS_PER_SEC}  # 2012-06, 2013-02
ORIGIN_LATLON = (67.28, 14.40)  # near Bodø, on the Nordland line (UTM 33W)
NOMINAL_HFOV_DEG = 70.0  # the demo's CameraInfo: a nominal pinhole (the Nordland camera was not calibrated)


def nominal_camera(width: int, height: int):
    """A nominal pinhole for the demo images (``NOMINAL_HFOV_DEG`` wide, square pixels, centred)."""
    from ..sources.camera import CameraIntrinsics

    f = 0.5 * width / math.tan(math.radians(NOMINAL_HFOV_DEG) / 2.0)
    return CameraIntrinsics(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)


@dataclass(frozen=True)
class DemoRun:
    """One replay of the demo through the node: its report, headline numbers and keep-up verdict."""

    name: str
    mode: str
    report: Path
    summary: Path
    results_bag: Path | None
    recall: dict[float, dict[int, float]]  # threshold m -> N -> percent (localize)
    pr_auc: dict[float, float]  # threshold m -> average precision (fraction)
    recall_at_full_precision: dict[float, float]
    positives: dict[float, int]
    accepted: dict[float, dict]  # the node's own decisions per threshold
    latency_ms: dict[str, float]  # mean per stage
    latency_p95_ms: float
    frames_processed: int
    frames_dropped: int
    period_ms: float
    node: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    pr_auc_verified: dict[float, float] = field(default_factory=dict)  # with geometric verification (when it ran)
    recall_at_full_precision_verified: dict[float, float] = field(default_factory=dict)

    def verification_cell(self) -> str:
        """AP and recall at 100 % precision without -> with geometric verification, per threshold."""
        if not self.pr_auc_verified:
            return "off"
        return "  ".join(
            f"{t:g} m AP {fraction(self.pr_auc.get(t))} -> {fraction(a)}, R@P100 "
            f"{percent(100.0 * self.recall_at_full_precision.get(t, math.nan))} -> "
            f"{percent(100.0 * self.recall_at_full_precision_verified.get(t, math.nan))}"
            for t, a in sorted(self.pr_auc_verified.items()))

    @property
    def image_to_result_p95_ms(self) -> float:
        """Image stamp -> result on the node's topic, p95 (through the node), else the processing p95."""
        e2e = self.node.get("end_to_end_ms", {})
        return float(e2e["p95"]) if e2e.get("count") else self.latency_p95_ms

    @property
    def keeps_up(self) -> bool:
        """True when no frame was dropped and the p95 latency is under the camera period."""
        return self.frames_dropped == 0 and self.image_to_result_p95_ms < self.period_ms

    def verdict(self) -> str:
        p95 = self.image_to_result_p95_ms
        word = "keeps up" if self.keeps_up else "does NOT keep up"
        return (f"{word} with the {1000.0 / self.period_ms:g} Hz camera: p95 {p95:.0f} ms vs {self.period_ms:.0f} ms "
                f"period, {self.frames_dropped} of {self.frames_processed + self.frames_dropped} frames dropped")


@dataclass(frozen=True)
class BagDemoResult:
    """What the bag demo wrote and measured."""

    out_dir: Path
    synthetic: bool
    weights: str
    input_size: tuple[int, int]
    frames_per_season: int
    first_frame: int
    spacing_m: float
    params_file: Path | None
    params: dict
    overrides: dict
    summer_bag: Path
    winter_bag: Path
    route_bag: Path
    map_dir: Path
    map_keyframes: int
    localize: DemoRun
    loops: DemoRun
    seconds_bags: float
    seconds_map: float
    seconds_eval: float
    runner: str = "offline"
    rate_factor: float | None = None

    @property
    def seconds(self) -> float:
        return self.seconds_bags + self.seconds_map + self.seconds_eval

    def _loop_cell(self, t: float) -> str:
        lo = self.loops
        acc = lo.accepted.get(t, {})
        return (f"{t:g} m: {lo.positives.get(t, 0)} revisits, AP {fraction(lo.pr_auc.get(t))}, node "
                f"{acc.get('correct', 0)}/{acc.get('accepted', 0)} correct")

    def table(self) -> str:
        """The demo's summary table."""
        loc, lo = self.localize, self.loops
        ts = sorted(loc.recall)
        lat = {k: loc.latency_ms.get(k, math.nan) for k in ("total", "decode", "describe", "search", "rerank")}
        p = self.params
        rows = [
            ("data", f"Nordland images-{self.first_frame:05d}.png on, {self.frames_per_season} frames per season, "
                     f"{self.spacing_m:g} m apart; route bag: summer then winter (every place revisited)"),
            ("model", f"{self.weights} at {self.input_size[0]} x {self.input_size[1]}"
                      + ("  (SYNTHETIC: accuracy meaningless)" if self.synthetic else "")),
            ("parameters", f"{self.params_file or 'node defaults'} (shipped): top_k {p.get('top_k')}, rerank_k "
                           f"{p.get('rerank_k')}, min_rerank_score {p.get('min_rerank_score')}, latency_budget_ms "
                           f"{p.get('latency_budget_ms')}"
                           + (f"; overridden: {self.overrides}" if self.overrides else "")),
            ("map", f"{self.map_dir} ({self.map_keyframes} keyframes, from {self.summer_bag.name})"),
            ("localize R@1", "  ".join(f"{t:g} m {percent(loc.recall[t].get(1))}" for t in ts)),
            ("localize R@5", "  ".join(f"{t:g} m {percent(loc.recall[t].get(5))}" for t in ts)),
            ("loop closures", "  ".join(self._loop_cell(t) for t in sorted(lo.positives))),
            ("verification, localize", loc.verification_cell()),
            ("verification, loops", lo.verification_cell()),
            ("latency (localize)", f"total {lat['total']:.0f} ms mean (decode {lat['decode']:.1f}, describe "
                                   f"{lat['describe']:.0f}, search {lat['search']:.1f}, rerank {lat['rerank']:.0f})"),
            ("keep-up, localize", loc.verdict()),
            ("keep-up, loops", lo.verdict()),
            ("replay", "through the rclpy node (use_sim_time, /clock) at "
                       f"{self.rate_factor:g}x bag rate" if self.runner == "rclpy_node" else "offline (no drops)"),
            ("time", f"{self.seconds:.0f} s (bags {self.seconds_bags:.0f} s, map {self.seconds_map:.0f} s, "
                     f"replays + reports {self.seconds_eval:.0f} s)"),
            ("reports", f"{loc.report}, {lo.report}"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        lines += [f"note: {n}" for n in dict.fromkeys(loc.notes + lo.notes)]
        return "\n".join(lines)


def nordland_track(n: int, spacing_m: float, amplitude_rad: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """(positions [n, 3], yaw [n]) along a gently curving line, ``spacing_m`` apart, starting at the origin."""
    if n < 1 or not spacing_m > 0:
        raise ConfigError(f"track needs n >= 1 and a positive spacing, got {n}, {spacing_m}")
    length = n * spacing_m
    s = np.arange(n) * spacing_m
    yaw = amplitude_rad * np.sin(2.0 * math.pi * s / length)
    pos = np.zeros((n, 3))
    for k in range(1, n):
        mid = 0.5 * (yaw[k - 1] + yaw[k])
        pos[k] = pos[k - 1] + spacing_m * np.array([math.cos(mid), math.sin(mid), 0.0])
    return pos, yaw


def _latlon(positions: np.ndarray) -> list[tuple[float, float]]:
    from ..sources.utm import utm_to_wgs84, wgs84_to_utm

    o = wgs84_to_utm(*ORIGIN_LATLON)
    return [utm_to_wgs84(o.easting + float(p[0]), o.northing + float(p[1]), o.zone_number, o.northern)
            for p in positions]


def _stamps(t0_ns: int, n: int) -> list[int]:
    return [t0_ns + round(k * FRAME_PERIOD_S * NS_PER_SEC) for k in range(n)]


def write_nordland_bag(path: str | os.PathLike, drives: Sequence[tuple[str, Sequence[Path]]], spacing_m: float) -> Path:
    """A rosbag2 (mcap): each (season, images) drive along ``nordland_track`` in turn (the same places
    each time), images rgb8 at 1 Hz with a nominal CameraInfo, odometry in frame 'map' and GPS."""
    from PIL import Image

    from ..sources.geometry import quat_from_axis_angle
    from ..testing.bagfactory import write_image_bag

    path = Path(path)
    if path.exists():
        if not (path / "metadata.yaml").is_file():
            raise ConfigError(f"{path} exists and is not a bag written by the demo; remove it or choose another --out")
        shutil.rmtree(path)
    rgb, stamps, odom, fixes = [], [], [], []
    t_next = SEASON_T0_NS[drives[0][0]]
    for season, images in drives:
        frames = [np.asarray(Image.open(p).convert("RGB")) for p in images]
        pos, yaw = nordland_track(len(frames), spacing_m)
        t0 = max(t_next, SEASON_T0_NS[season]) if len(drives) == 1 else t_next
        st = _stamps(t0, len(frames))
        quats = quat_from_axis_angle((0.0, 0.0, 1.0), yaw)
        rgb += frames
        stamps += st
        odom += [(s, tuple(p), tuple(q)) for s, p, q in zip(st, pos, quats)]
        fixes += [(s, lat, lon, 40.0, 0) for s, (lat, lon) in zip(st, _latlon(pos))]
        t_next = st[-1] + round(ROUTE_GAP_S * NS_PER_SEC)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = rgb[0].shape[:2]
    return write_image_bag(path, rgb, stamps, topic=IMAGE_TOPIC, frame_id="camera", storage="mcap", odometry=odom,
                           odom_frame="map", navsat=fixes, camera_info=nominal_camera(w, h))


def _segment(folder: Path, first: int, frames: int) -> list[Path]:
    """``frames`` consecutive stored frames from images-FIRST.png on (one clear error when they are not there)."""
    files = sorted(folder.glob("images-*.png"))
    if not files:
        raise ConfigError(f"{folder}: no Nordland images (images-*.png)")
    start = next((i for i, f in enumerate(files) if int(f.stem.split("-")[1]) >= first), None)
    if start is None or start + frames > len(files) or frames < 2:
        raise ConfigError(f"{folder}: {frames} frames from images-{first:05d}.png are not available "
                          f"({len(files)} frames, {files[0].name} .. {files[-1].name}); choose --first/--frames")
    return files[start : start + frames]


def _run(res, name: str, period_ms: float) -> DemoRun:
    """The headline numbers of one evaluate_bag result."""
    return DemoRun(
        name=name, mode=res.mode, report=res.report_path, summary=res.summary_path, results_bag=res.results_bag,
        recall={t: dict(r) for t, r in res.recall.items()}, pr_auc={t: c.auc for t, c in res.pr.items()},
        recall_at_full_precision={t: c.recall_at_full_precision for t, c in res.pr.items()},
        positives={t: c.num_positives for t, c in res.pr.items()},
        accepted={t: dict(a) for t, a in res.accepted.items()},
        latency_ms={s: t.mean for s, t in res.latency_ms.items()},
        latency_p95_ms=res.latency_ms["total"].p95 if "total" in res.latency_ms else math.nan,
        frames_processed=res.frames.processed, frames_dropped=res.frames.dropped, period_ms=period_ms,
        node=dict(res.config.get("node", {})), notes=tuple(res.notes),
        pr_auc_verified={t: c.auc for t, c in res.pr_verified.items()},
        recall_at_full_precision_verified={t: c.recall_at_full_precision for t, c in res.pr_verified.items()})


def run_bag_demo(
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    weights: str | None = None,
    *,
    arch: str = "auto",
    input_size: tuple[int, int] | None = None,
    device: str = "cpu",
    first: int = DEMO_FIRST_FRAME,
    frames: int = DEMO_FRAMES,
    write_results: bool = True,
    through_node: bool = True,
    rate_factor: float = DEMO_RATE_FACTOR,
    domain_id: int | None = None,
    param_overrides: dict | None = None,
    progress: bool = True,
) -> BagDemoResult:
    """Write the bags, build the summer map, localize winter against it and find the route's loop closures.

    ``through_node`` (default) replays through the rclpy node at ``rate_factor`` x the 1 Hz camera with
    the shipped parameter file (plus ``param_overrides``, printed in the table); frames it cannot keep up
    with are dropped and reported. Else offline.
    """
    from ..evaluation.bag_config import BagEvalConfig
    from ..model import DEFAULT_INPUT_SIZE, SYNTHETIC_WARNING
    from ..node.packaged_params import default_params_path
    from ..node.params import load_params
    from ..pipeline.describe import Describer, DescriberConfig
    from .build_map_bag import build_map_from_bag
    from .evaluate_bag import EvaluateBagJob, evaluate_bag

    input_size = tuple(input_size) if input_size is not None else DEFAULT_INPUT_SIZE
    data_root, out_dir = Path(data_root), Path(out_dir)
    folder = data_root / "nordland_seqslam_64x32"
    if not folder.is_dir():
        raise ConfigError(f"{folder}: Nordland data not found (the repository's data/ folder; "
                          "`fol-vpr data fetch nordland-64x32` gets all of it)")
    weights = weights or "random:0"
    spacing = METRES_PER_STORED_FRAME
    t0 = time.perf_counter()
    summer = _segment(folder / "summer", first, frames)
    winter = [folder / "winter" / p.name for p in summer]
    missing = [p.name for p in winter if not p.is_file()]
    if missing:
        raise ConfigError(f"{folder / 'winter'}: missing {len(missing)} frame(s) of summer, e.g. {missing[0]}")
    summer_bag = write_nordland_bag(out_dir / "bags" / "nordland_summer", [("summer", summer)], spacing)
    winter_bag = write_nordland_bag(out_dir / "bags" / "nordland_winter", [("winter", winter)], spacing)
    route_bag = write_nordland_bag(out_dir / "bags" / "nordland_route", [("summer", summer), ("winter", winter)],
                                   spacing)
    t1 = time.perf_counter()
    map_dir = out_dir / "maps" / "nordland_summer"
    built = build_map_from_bag(summer_bag, IMAGE_TOPIC, map_dir, weights, arch=arch, resize=input_size,
                               device=device, batch_size=8, overwrite=True, progress=progress)
    t2 = time.perf_counter()
    describer = Describer.from_config(DescriberConfig(weights, arch, input_size, device, batch_size=1))
    params_file = default_params_path()
    period_ms = 1000.0 * FRAME_PERIOD_S / (rate_factor if through_node else 1.0)
    runs = {}
    for name, bag, map_path in (("localize", winter_bag, map_dir), ("loop_closure", route_bag, None)):
        results = out_dir / "results" / f"{name}.mcap" if write_results else None
        job = EvaluateBagJob(bag, IMAGE_TOPIC, out_dir / "reports" / name, weights, map_path=map_path,
                             loop_closure=map_path is None, cfg=BagEvalConfig(every_frame=True),
                             params_file=params_file, param_overrides=dict(param_overrides or {}), arch=arch,
                             resize=input_size, device=device,
                             write_results=results, overwrite=True, through_node=through_node,
                             rate_factor=rate_factor, domain_id=domain_id, progress=progress)
        runs[name] = _run(evaluate_bag(job, describer=describer), name, period_ms)
    t3 = time.perf_counter()
    if describer.synthetic:
        (out_dir / "SYNTHETIC_WEIGHTS.txt").write_text(SYNTHETIC_WARNING.format(spec=weights) + "\n")
    shipped = load_params(params_file, overrides=dict(param_overrides or {}))
    params = {k: getattr(shipped, k) for k in ("top_k", "rerank_k", "min_rerank_score", "latency_budget_ms")}
    return BagDemoResult(
        out_dir=out_dir, synthetic=describer.synthetic, weights=weights, input_size=tuple(input_size),
        frames_per_season=len(summer), first_frame=first, spacing_m=spacing, params_file=params_file, params=params,
        overrides=dict(param_overrides or {}),
        summer_bag=summer_bag, winter_bag=winter_bag, route_bag=route_bag, map_dir=map_dir,
        map_keyframes=built.keyframes, localize=runs["localize"], loops=runs["loop_closure"], seconds_bags=t1 - t0,
        seconds_map=t2 - t1, seconds_eval=t3 - t2, runner="rclpy_node" if through_node else "offline",
        rate_factor=rate_factor if through_node else None)
