"""The versioned map manifest (``manifest.json``): model identity, shapes, counts, index, file checksums."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, MapError
from .index import IndexConfig

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "FileEntry", "MapCompat", "MapManifest", "new_manifest"]

log = logging.getLogger(__name__)

FORMAT_NAME = "fol-vpr-map"
FORMAT_VERSION = 1

LOCAL_DTYPES = ("float16", "float32")
PRECISIONS = ("fp32", "bf16", "fp16")  # backbone precision the map was described with (resolved, never auto)
RC_DTYPES = ("int16", "int32")


@dataclass(frozen=True)
class FileEntry:
    """Size and SHA-256 of one map file, recorded when it was written."""

    bytes: int
    sha256: str


@dataclass(frozen=True)
class MapManifest:
    """Everything needed to check a map before use; written last, so its presence marks a complete map."""

    model_hash: str
    arch: str
    input_size: tuple[int, int]
    descriptor_dim: int
    local_dim: int = 128
    local_dtype: str = "float16"
    rc_dtype: str = "int16"
    precision: str = "fp32"  # backbone precision of the descriptions; maps written before it existed: fp32
    num_keyframes: int = 0
    num_local_rows: int = 0
    created: str = ""
    modified: str = ""
    software_version: str = ""
    index: IndexConfig = field(default_factory=IndexConfig)
    index_file: str | None = None
    index_active: str = "flat"
    files: dict[str, FileEntry] = field(default_factory=dict)
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["input_size"] = list(self.input_size)
        out["index"] = self.index.to_json()
        # format and version first, so a human reading the file sees them at once
        head = {"format": out.pop("format"), "version": out.pop("version")}
        return {**head, **out}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> MapManifest:
        """Parse and validate; raises MapError naming ``where`` (the manifest path)."""
        if not isinstance(obj, dict):
            raise MapError(f"{where}: not a map manifest (expected a JSON object)")
        if obj.get("format") != FORMAT_NAME:
            raise MapError(f"{where}: not a fol_vpr_ros map (format {obj.get('format')!r}, "
                           f"expected {FORMAT_NAME!r})")
        version = obj.get("version")
        if version != FORMAT_VERSION:
            hint = ("it was written by a newer fol_vpr_ros; upgrade fol_vpr_ros"
                    if isinstance(version, int) and version > FORMAT_VERSION
                    else "rebuild the map with this fol_vpr_ros")
            raise MapError(f"{where}: map format version {version!r} is not supported (this fol_vpr_ros "
                           f"reads version {FORMAT_VERSION}); {hint}")
        try:
            files = obj.get("files", {})
            if not isinstance(files, dict):
                raise TypeError("files must be an object")
            entries = {}
            for name, e in files.items():
                if not (isinstance(e, dict) and isinstance(e.get("bytes"), int)
                        and isinstance(e.get("sha256"), str)):
                    raise TypeError(f"files[{name!r}] must have integer bytes and string sha256")
                entries[str(name)] = FileEntry(e["bytes"], e["sha256"])
            size = obj["input_size"]
            if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
                raise TypeError(f"input_size must be [height, width], got {size!r}")
            ints = ("descriptor_dim", "local_dim", "num_keyframes", "num_local_rows")
            for name in ints:
                if isinstance(obj.get(name), bool) or not isinstance(obj.get(name), int) or obj[name] < 0:
                    raise TypeError(f"{name} must be a non-negative integer, got {obj.get(name)!r}")
            strs = ("model_hash", "arch", "local_dtype", "rc_dtype", "created", "modified",
                    "software_version", "index_active")
            for name in strs:
                if not isinstance(obj.get(name), str):
                    raise TypeError(f"{name} must be a string, got {obj.get(name)!r}")
            if obj["local_dtype"] not in LOCAL_DTYPES:
                raise TypeError(f"local_dtype {obj['local_dtype']!r} not one of {LOCAL_DTYPES}")
            precision = obj.get("precision", "fp32")
            if precision not in PRECISIONS:
                raise TypeError(f"precision {precision!r} not one of {PRECISIONS}")
            if obj["rc_dtype"] not in RC_DTYPES:
                raise TypeError(f"rc_dtype {obj['rc_dtype']!r} not one of {RC_DTYPES}")
            index_file = obj.get("index_file")
            if index_file is not None and not isinstance(index_file, str):
                raise TypeError(f"index_file must be a file name or null, got {index_file!r}")
            index = IndexConfig.from_json(obj.get("index", {}))
            return cls(
                model_hash=obj["model_hash"], arch=obj["arch"], input_size=(size[0], size[1]),
                descriptor_dim=obj["descriptor_dim"], local_dim=obj["local_dim"],
                local_dtype=obj["local_dtype"], rc_dtype=obj["rc_dtype"], precision=precision,
                num_keyframes=obj["num_keyframes"], num_local_rows=obj["num_local_rows"],
                created=obj["created"], modified=obj["modified"], software_version=obj["software_version"],
                index=index, index_file=index_file, index_active=obj["index_active"], files=entries)
        except (KeyError, TypeError, ConfigError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise MapError(f"{where}: corrupt map manifest: {what}; rebuild the map") from None


def new_manifest(*, model_hash: str, arch: str, input_size: Any, descriptor_dim: int, local_dim: int,
                 local_dtype: str, rc_dtype: str, precision: Any, index: IndexConfig, created: str,
                 software_version: str) -> MapManifest:
    """The manifest of a new empty map, its arguments checked (ConfigError naming the bad one)."""
    if local_dtype not in LOCAL_DTYPES:
        raise ConfigError(f"local_dtype {local_dtype!r} not supported; use one of {', '.join(LOCAL_DTYPES)}")
    if rc_dtype not in RC_DTYPES:
        raise ConfigError(f"rc_dtype {rc_dtype!r} not supported; use one of {', '.join(RC_DTYPES)}")
    precision = str(getattr(precision, "value", precision))
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} not supported; use one of {', '.join(PRECISIONS)}")
    for name, v in (("descriptor_dim", descriptor_dim), ("local_dim", local_dim)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    size = tuple(int(v) for v in input_size)
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"input_size must be (height, width), got {input_size!r}")
    if not model_hash or not isinstance(model_hash, str):
        raise ConfigError("model_hash must be the checkpoint's sha256 (or 'synthetic:SEED')")
    return MapManifest(model_hash=model_hash, arch=str(arch), input_size=(size[0], size[1]),
                       descriptor_dim=descriptor_dim, local_dim=local_dim, local_dtype=local_dtype,
                       rc_dtype=rc_dtype, precision=precision, created=created, modified=created,
                       software_version=software_version, index=index)


@dataclass(frozen=True)
class MapCompat:
    """What the caller's model needs from a map; None fields are not checked.

    model identity and shapes must match (MapError otherwise); a different ``precision`` is only
    reported (:meth:`warnings`): low-precision descriptions stay within the measured fidelity of the
    fp32 ones (``fol-vpr bench precision``), so mixing them is allowed but never silent.
    """

    model_hash: str | None = None
    arch: str | None = None
    input_size: tuple[int, int] | None = None
    descriptor_dim: int | None = None
    local_dim: int | None = None
    precision: str | None = None

    def __post_init__(self) -> None:
        if self.input_size is not None:
            size = tuple(int(v) for v in self.input_size)
            if len(size) != 2:
                raise ConfigError(f"input_size must be (height, width), got {self.input_size!r}")
            object.__setattr__(self, "input_size", size)

    def mismatches(self, manifest: MapManifest) -> list[str]:
        """Human-readable differences, e.g. "model_hash: map has 'ab..', expected 'cd..'"."""
        out = []
        for name in ("model_hash", "arch", "input_size", "descriptor_dim", "local_dim"):
            want = getattr(self, name)
            have = getattr(manifest, name)
            if want is not None and want != have:
                out.append(f"{name}: map has {_show(have)}, expected {_show(want)}")
        return out

    def warnings(self, manifest: MapManifest) -> list[str]:
        """Soft differences (precision), e.g. "precision: map built with 'fp32', describing with 'bf16'"."""
        if self.precision is not None and self.precision != manifest.precision:
            return [f"precision: map built with {manifest.precision!r}, describing with {self.precision!r} "
                    "(allowed; see fol-vpr bench precision for the fidelity)"]
        return []

    def check(self, manifest: MapManifest, where: str) -> list[str]:
        """Raise MapError listing every hard field that differs; return (and log) the soft ones."""
        soft = self.warnings(manifest)
        for text in soft:
            log.warning("%s: %s", where, text)
        diffs = self.mismatches(manifest)
        if diffs:
            raise MapError(f"{where}: map is incompatible with this model ({'; '.join(diffs)}); "
                           "rebuild the map with this model, or use the model the map was built with")
        return soft


def _show(v: object) -> str:
    if isinstance(v, tuple):
        return "x".join(str(x) for x in v)
    return repr(v)
