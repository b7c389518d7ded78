"""The node's map: opening it (localize) or starting / extending it (loop_closure), and saving it.

Saving (loop_closure mode): on demand, every ``loop_closure.save_period_sec`` and at shutdown. A failed
save keeps the map in memory, says why and is retried next period; the shutdown save gives a
``ShutdownReport`` whose ``exit_code`` is non-zero when the session's map is not on disk. SIGINT and
SIGTERM are deferred while a save runs on the main thread (``fol_vpr_ros.signals``).
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, FolVprError, MapError
from ..mapping import VprMap
from ..mapping.layout import MANIFEST_NAME, map_path_problem
from ..pipeline.describe import Describer, map_for_describer
from ..signals import deferred_signals
from .params import NodeParams

__all__ = ["MapSaver", "SaveStatus", "ShutdownReport", "open_node_map", "save_target"]

log = logging.getLogger("fol_vpr_ros.node")

MAP_SAVE_FAILED = "map_save_failed"  # the error kind counted when a save fails


class SaveStatus(str, enum.Enum):
    """What became of the online map at shutdown."""

    SAVED = "saved"  # everything is on disk
    NOTHING_TO_SAVE = "nothing_to_save"  # localize mode, or no keyframes
    DISABLED = "disabled"  # save_on_shutdown is off (periodic saves, if any, are reported)
    FAILED = "failed"  # keyframes of this session are not on disk


@dataclass(frozen=True)
class ShutdownReport:
    """The outcome of ``NodeCore.shutdown``; ``exit_code`` is 1 when the session's map was lost."""

    status: SaveStatus
    path: Path | None
    keyframes: int  # in memory at shutdown
    unsaved_keyframes: int  # of these, not in the last successful save
    saves: int  # successful saves during the session (periodic, on demand, shutdown)
    ever_saved: bool
    message: str

    @property
    def ok(self) -> bool:
        return self.status is not SaveStatus.FAILED

    # Adapters written for the old ``shutdown() -> Path | None`` keep working: the report is truthy
    # when the map is saved, and prints / converts as the saved path.
    def __bool__(self) -> bool:
        return self.status is SaveStatus.SAVED and self.path is not None

    def __str__(self) -> str:
        return str(self.path) if self else self.message

    def __fspath__(self) -> str:
        if self.path is None:
            raise TypeError(f"no saved map: {self.message}")
        return str(self.path)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def save_target(params: NodeParams) -> str:
    """Where the online map is saved ('' = nowhere): loop_closure.output_map_path, else map_path."""
    return params.loop_closure.output_map_path or params.map_path


def _check_writable_target(name: str, value: str) -> None:
    """The nearest existing ancestor of a map path must be a writable directory."""
    p = Path(os.path.abspath(value)).parent
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"parameter {name}: {value!r} cannot be created: {p} is a file, not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"parameter {name}: {value!r} cannot be written: no write permission in {p}")


def open_node_map(params: NodeParams, describer: Describer) -> VprMap:
    """The map of the node: ``map_path`` (localize, required); in loop_closure mode ``map_path`` extended when it
    holds a map, else a new one, after checking that the save target can be written."""
    path, verify = params.map_path, params.map_verify
    if params.mode == "localize":
        if not path:
            raise ConfigError("parameter map_path is empty: localize mode needs a map built with `fol-vpr "
                              "build-map` (fol-vpr node --map DIR; ros2 launch ... map:=DIR; ros2 run ... "
                              "-p map_path:=DIR)")
        return VprMap.open(path, expect=describer.map_compat(), verify=verify)
    lc = params.loop_closure
    for name, value in (("map_path", path), ("loop_closure.output_map_path", lc.output_map_path)):
        if value:
            problem = map_path_problem(value)
            if problem is not None:
                raise MapError(f"parameter {name}: {problem}")
    target = save_target(params)
    if target:
        _check_writable_target("loop_closure.output_map_path" if lc.output_map_path else "map_path", target)
    elif lc.save_on_shutdown or lc.save_period_sec > 0:
        log.warning("loop closure: the online map will not be saved (set loop_closure.output_map_path or "
                    "map_path)")
    if path and (Path(path) / MANIFEST_NAME).is_file():
        log.info("loop closure: extending the map %s", path)
        return VprMap.open(path, expect=describer.map_compat(), verify=verify)
    return map_for_describer(describer, None)


