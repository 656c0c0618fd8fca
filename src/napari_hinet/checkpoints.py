"""Load and save HINet weights: official BasicSR ``.pth`` files and our ``.safetensors`` format.

Loading never executes code from a file. ``.pth`` files are read with
``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers; a file that needs anything else is refused. ``.safetensors``
files hold no code at all.

Our format is one ``.safetensors`` file: the HINet state_dict plus a JSON
document in the header metadata under the key ``"napari_hinet"`` (task,
config, patch size, input range, channels, training, metrics, licence,
``sha256``...; see ``docs/architecture.md``).

``sha256`` is defined as: SHA-256 over the raw bytes of every tensor, as
stored in the file (its dtype, C order, little-endian), concatenated in the
order of ``HINet(**config).state_dict()``; names and shapes are not hashed.
For float32 weights the same value results whether the tensors come from an
official ``.pth`` or from our file, so a converted checkpoint keeps its hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .exchange.rdf import CorruptPackageError, PackageError, is_package, read_package, weights_file
from .model import HINet
from .registry import (
    METADATA_KEY,
    OFFICIAL_CHECKPOINTS,
    OFFICIAL_LICENCE,
    OfficialCheckpoint,
    get_model_info,
    official_checkpoint,
    read_safetensors_header,
    user_models_dir,
)

__all__ = [
    "CheckpointError",
    "CorruptCheckpointError",
    "LayoutError",
    "RunStateError",
    "UnsafeCheckpointError",
    "detect_layout",
    "infer_config",
    "load_model",
    "load_state_dict",
    "read_torch_file",
    "save_model",
    "weights_sha256",
]

FORMAT_VERSION = 1

# metadata of a loaded model that describes the file it came from, not the weights
_NOT_INHERITED = ("name", "file", "sha256", "registry_kind", "param_key", "source", "saved_at", "saved_with")


class CheckpointError(ValueError):
    """A weights file cannot be used (base class of the errors below)."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds objects other than tensors (possibly code); it was not loaded."""


class CorruptCheckpointError(CheckpointError):
    """The file is truncated, damaged or its weights do not match their sha256."""


class LayoutError(CheckpointError):
    """The state_dict does not fit any HINet architecture."""


class RunStateError(CheckpointError):
    """A training run's saved state (``last.pt``, ``best.pt``) cannot be used to resume."""


# ----------------------------------------------------------------- official layouts


def _official_layouts() -> dict[str, dict[str, Any]]:
    """Layout name -> config; checkpoints sharing an architecture share one layout.

    E.g. ``"HINet-SIDD-1x / HINet-Rain13k layout"``.
    """
    members: dict[tuple, list[str]] = {}
    configs: dict[tuple, dict[str, Any]] = {}
    for ckpt in OFFICIAL_CHECKPOINTS:
        key = tuple(sorted(ckpt.config.items()))
        members.setdefault(key, []).append(ckpt.name)
        configs[key] = dict(ckpt.config)
    return {" / ".join(names) + " layout": configs[key] for key, names in members.items()}


#: layout name -> HINet config of the three architectures of the five released checkpoints
OFFICIAL_LAYOUTS: dict[str, dict[str, Any]] = _official_layouts()


