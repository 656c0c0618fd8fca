"""The one per-process cache of loaded models (:class:`~.predictor.Predictor` objects).

The widgets, the CLI and the dask path all get their model from here
(:func:`napari_hinet.engine.get_restorer` wraps :func:`get_predictor`), so a
model is loaded once per process and key, and a zarr input of the CLI reuses
the very model its TIFF inputs used.

A key is ``(model reference, task, device, precision, compile, backend, stats)``; a model
reference (:func:`model_ref`) is a registry name, a resolved file path,
``None`` (the task's default) or a :class:`ModelPayload` (a model given as an
object, carried in a dask graph once as safetensors bytes).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .predictor import Predictor

_CACHE: dict[tuple, Predictor] = {}
_LOCK = threading.Lock()
#: How many models this process has loaded through the cache (tests check "once per worker").
LOADS = 0


@dataclass(frozen=True)
class ModelPayload:
    """A model given as an object, serialised once for a task graph (safetensors bytes)."""

    token: str
    data: bytes
    metadata: dict

    @classmethod
    def from_model(cls, model: Any) -> ModelPayload:
        import hashlib
        import json

        from safetensors.torch import save

        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        data = save(state)
        meta = dict(getattr(model, "metadata", {}) or {})
        meta["config"] = dict(model.config)
        token = hashlib.sha256(data).hexdigest()[:16]
        return cls(token=token, data=data, metadata=json.loads(json.dumps(meta, default=str)))

    def to_model(self) -> Any:
        from safetensors.torch import load

        from ..model import HINet

        net = HINet(**self.metadata["config"])
        net.load_state_dict(load(self.data), strict=True)
        net.metadata = dict(self.metadata)
        return net.eval()


def model_ref(model: Any) -> Any:
    """What identifies ``model`` in a key or a task graph: a str (name/path), None, or a ModelPayload."""
    if model is None or isinstance(model, ModelPayload):
        return model
    if isinstance(model, (str, Path)):
        path = Path(model).expanduser()
        return str(path.resolve()) if path.exists() else str(model)
    from ..model import HINet

    if isinstance(model, HINet):
        return ModelPayload.from_model(model)
    raise TypeError(f"model must be a registry name, a path or a HINet; got {type(model).__name__}.")


def get_predictor(
    model: Any,
    task: str | None = None,
    device: Any = "auto",
    precision: str = "auto",
    compile: str = "auto",  # noqa: A002
    backend: str = "auto",
    stats: str = "auto",
) -> Predictor:
    """The cached Predictor of this process for these arguments (loaded on first use).

    One per process and key, so each dask worker converts/compiles an OpenVINO model once.

    ``model``: anything :func:`model_ref` accepts (a ``HINet`` is serialised to find its key).
    """
    global LOADS
    ref = model_ref(model)
    key = (
        ref.token if isinstance(ref, ModelPayload) else ref,
        task,
        str(device),
        precision,
        compile,
        backend,
        stats,
    )
    with _LOCK:
        predictor = _CACHE.get(key)
        if predictor is None:
            source = ref.to_model() if isinstance(ref, ModelPayload) else ref
            predictor = Predictor(
                source,
                task,
                device=device,
                precision=precision,
                compile=compile,
                backend=backend,
                stats=stats,
            )
            _CACHE[key] = predictor
            LOADS += 1
    return predictor


def clear_cache() -> None:
    """Forget the cached models of this process (frees their memory)."""
    with _LOCK:
        _CACHE.clear()