class MapSaver:
    """Saves the online map and remembers the last success; ``on_error(kind, message)`` counts a failure.

    The caller holds the map lock around ``save`` (the worker adds keyframes under the same lock).
    """

    def __init__(self, vpr_map: VprMap, params: NodeParams, now: float,
                 on_error: Callable[[str, str], None]) -> None:
        self.map = vpr_map
        self.params = params
        self._on_error = on_error
        self.saves = 0
        self.saved_keyframes = 0
        self.saved_path: Path | None = None
        self.error: str | None = None
        self.last_attempt = now

    def save(self, path: str | Path | None, now: float, redeliver: bool) -> Path:
        """Save atomically to ``path`` / the save target; signals wait for it (see ``deferred_signals``)."""
        target = path or save_target(self.params)
        if not target:
            raise ConfigError("save_map: no path; pass one or set loop_closure.output_map_path or map_path")
        self.last_attempt = now
        n = len(self.map)
        try:
            with deferred_signals("the online map save", redeliver=redeliver) as got:
                out = self.map.save(target)
        except FolVprError as exc:
            self.error = str(exc)
            period = self.params.loop_closure.save_period_sec
            retry = f"retrying in {period:g} s" if period > 0 else "retried on shutdown"
            self._on_error(MAP_SAVE_FAILED, f"could not save the online map ({n} keyframes kept in memory, "
                           f"{retry}): {exc}")
            log.error("could not save the online map (%d keyframes kept in memory, %s): %s", n, retry, exc)
            raise
        self.saves += 1
        self.saved_keyframes = n
        self.saved_path = out
        self.error = None
        if got:
            log.info("signal(s) %s arrived during the save and were held until it completed", got)
        log.info("saved the online map (%d keyframes) to %s", n, out)
        return out

    def due(self, now: float) -> bool:
        """A periodic save is due: the period passed since the last attempt and there are unsaved keyframes."""
        period = self.params.loop_closure.save_period_sec
        if period <= 0 or not save_target(self.params):
            return False
        return now - self.last_attempt >= period and self.map.dirty and len(self.map) > 0

    def _report(self, status: SaveStatus, message: str) -> ShutdownReport:
        n = len(self.map)
        unsaved = 0 if status is SaveStatus.NOTHING_TO_SAVE or not self.map.dirty else n - self.saved_keyframes
        return ShutdownReport(status, self.saved_path, n, max(unsaved, 0), self.saves, self.saves > 0, message)

    def final_save(self, save: Callable[[], Path]) -> ShutdownReport:
        """The shutdown save (``save`` runs it under the caller's lock) and its report."""
        lc = self.params.loop_closure
        n = len(self.map)
        if self.params.mode != "loop_closure":
            return self._report(SaveStatus.NOTHING_TO_SAVE, "localize mode: the map is not changed")
        if n == 0:
            return self._report(SaveStatus.NOTHING_TO_SAVE, "online map is empty; nothing to save")
        if not lc.save_on_shutdown:
            return self._report(SaveStatus.DISABLED, f"save_on_shutdown is off; {self.saves} save(s) during the run")
        if not save_target(self.params):
            return self._report(SaveStatus.DISABLED,
                                "online map not saved: set loop_closure.output_map_path or map_path")
        if not self.map.dirty and self.saved_path is not None:
            return self._report(SaveStatus.SAVED, f"online map ({n} keyframes) already saved to {self.saved_path}")
        try:
            out = save()
        except FolVprError as exc:
            earlier = (f"the last successful save ({self.saved_keyframes} keyframes) is at {self.saved_path}"
                       if self.saved_path is not None else "it was never saved during this session")
            return self._report(SaveStatus.FAILED, f"could not save the online map ({n} keyframes, "
                                f"{n - self.saved_keyframes} of them lost): {exc}; {earlier}")
        return self._report(SaveStatus.SAVED, f"online map ({n} keyframes) saved to {out}")