def expected_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Ordered ``{key: shape}`` of the state_dict of ``HINet(**config)`` (built on the meta device, no memory)."""
    with torch.device("meta"):
        model = HINet(**config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _strip_module_prefix(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def _shapes(state_dict: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def detect_layout(state_dict: Mapping[str, Tensor]) -> str | None:
    """Name of the official layout whose keys and shapes equal ``state_dict``'s, else ``None``.

    Names: ``"HINet-SIDD-0.5x layout"``, ``"HINet-SIDD-1x / HINet-Rain13k layout"``
    and ``"HINet-GoPro / HINet-REDS layout"`` (checkpoints that share an
    architecture cannot be told apart from their weights). A leading
    ``module.`` on the keys is ignored.
    """
    shapes = _shapes(_strip_module_prefix(state_dict))
    for name, config in OFFICIAL_LAYOUTS.items():
        if shapes == expected_shapes(config):
            return name
    return None


def _nearest_layout(shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, float]:
    """The official layout with the most key names in common with ``shapes`` (Jaccard), and that fraction.

    Ties (e.g. a narrower model with the same keys) go to the layout with more equal shapes.
    """
    given = set(shapes)
    best, best_score = "", (-1.0, -1.0)
    for name, config in OFFICIAL_LAYOUTS.items():
        expected = expected_shapes(config)
        keys = len(given & set(expected)) / max(len(given | set(expected)), 1)
        same_shape = sum(expected.get(k) == v for k, v in shapes.items()) / max(len(expected), 1)
        if (keys, same_shape) > best_score:
            best, best_score = name, (keys, same_shape)
    return best, best_score[0]


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _layout_error(
    shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]] | None, why: str
) -> LayoutError:
    nearest, score = _nearest_layout(shapes)
    reference = expected if expected is not None else expected_shapes(OFFICIAL_LAYOUTS[nearest])
    missing = [k for k in reference if k not in shapes]
    unexpected = [k for k in shapes if k not in reference]
    wrong = [
        f"{k} {shapes[k]} != {reference[k]}" for k in reference if k in shapes and shapes[k] != reference[k]
    ]
    parts = [f"The weights do not fit HINet: {why}."]
    against = "the architecture inferred from the keys" if expected is not None else f"the {nearest}"
    parts.append(f"Compared with {against}:")
    parts.append(f"  missing keys ({len(missing)}): {_preview(missing) or '-'}")
    parts.append(f"  unexpected keys ({len(unexpected)}): {_preview(unexpected) or '-'}")
    if wrong:
        parts.append(f"  shape mismatches ({len(wrong)}): {_preview(wrong, 4)}")
    parts.append(f"Nearest official layout: {nearest} ({score:.0%} of key names in common).")
    parts.append(
        "Is this a HINet checkpoint (megvii-model/HINet or napari-hinet)? Other networks cannot be loaded."
    )
    return LayoutError("\n".join(parts))


def infer_config(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """HINet constructor arguments read from the keys and shapes of a state_dict.

    ``in_chn`` and ``wf`` come from ``conv_01.weight`` (wf, in_chn, 3, 3),
    ``depth`` from the number of ``down_path_1.<i>`` blocks, the HIN range from
    the levels that hold ``norm.weight``. ``relu_slope`` is not stored in the
    weights; the official value 0.2 is returned. Raises :class:`LayoutError`
    if the keys do not describe a HINet.
    """
    sd = _strip_module_prefix(state_dict)
    shapes = _shapes(sd)
    conv = shapes.get("conv_01.weight")
    if conv is None or len(conv) != 4:
        raise _layout_error(shapes, None, "there is no 4-D 'conv_01.weight' (the stage-1 input conv)")
    wf, in_chn = conv[0], conv[1]
    levels = sorted(
        {int(k.split(".")[1]) for k in sd if k.startswith("down_path_1.") and k.split(".")[1].isdigit()}
    )
    if not levels or levels != list(range(len(levels))):
        raise _layout_error(shapes, None, f"encoder levels down_path_1.<i> are {levels}, expected 0..depth-1")
    hin = [i for i in levels if f"down_path_1.{i}.norm.weight" in sd]
    if hin and hin != list(range(hin[0], hin[-1] + 1)):
        raise _layout_error(
            shapes, None, f"Half Instance Normalization at levels {hin} is not one contiguous range"
        )
    return {
        "in_chn": int(in_chn),
        "wf": int(wf),
        "depth": len(levels),
        "relu_slope": 0.2,
        "hin_position_left": hin[0] if hin else 0,
        "hin_position_right": hin[-1] if hin else -1,
    }


# ----------------------------------------------------------------- hashing


def weights_sha256(state_dict: Mapping[str, Tensor], keys: list[str] | None = None) -> str:
    """SHA-256 (hex) over the raw bytes of the tensors, in ``keys`` order (default: dict order)."""
    h = hashlib.sha256()
    for key in keys if keys is not None else list(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


# ----------------------------------------------------------------- reading files

#: bytes per element of the storage classes a checkpoint's pickle may name (unknown: 16)
_STORAGE_ITEMSIZE = {
    "UntypedStorage": 1,
    "ByteStorage": 1,
    "CharStorage": 1,
    "BoolStorage": 1,
    "QUInt8Storage": 1,
    "QInt8Storage": 1,
    "ShortStorage": 2,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "IntStorage": 4,
    "FloatStorage": 4,
    "QInt32Storage": 4,
    "LongStorage": 8,
    "DoubleStorage": 8,
    "ComplexFloatStorage": 8,
    "ComplexDoubleStorage": 16,
}


class _Inert:
    """Stands for any object of a scanned pickle: accepts every construction step, does nothing."""

    qualname = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _SizeScanner(pickle.Unpickler):
    """Reads a checkpoint pickle without creating any of its objects; records the storages it declares.

    ``find_class`` never returns a real global (every class or function named by the
    pickle becomes a fresh :class:`_Inert` subclass), so nothing from the file runs.
    """

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.declared = 0  # bytes of all storages named by persistent ids
        self.foreign: list[str] = []  # globals other than torch's and OrderedDict

    def find_class(self, module: str, name: str) -> type:
        qualname = f"{module}.{name}"
        if not (module == "torch" or module.startswith("torch.") or qualname == "collections.OrderedDict"):
            self.foreign.append(qualname)
        return type(name, (_Inert,), {"qualname": qualname})

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            numel = pid[4] if isinstance(pid[4], int) else 0
            kind = getattr(pid[1], "qualname", "").rsplit(".", 1)[-1]
            self.declared += max(0, numel) * _STORAGE_ITEMSIZE.get(kind, 16)
        return _Inert()


def _scan(pickled: Any) -> _SizeScanner:
    """The storages and foreign globals a checkpoint pickle declares (as far as it can be read)."""
    scanner = _SizeScanner(pickled)
    try:
        scanner.load()
    except Exception:  # noqa: BLE001 (a malformed pickle is judged by torch.load afterwards)
        pass
    return scanner


#: the legacy-format pickles are scanned within the file's first bytes (a state_dict's pickle is small)
_SCAN_BYTES = 64 * 1024 * 1024


def _check_declared_size(path: Path, size: int) -> list[str]:
    """Refuse a ``.pth`` whose declared contents exceed its size, before anything is allocated.

    Rules, in this order: a zip checkpoint's records together may not decompress to
    more than the file's size (``torch.save`` stores them uncompressed); the
    storages named in its ``data.pkl`` (zip) or main pickle (legacy format) may not
    need more bytes than the file holds. Returns the globals other than torch's
    that the pickle names (the reason for an :class:`UnsafeCheckpointError`).
    """
    import io
    import zipfile

    too_big = (
        f"{path} is truncated or damaged, or crafted to exhaust memory: it declares {{declared:,}} bytes "
        f"of contents but holds {size:,} bytes. It was not loaded; use the original file."
    )
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
                declared = sum(i.file_size for i in infos)
                if declared > size:
                    raise CorruptCheckpointError(too_big.format(declared=declared))
                pkl = next((i for i in infos if i.filename.endswith("data.pkl")), None)
                scans = [_scan(io.BytesIO(zf.read(pkl)))] if pkl is not None else []
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
            raise CorruptCheckpointError(
                f"Could not read {path}: it is a damaged zip archive ({exc}). Copy or download it again."
            ) from exc
    else:
        with path.open("rb") as fh:  # the pickles come first; never ask a file object for a declared length
            head = io.BytesIO(fh.read(min(size, _SCAN_BYTES)))
        scans = [_scan(head) for _ in range(4)]  # legacy format: magic, protocol, sys info, the object
    declared = max((scan.declared for scan in scans), default=0)
    if declared > size:
        raise CorruptCheckpointError(too_big.format(declared=declared))
    return [name for scan in scans for name in scan.foreign]


def read_torch_file(path: str | os.PathLike, remedy: str = "Copy or download the file again.") -> Any:
    """``torch.load`` of ``path`` as plain tensors and containers, or one of our errors.

    Rules, in this order: the path must be a non-empty file; its declared sizes
    must fit the file (:func:`_check_declared_size`); it is loaded with
    ``weights_only=True``, so a pickle that names anything but tensors and plain
    containers is refused (:class:`UnsafeCheckpointError`, nothing executed);
    every other failure is a :class:`CorruptCheckpointError`. ``remedy`` ends the
    message of a damaged file.
    """
    path = Path(path)
    if path.is_dir():
        raise CorruptCheckpointError(f"{path} is a folder, not a checkpoint file.")
    if not path.is_file():
        raise FileNotFoundError(f"No file at {path}.")
    size = path.stat().st_size
    if size == 0:
        raise CorruptCheckpointError(f"{path} is empty (0 bytes). {remedy}")
    foreign = _check_declared_size(path, size)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        names = sorted(set(foreign)) or ([found.group(1)] if found else [])
        if names:
            raise UnsafeCheckpointError(
                f"Refused to load {path}: it contains Python objects other than tensors "
                f"({', '.join(names[:5])}), which could "
                "run code on loading. Nothing from it was executed. Use a file that holds only tensors "
                "(a state_dict or a .safetensors file)."
            ) from None
        raise CorruptCheckpointError(
            f"Could not read {path}: it is not a PyTorch checkpoint (damaged, or another kind of file). {remedy}"
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 (torch raises many types on damaged files)
        first = (str(exc).splitlines() or [""])[0].split(". ")[0][:160]
        first = "" if "weights_only" in first else f": {first}"
        raise CorruptCheckpointError(
            f"Could not read {path}: the file is truncated or damaged, or not a PyTorch checkpoint "
            f"({type(exc).__name__}{first}). {remedy}"
        ) from None


# where a state_dict may sit inside a .pth: BasicSR ('params', 'params_ema'), our training
# checkpoints ('model', see training/engine.py), generic PyTorch/Lightning ('state_dict')
_STATE_DICT_KEYS = ("params", "params_ema", "model", "state_dict")


def _state_dict_from_container(obj: Any, path: Path) -> tuple[dict[str, Tensor], str | None]:
    """The network state_dict inside a loaded ``.pth`` object, and the key it was under."""
    if isinstance(obj, Mapping):
        for key in _STATE_DICT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner:
                obj, used = inner, key
                break
        else:
            used = None
        tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
        if tensors and len(tensors) == len(obj) and all(isinstance(k, str) for k in tensors):
            return tensors, used
    raise LayoutError(
        f"{path} holds no HINet state_dict: expected {{'params': state_dict}} (BasicSR), "
        "{'params_ema': ...}, {'model': ...} (napari-hinet training checkpoint) or a plain {name: tensor} dict."
    )


def load_state_dict(path: str | Path, *, verify: bool = True) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a weights file without building a model.

    Returns ``(state_dict, metadata)``: keys without any ``module.`` prefix;
    ``metadata`` is our JSON metadata for our ``.safetensors`` files (``{}`` for
    others), or ``{"param_key": ...}`` for ``.pth``. With ``verify=True`` (the
    default) our files must carry a ``sha256`` that matches their weights;
    ``verify=False`` skips that check (for files you repaired yourself).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}.")
    if path.suffix.lower() == ".safetensors":
        sd, meta = _read_safetensors(path, verify)
    else:
        sd, used = _state_dict_from_container(read_torch_file(path), path)
        sd, meta = _strip_module_prefix(sd), {"param_key": used}
    _check_finite_weights(sd, path)
    return sd, meta


def _check_finite_weights(state_dict: Mapping[str, Tensor], path: Path) -> None:
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CorruptCheckpointError(
            f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values ({_preview(bad, 3)}); such a "
            "model cannot give valid output. Use the file of an earlier, healthy training step."
        )


def _read_safetensors(path: Path, verify: bool = True) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .registry import check_model_metadata

    try:
        header = read_safetensors_header(path)
        sd = load_file(str(path), device="cpu")
    except (ValueError, SafetensorError, OSError) as exc:
        raise CorruptCheckpointError(
            f"Could not read {path}: it is truncated, damaged or not a safetensors file ({exc})."
        ) from exc
    header_meta = header.get("__metadata__") or {}
    text = header_meta.get(METADATA_KEY) if isinstance(header_meta, dict) else None
    meta: dict[str, Any] = {}
    if text is not None:
        try:
            meta = json.loads(text)
            check_model_metadata(meta)
        except ValueError as exc:  # JSONDecodeError is a ValueError
            raise CorruptCheckpointError(
                f"{path}: its {METADATA_KEY!r} metadata is not valid ({exc}). Copy or download the file "
                "again, or save the model anew with napari_hinet.save_model."
            ) from exc
    sd = _strip_module_prefix(sd)
    ours = bool(meta) or str(header_meta.get("format", "")).startswith("napari-hinet")
    if ours and verify:
        if "sha256" not in meta:
            raise CorruptCheckpointError(
                f"{path} is a napari-hinet file without the sha256 of its weights, so damage or tampering "
                "cannot be ruled out; it was not loaded. Use an intact copy, or load it with "
                "verify=False if you trust it."
            )
        order = list(expected_shapes(meta["config"])) if "config" in meta else sorted(sd)
        if set(order) != set(sd):
            raise _layout_error(
                _shapes(sd), expected_shapes(meta["config"]), "keys differ from the stored config"
            )
        actual = weights_sha256(sd, order)
        if actual != meta["sha256"]:
            raise CorruptCheckpointError(
                f"{path} is corrupted: the sha256 of its weights is {actual}, but its metadata says "
                f"{meta['sha256']}. Copy or download the file again."
            )
    return sd, meta


# ----------------------------------------------------------------- building models


def _build(state_dict: dict[str, Tensor], config: dict[str, Any] | None = None) -> HINet:
    """HINet with ``state_dict`` loaded strictly (float32), built without random init."""
    config = dict(config) if config else infer_config(state_dict)
    expected = expected_shapes(config)
    if _shapes(state_dict) != expected:
        raise _layout_error(
            _shapes(state_dict), expected, "keys or shapes differ from every HINet architecture"
        )
    with torch.device("meta"):
        model = HINet(**config)
    sd = {k: v.to(torch.float32) for k, v in state_dict.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return model


def _default_metadata(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "task": "unknown",
        "patch_size": 256,
        "input_range": [0.0, 1.0],
        "normalization": "fixed",
        "channels": "rgb" if config.get("in_chn") == 3 else "gray",
        "licence": "unknown",
    }


def _pth_metadata(ckpt: OfficialCheckpoint | None, layout: str | None, config: dict) -> dict[str, Any]:
    """Metadata of a ``.pth`` file: usage defaults of the official models (sRGB in [0, 1],
    fixed normalisation, 256-pixel patches); name, task and licence when the file is an
    official checkpoint (its file name and architecture match)."""
    meta = _default_metadata(config)  # channels follow in_chn
    meta.update(layout=layout, source="official layout" if layout else "pth")
    if ckpt is not None and ckpt.config == config:
        meta.update(
            name=ckpt.name,
            task=ckpt.task,
            licence=OFFICIAL_LICENCE,
            where_to_get=ckpt.download,
            reported_metrics=dict(ckpt.reported_metrics),
            source="official",
        )
    return meta


def _load_package(path: Path) -> HINet:
    """A HINet from a bioimage.io package (``.zip`` or folder; see :mod:`napari_hinet.exchange.rdf`)."""
    try:
        package = read_package(path)
        with weights_file(package) as local:
            sd, _ = load_state_dict(local)
    except CorruptPackageError as exc:
        raise CorruptCheckpointError(str(exc)) from exc
    except PackageError as exc:
        raise LayoutError(str(exc)) from exc
    model = _build(sd, {**infer_config(sd), **package.config})  # declared kwargs win
    meta = _default_metadata(model.config)
    meta.update(package.metadata)
    meta.update(
        config=dict(model.config),
        source="bioimage.io",
        sha256=weights_sha256(sd, list(expected_shapes(model.config))),
        file=str(path),
    )
    model.metadata = meta
    return model


def _load_file(path: Path, verify: bool = True) -> HINet:
    try:
        return _load_checked_file(path, verify)
    except LayoutError as exc:
        if str(path) in str(exc):
            raise
        raise LayoutError(f"{path}: {exc}") from None


def _load_checked_file(path: Path, verify: bool) -> HINet:
    if is_package(path):
        return _load_package(path)
    sd, file_meta = load_state_dict(path, verify=verify)
    if path.suffix.lower() == ".safetensors":
        model = _build(sd, file_meta.get("config"))
        meta = _default_metadata(model.config)
        meta.update(name=path.stem, source="file")
        meta.update(file_meta)
        meta["config"] = dict(model.config)
        meta.setdefault("sha256", weights_sha256(sd, list(expected_shapes(model.config))))
    else:
        config = infer_config(sd)
        model = _build(sd, config)
        layout = detect_layout(sd)
        meta = {"name": path.stem}
        meta.update(_pth_metadata(official_checkpoint(path.stem), layout, model.config))
        meta.update(config=dict(model.config), param_key=file_meta.get("param_key"))
        meta["sha256"] = weights_sha256(sd, list(expected_shapes(model.config)))
    meta["file"] = str(path)
    model.metadata = meta
    return model


def _known(name: str) -> bool:
    try:
        return get_model_info(name).available
    except KeyError:
        return False


def load_model(
    source: str | os.PathLike | HINet, device: str | torch.device | None = None, *, verify: bool = True
) -> HINet:
    """A ready-to-run HINet (eval mode, float32) from a file, a registry name or a model.

    Args:
        source: one of
            - a path to an official BasicSR ``.pth`` (``{'params': state_dict}``,
              keys optionally prefixed ``module.``, zip or legacy serialisation;
              ``params_ema``, a training checkpoint's ``model`` and a bare
              state_dict work too). The architecture is
              inferred from the keys and shapes; ``relu_slope`` is 0.2;
            - a path to one of our ``.safetensors`` files (sha256 verified);
            - a bioimage.io model package (``.zip`` or a folder with ``rdf.yaml``) whose
              weights declare a HINet (see :mod:`napari_hinet.exchange.rdf`);
            - a registry name (see :func:`napari_hinet.list_models`), e.g.
              ``"HINet-GoPro"`` once ``HINet-GoPro.pth`` is in the user models folder;
            - an ``HINet`` instance, returned as is (moved to ``device``, eval mode).
            A path is a path: only a bare name (a ``str`` without a folder part,
            and not an existing file) is looked up in the registry; a
            ``Path`` or a string with a folder part must name an existing file.
        device: where to put the model; ``None`` means CPU.
        verify: check the ``sha256`` of our ``.safetensors`` files (a file of ours
            without one is refused); ``False`` skips the check.

    Returns the model with ``.metadata`` (name, task, config, layout,
    patch_size, input_range, normalization, channels, sha256, licence...).

    Raises:
        FileNotFoundError: no such file, or a registry model whose file is missing
            (the message says where to get it and where to put it).
        UnsafeCheckpointError: the file would need to unpickle non-tensor objects.
        CorruptCheckpointError: empty, truncated or damaged file, sizes that exceed
            the file, invalid metadata, a missing or wrong sha256, NaN/Inf weights.
        LayoutError: the weights fit no HINet (missing/unexpected keys and the
            nearest official layout are listed).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(source, HINet):
        return source.to(device).eval()
    if isinstance(source, torch.nn.Module):
        raise TypeError(f"load_model expects a HINet, got a {type(source).__name__}.")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"load_model expects a path, a registry name or a HINet, got {type(source).__name__}."
        )

    path = Path(source).expanduser()
    bare_name = isinstance(source, str) and not any(sep in source for sep in ("/", "\\", os.sep))
    if path.is_file() or is_package(path):
        model = _load_file(path, verify)
    elif not bare_name:
        what = "folder, not a weights file" if path.is_dir() else "no such file"
        hint = f" To use the registry model {path.stem!r}, pass its bare name." if _known(path.name) else ""
        raise FileNotFoundError(f"No weights file at {path} ({what}).{hint}")
    else:
        try:
            info = get_model_info(source)
        except KeyError as exc:
            raise KeyError(f"{exc.args[0]} (and there is no file {path}).") from None
        if info.problem and info.path is not None:
            model = _load_file(info.path, verify)  # raises the precise error
        elif not info.available or info.path is None or not info.path.is_file():
            raise FileNotFoundError(info.missing_message())
        else:
            model = _load_file(info.path, verify)
        if info.kind == "official" and model.config != info.config:
            raise LayoutError(
                f"{info.path} is named like the official {info.name} checkpoint but holds a different "
                f"architecture ({model.metadata.get('layout') or model.config}); expected {info.config}. "
                f"Rename the file or replace it with the one from {info.where_to_get}."
            )
        model.metadata["name"] = info.name
        model.metadata["registry_kind"] = info.kind
    return model.to(device).eval()


