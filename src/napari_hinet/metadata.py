"""ModelMetadata: the one typed reader of a model's metadata dict.

A loaded model carries ``model.metadata`` (a plain dict, also stored as JSON
in our safetensors files; keys in docs/architecture.md). Code that needs a
value reads it through :class:`ModelMetadata`, so every default is written
once, here:

1. a missing or empty ``patch_size`` is 256 (the official models' patch);
2. a missing ``name`` is the caller's fallback (e.g. the file stem) or
   ``"HINet"``, a missing ``task`` ``"unknown"``, a missing ``description`` ``""``;
3. ``normalization`` and ``channels`` stay ``None`` when unknown (the engine's
   "auto" rules then decide, see :mod:`napari_hinet.engine.intensity`);
4. keys this class does not name are kept in ``extra`` and written back by
   :meth:`ModelMetadata.to_dict`.

This module imports neither torch nor numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

#: Tile edge (pixels) used when a model does not record its training patch size.
DEFAULT_PATCH_SIZE = 256


@dataclass(frozen=True)
class ModelMetadata:
    """Typed view of a model's metadata dict (see the module docstring for the defaults).

    Attributes:
        name: registry name or file stem.
        task: ``"denoise"``, ``"deblur"``, ``"derain"`` or ``"unknown"``.
        config: HINet constructor arguments (``in_chn``, ``wf``, ``depth``...).
        patch_size: training patch size in pixels = the engine's default tile.
        normalization: ``"fixed"``, ``"percentile"`` or ``None`` (unknown).
        channels: ``"rgb"``, ``"gray"`` or ``None``.
        layout: official layout name for an official ``.pth`` file, else ``None``.
        sha256: sha256 of the weights, when known.
        file: the weights file the model was loaded from, when known.
        registry_kind: ``"bundled"``, ``"official"`` or ``"user"``, when known.
        licence: licence of the weights, when known.
        statistics: ``"local"`` for a model trained with local (TLC) statistics, else ``None`` (global).
        description: one line for people.
        metrics: measured (or reported) quality numbers.
        extra: every other key of the dict (training record, metrics...).
    """

    name: str = "HINet"
    task: str = "unknown"
    config: dict[str, Any] = field(default_factory=dict)
    patch_size: int = DEFAULT_PATCH_SIZE
    normalization: str | None = None
    channels: str | None = None
    layout: str | None = None
    sha256: str | None = None
    file: str | None = None
    registry_kind: str | None = None
    licence: str | None = None
    statistics: str | None = None
    description: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, name: str | None = None) -> ModelMetadata:
        """Read ``data`` (a model's ``metadata``; ``None`` = empty) with the defaults above.

        ``name``: the name to use when ``data`` has none (e.g. the file stem).
        """
        data = dict(data or {})
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: data.pop(k) for k in list(data) if k in names}
        known["name"] = str(known.get("name") or name or cls.name)
        known["description"] = str(known.get("description") or "")
        known["metrics"] = dict(known.get("metrics") or {})
        known["task"] = str(known.get("task") or cls.task)
        known["config"] = dict(known.get("config") or {})
        known["patch_size"] = int(known.get("patch_size") or DEFAULT_PATCH_SIZE)
        return cls(**known, extra=data)

    def to_dict(self) -> dict[str, Any]:
        """The metadata dict again (``extra`` merged back in)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data["config"] = dict(self.config)
        return {**self.extra, **data}

    @property
    def in_channels(self) -> int:
        """Channels the network takes (``config["in_chn"]``; 3 when the config does not say)."""
        return int(self.config.get("in_chn", 3))

    @property
    def work_per_pixel(self) -> float:
        """Convolution work per input pixel relative to a ``wf=16`` HINet: ``(wf / 16) ** 2``.

        Convolution cost grows with the square of the width; the engine sizes CPU
        batches and the ``backend="auto"`` choice with it (1 for the bundled
        models, 16 for the official ``wf=64`` ones).
        """
        return (int(self.config.get("wf", 64)) / 16) ** 2

    @property
    def size_multiple(self) -> int:
        """Network input H and W are padded to multiples of this: ``2 ** (depth - 1)``."""
        return 2 ** (int(self.config.get("depth", 5)) - 1)
