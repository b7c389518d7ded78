"""What an exported model file says about itself: FoL config, source checkpoint hash, precision."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import ConfigError
from ..model import FoLConfig

__all__ = ["FORMAT_VERSION", "ExportMetadata"]

FORMAT_VERSION = "1"
_PREFIX = "fol_vpr."


@dataclass(frozen=True)
class ExportMetadata:
    """Stored in the ONNX ``metadata_props`` (and a JSON sidecar next to a TensorRT engine).

    ``model_hash`` is the source checkpoint's hash, so maps built with torch accept the exported model.
    """

    config: FoLConfig
    model_hash: str
    source: str
    synthetic: bool
    precision: str
    local_slots: int

    def to_props(self) -> dict[str, str]:
        """Flat string key/values (ONNX metadata_props)."""
        return {
            _PREFIX + "format_version": FORMAT_VERSION,
            _PREFIX + "config": json.dumps(self.config.to_dict()),
            _PREFIX + "model_hash": self.model_hash,
            _PREFIX + "source": self.source,
            _PREFIX + "synthetic": "true" if self.synthetic else "false",
            _PREFIX + "precision": self.precision,
            _PREFIX + "local_slots": str(self.local_slots),
        }

    @classmethod
    def from_props(cls, props: dict[str, str], where: str) -> ExportMetadata:
        """Parse :meth:`to_props`; ConfigError naming ``where`` when the file was not made by `fol-vpr export`."""
        version = props.get(_PREFIX + "format_version")
        if version is None:
            raise ConfigError(f"{where}: no fol_vpr metadata; export the model with `fol-vpr export onnx`")
        if version != FORMAT_VERSION:
            raise ConfigError(f"{where}: export format {version!r}, this version reads {FORMAT_VERSION!r}; "
                              "export the model again")
        try:
            return cls(
                config=FoLConfig.from_dict(json.loads(props[_PREFIX + "config"])),
                model_hash=props[_PREFIX + "model_hash"],
                source=props[_PREFIX + "source"],
                synthetic=props[_PREFIX + "synthetic"] == "true",
                precision=props[_PREFIX + "precision"],
                local_slots=int(props[_PREFIX + "local_slots"]),
            )
        except (KeyError, ValueError, ConfigError) as exc:
            raise ConfigError(f"{where}: malformed fol_vpr metadata ({exc})") from None