# ----------------------------------------------------------------- saving


def save_model(
    model: HINet,
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    **metadata: Any,
) -> Path:
    """Write ``model`` as one ``.safetensors`` file with our JSON metadata, atomically.

    Args:
        model: the HINet to save (any device; tensors are copied to CPU).
        path: destination, normally ``<name>.safetensors``.
        dtype: storage dtype of the weights, e.g. ``torch.float16`` for half
            the size (loaded back as float32); default: as in the model.
        **metadata: JSON-serialisable fields stored with the weights, e.g.
            ``name``, ``task``, ``patch_size``, ``input_range``, ``normalization``,
            ``channels``, ``training``, ``metrics``, ``licence``, ``description``.
            ``config`` (from the model) and ``sha256`` are filled in here.

    The file is written to a temporary file in the same folder, flushed to
    disk and renamed over ``path``, so readers never see a partial file.
    Returns the path written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if "config" in metadata and dict(metadata["config"]) != model.config:
        raise ValueError(f"metadata config {metadata['config']} differs from the model's {model.config}.")
    keys = list(model.state_dict())
    tensors = {}
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu")
        if dtype is not None:
            t = t.to(dtype)
        tensors[k] = t.contiguous().clone()

    meta = _default_metadata(model.config)
    inherited = {k: v for k, v in getattr(model, "metadata", {}).items() if k not in _NOT_INHERITED}
    meta.update(inherited)
    meta["name"] = path.stem
    meta.update(metadata)
    meta.update(
        config=dict(model.config),
        sha256=weights_sha256(tensors, keys),
        weights_dtype=str(next(iter(tensors.values())).dtype).replace("torch.", ""),
        format_version=FORMAT_VERSION,
        saved_with={"napari_hinet": _version(), "torch": torch.__version__},
        saved_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    try:
        text = json.dumps(meta)
    except TypeError as exc:
        raise ValueError(f"metadata must be JSON-serialisable: {exc}") from exc

    from .io import atomic_output

    with atomic_output(path) as tmp:  # the one atomic write: temporary next to it, fsync, rename
        save_file(tensors, tmp, metadata={METADATA_KEY: text, "format": f"napari-hinet-v{FORMAT_VERSION}"})
        # safetensors writes 0600 files; a saved model is an ordinary readable file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    return path


def _version() -> str:
    from . import __version__

    return __version__


def default_save_path(name: str) -> Path:
    """Where a model called ``name`` is saved so the registry lists it: the user models folder."""
    return user_models_dir() / f"{name}.safetensors"
