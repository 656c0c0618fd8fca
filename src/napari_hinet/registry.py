"""One registry of HINet models: bundled, official and user-supplied.

Three kinds of model are listed by :func:`list_models`:

``"bundled"``
    Our own models, shipped with the package as ``<name>.safetensors`` in
    :func:`bundled_weights_dir`. Their metadata (task, config, channels...)
    is read from the safetensors header without loading any tensor.
``"official"``
    The five checkpoints released by the HINet authors (megvii-model/HINet).
    This project cannot download them; a user fetches a file from the URL in
    ``where_to_get`` and puts it, under its official file name (for example
    ``HINet-GoPro.pth``), into :func:`user_models_dir`. From then on the model
    is listed as available and loads by name.
``"user"``
    Every other ``.safetensors``, ``.pth`` or ``.pt`` file in the user models
    folder (fine-tuned models, converted checkpoints), and every bioimage.io
    package (``.zip``) of a HINet (see :mod:`napari_hinet.exchange.rdf`). A ``.safetensors`` file
    written by :func:`napari_hinet.save_model` carries its task in its metadata.
    For any other file the task is ``"unknown"``: such a model is offered for
    *every* task (``list_models("deblur")`` includes it), because only the
    user knows what it was trained for.

This module imports neither torch nor Qt, so listing models is cheap.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .metadata import DEFAULT_PATCH_SIZE, ModelMetadata
from .settings import TASKS

#: The model each task uses when the caller names none (all bundled).
#: Photo denoising is available by name: ``"hinet-denoise-photo"``.
DEFAULT_MODELS = {
    "denoise": "hinet-denoise-fluo",
    "deblur": "hinet-deblur-photo",
    "derain": "hinet-derain-photo",
}

#: Environment variable that overrides the user models folder.
MODELS_DIR_ENV = "HINET_MODELS_DIR"

#: Key of our JSON metadata in a safetensors header.
METADATA_KEY = "napari_hinet"

OFFICIAL_LICENCE = (
    "MIT (megvii-model/HINet README: 'This project is under the MIT license'; "
    "no separate licence is stated for the weights)"
)
_OFFICIAL_SOURCE = "reported by the HINet authors (megvii-model/HINet README); not measured by this project"


def _official_config(wf: int, hin_left: int, hin_right: int) -> dict[str, Any]:
    return {
        "in_chn": 3,
        "wf": wf,
        "depth": 5,
        "relu_slope": 0.2,
        "hin_position_left": hin_left,
        "hin_position_right": hin_right,
    }


@dataclass(frozen=True)
class OfficialCheckpoint:
    """Facts about one checkpoint released by the HINet authors."""

    name: str
    task: str
    config: dict[str, Any]
    download: str
    description: str
    reported_metrics: dict[str, Any]

    @property
    def file_name(self) -> str:
        return f"{self.name}.pth"


#: The five released checkpoints, as in megvii-model/HINet @ 4e72315.
OFFICIAL_CHECKPOINTS: tuple[OfficialCheckpoint, ...] = (
    OfficialCheckpoint(
        name="HINet-SIDD-0.5x",
        task="denoise",
        config=_official_config(32, 0, 4),
        download="https://drive.google.com/file/d/1Y5YJQVNL0weifE--5us344bLwzBNS_sU/view?usp=sharing",
        description="Real sRGB camera noise (SIDD), half width (wf=32), 22.2 M parameters.",
        reported_metrics={"source": _OFFICIAL_SOURCE, "SIDD validation": {"psnr": 39.82, "ssim": 0.958}},
    ),
    OfficialCheckpoint(
        name="HINet-SIDD-1x",
        task="denoise",
        config=_official_config(64, 0, 4),
        download="https://drive.google.com/file/d/1CU5z-M90Jc-TAcVpEaFjDCYA09fkubGi/view?usp=sharing",
        description="Real sRGB camera noise (SIDD), full width (wf=64), 88.7 M parameters.",
        reported_metrics={"source": _OFFICIAL_SOURCE, "SIDD validation": {"psnr": 39.99, "ssim": 0.958}},
    ),
    OfficialCheckpoint(
        name="HINet-GoPro",
        task="deblur",
        config=_official_config(64, 3, 4),
        download="https://drive.google.com/file/d/1dw8PKVkLfISzNtUu3gqGh83NBO83ZQ5n/view?usp=sharing",
        description="Camera-shake motion blur (GoPro), 88.7 M parameters.",
        reported_metrics={"source": _OFFICIAL_SOURCE, "GoPro test": {"psnr": 32.77, "ssim": 0.959}},
    ),
    OfficialCheckpoint(
        name="HINet-REDS",
        task="deblur",
        config=_official_config(64, 3, 4),
        download="https://drive.google.com/file/d/1uYH8XvLgrn-Vg6L0NjUcO2Fblhqrc8TU/view?usp=sharing",
        description="Motion blur with JPEG compression (REDS, NTIRE 2021 track 2), 88.7 M parameters.",
        reported_metrics={"source": _OFFICIAL_SOURCE, "REDS val-300": {"psnr": 28.83, "ssim": 0.862}},
    ),
    OfficialCheckpoint(
        name="HINet-Rain13k",
        task="derain",
        config=_official_config(64, 0, 4),
        download="https://drive.google.com/file/d/1AVedAkb1B2F2b3XGWlMFFVSsNfQlCwxa/view?usp=sharing",
        description="Synthetic rain streaks (Rain13k), 88.7 M parameters.",
        reported_metrics={
            "source": _OFFICIAL_SOURCE + "; PSNR/SSIM on the Y channel",
            "Test100": {"psnr": 30.29, "ssim": 0.906},
            "Rain100H": {"psnr": 30.65, "ssim": 0.894},
            "Rain100L": {"psnr": 37.28, "ssim": 0.970},
            "Test2800": {"psnr": 33.91, "ssim": 0.941},
            "Test1200": {"psnr": 33.05, "ssim": 0.919},
            "average": {"psnr": 33.03, "ssim": 0.926},
        },
    ),
)


def official_checkpoint(name_or_file: str) -> OfficialCheckpoint | None:
    """The official checkpoint called ``name_or_file`` (name, file name or path; case-insensitive)."""
    key = Path(name_or_file).name.lower()
    for ckpt in OFFICIAL_CHECKPOINTS:
        if key in (ckpt.name.lower(), ckpt.file_name.lower()):
            return ckpt
    return None


@dataclass
class ModelInfo:
    """What the registry knows about one model, without loading it.

    Attributes:
        name: registry name, used by ``load_model(name)`` and in the widgets.
        task: ``"denoise"``, ``"deblur"``, ``"derain"``, or ``"unknown"`` for a
            user file without metadata (offered for every task).
        kind: ``"bundled"``, ``"official"`` or ``"user"``.
        available: whether the weights file exists on this machine.
        path: the weights file (``None`` for a missing official checkpoint).
        config: HINet constructor arguments (``{}`` when only loading tells,
            as for a user ``.pth``).
        channels: ``"rgb"`` or ``"gray"``: the images the model was trained on.
        description: one line for people.
        file_name: expected file name (official checkpoints) or actual file name.
        where_to_get: download URL and instructions (official checkpoints).
        licence: licence of the weights.
        reported_metrics: quality numbers, each labelled with their source
            (for official models: the authors' reported figures).
        patch_size: training patch size in pixels (default tile size).
        metadata: the full JSON metadata from the file header, if any.
        problem: why a file that is present cannot be used (unreadable, bad
            metadata...); empty when ``available`` or simply missing.
    """

    name: str
    task: str
    kind: str
    available: bool
    path: Path | None
    config: dict[str, Any]
    channels: str = "rgb"
    description: str = ""
    file_name: str | None = None
    where_to_get: str = ""
    licence: str = ""
    reported_metrics: dict[str, Any] = field(default_factory=dict)
    patch_size: int = DEFAULT_PATCH_SIZE
    metadata: dict[str, Any] = field(default_factory=dict)
    problem: str = ""

    def missing_message(self) -> str:
        """Why the model cannot be loaded and how to fix it (empty when available)."""
        if self.available:
            return ""
        if self.problem:
            return (
                f"The model {self.name!r} cannot be used: {self.problem}. Replace or remove the file "
                "(other models are not affected)."
            )
        folder = _user_models_dir_path()
        if self.kind == "official":
            return (
                f"The official checkpoint {self.name!r} is not on this machine. "
                f"Download {self.file_name} from {self.where_to_get} and put it, with that exact "
                f"file name, into {folder} (or set {MODELS_DIR_ENV} to the folder that holds it)."
            )
        return f"The weights file of model {self.name!r} is missing: {self.path}."


# ----------------------------------------------------------------- folders


def _user_models_dir_path() -> Path:
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-hinet", appauthor=False)) / "models"


def user_models_dir(create: bool = True) -> Path:
    """The folder for official checkpoints, fine-tuned and user-supplied models.

    ``$HINET_MODELS_DIR`` if set, else the platform's user data folder
    (``~/.local/share/napari-hinet/models`` on Linux). Created on demand
    (``create=False``: only the path; it may not exist or not be a folder).
    """
    path = _user_models_dir_path()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def bundled_weights_dir() -> Path:
    """The package's ``weights/`` folder holding the bundled ``*.safetensors`` models."""
    return Path(__file__).resolve().parent / "weights"


# ----------------------------------------------------------------- headers

_MAX_HEADER_BYTES = 100 * 1024 * 1024


def read_safetensors_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a ``.safetensors`` file, read without loading tensors.

    Returns the header dict: one entry per tensor (``dtype``, ``shape``,
    ``data_offsets``) plus ``"__metadata__"`` (str -> str) when present.
    Raises ``ValueError`` if the file is too short or the header is not valid.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path} is not a safetensors file: only {size} bytes long (truncated?).")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER_BYTES):
            raise ValueError(
                f"{path} is not a valid safetensors file: it announces a {n}-byte header "
                f"but holds {size} bytes (truncated or not a safetensors file)."
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a valid safetensors file: its header is not JSON ({exc}).") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a valid safetensors file: its header is not a JSON object.")
    return header


def read_model_metadata(path: str | Path) -> dict[str, Any]:
    """Our JSON metadata (see ``docs/architecture.md``) from a ``.safetensors`` header.

    Returns ``{}`` for a safetensors file without our metadata. Raises
    ``ValueError`` if the header or the metadata is not valid.
    """
    meta = read_safetensors_header(path).get("__metadata__") or {}
    text = meta.get(METADATA_KEY)
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: the {METADATA_KEY!r} metadata is not valid JSON ({exc}).") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{path}: the {METADATA_KEY!r} metadata is not a JSON object.")
    return value


# ----------------------------------------------------------------- listing

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".zip")  # .zip: a bioimage.io package


_META_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "task": (str,),
    "config": (dict,),
    "channels": (str,),
    "description": (str,),
    "licence": (str,),
    "metrics": (dict,),
    "training": (dict,),
    "normalization": (str,),
    "input_range": (list,),
    "sha256": (str,),
}
_CONFIG_KEYS = ("in_chn", "wf", "depth", "relu_slope", "hin_position_left", "hin_position_right")


def check_model_metadata(meta: Any) -> None:
    """Raise ``ValueError`` naming the first field of our metadata that has the wrong type or value.

    Rules, in this order: the metadata is a JSON object; each known field has its
    documented type (see ``docs/architecture.md``); ``patch_size`` is an integer
    from 8 to 65536; ``task`` is a task or ``"unknown"``; ``normalization`` is
    ``"fixed"`` or ``"percentile"``; ``channels`` is ``"rgb"`` or ``"gray"``;
    ``config`` holds only HINet constructor arguments, numbers, with ``in_chn``,
    ``wf`` and ``depth`` whole numbers >= 1 (``depth`` <= 8).
    """
    if not isinstance(meta, dict):
        raise ValueError(f"the {METADATA_KEY!r} metadata is a JSON {type(meta).__name__}, not an object")
    for key, types in _META_TYPES.items():
        if key in meta and meta[key] is not None and not isinstance(meta[key], types):
            raise ValueError(
                f"metadata field {key!r} is {meta[key]!r}, expected a {' or '.join(t.__name__ for t in types)}"
            )
    patch = meta.get("patch_size")
    if patch is not None and (
        isinstance(patch, bool) or not isinstance(patch, int) or not 8 <= patch <= 65536
    ):
        raise ValueError(f"metadata field 'patch_size' is {patch!r}, expected a whole number from 8 to 65536")
    for key, allowed in (
        ("task", (*TASKS, "unknown")),
        ("normalization", ("fixed", "percentile")),
        ("channels", ("rgb", "gray")),
    ):
        if meta.get(key) is not None and meta[key] not in allowed:
            raise ValueError(f"metadata field {key!r} is {meta[key]!r}, expected one of {', '.join(allowed)}")
    config = meta.get("config") or {}
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"metadata 'config' has unknown HINet arguments {unknown}")
    for key, value in config.items():
        whole = key != "relu_slope"
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            raise ValueError(f"metadata 'config' field {key!r} is {value!r}, expected a number")
    for key, top in (("in_chn", 64), ("wf", 1024), ("depth", 8)):
        if key in config and not 1 <= config[key] <= top:
            raise ValueError(f"metadata 'config' field {key!r} is {config[key]}, expected 1 to {top}")


def _unusable(path: Path, kind: str, exc: Exception) -> ModelInfo:
    """A model file that is present but cannot be used, listed as unavailable with the reason."""
    reason = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
    return ModelInfo(
        name=path.stem,
        task="unknown",
        kind=kind,
        available=False,
        path=path,
        config={},
        description=f"unavailable: {reason}",
        file_name=path.name,
        problem=reason,
    )


def _info_from_safetensors(path: Path, kind: str) -> ModelInfo:
    """What the header says; a file that cannot be read or checked is listed as unavailable, with the reason."""
    try:
        meta = read_model_metadata(path)
        check_model_metadata(meta)
    except (OSError, ValueError) as exc:
        return _unusable(path, kind, exc)
    md = ModelMetadata.from_dict(meta, name=path.stem)
    return ModelInfo(
        name=md.name,
        task=md.task,
        kind=kind,
        available=True,
        path=path,
        config=dict(md.config),
        channels=str(md.channels or ("gray" if md.config.get("in_chn") in (1, 2) else "rgb")),
        description=md.description,
        file_name=path.name,
        licence=str(md.licence or ""),
        reported_metrics=dict(md.metrics),
        patch_size=md.patch_size,
        metadata=meta,
    )


def _info_from_package(path: Path) -> ModelInfo:
    """A bioimage.io package (``.zip``) in the user models folder, from its ``rdf.yaml`` alone.

    A package that is not a HINet, or whose description cannot be read, is listed as
    unavailable with the reason (see :mod:`napari_hinet.exchange.rdf`).
    """
    from .exchange.rdf import read_package

    try:
        package = read_package(path)
        meta = package.metadata
        check_model_metadata(meta)
    except (OSError, ValueError) as exc:
        return _unusable(path, "user", exc)
    config = {**(meta.get("config") or {}), **package.config}
    in_chn = config.get("in_chn")
    return ModelInfo(
        name=str(meta.get("name") or path.stem),
        task=str(meta.get("task") or "unknown"),
        kind="user",
        available=True,
        path=path,
        config=config,
        channels=str(meta.get("channels") or ("gray" if in_chn in (1, 2) else "rgb")),
        description=str(meta.get("description") or "bioimage.io package"),
        file_name=path.name,
        licence=str(meta.get("licence") or ""),
        reported_metrics=dict(meta.get("metrics") or {}),
        patch_size=int(meta.get("patch_size") or 256),
        metadata=meta,
    )


def _bundled_models() -> list[ModelInfo]:
    folder = bundled_weights_dir()
    if not folder.is_dir():
        return []
    return [_info_from_safetensors(p, "bundled") for p in sorted(folder.glob("*.safetensors"))]


def _official_models(folder: Path | None) -> list[ModelInfo]:
    present: dict[str, Path] = {}
    for p in _entries(folder):
        ckpt = official_checkpoint(p.name)
        if ckpt is not None and p.is_file() and p.suffix.lower() == ".pth":
            present[ckpt.name] = p
    infos = []
    for ckpt in OFFICIAL_CHECKPOINTS:
        path = present.get(ckpt.name)
        infos.append(
            ModelInfo(
                name=ckpt.name,
                task=ckpt.task,
                kind="official",
                available=path is not None,
                path=path,
                config=dict(ckpt.config),
                channels="rgb",
                description=ckpt.description,
                file_name=ckpt.file_name,
                where_to_get=ckpt.download,
                licence=OFFICIAL_LICENCE,
                reported_metrics=dict(ckpt.reported_metrics),
                patch_size=256,
            )
        )
    return infos


def _user_models(folder: Path | None, taken: set[str]) -> list[ModelInfo]:
    infos = []
    for p in _entries(folder):
        if not p.is_file() or p.suffix.lower() not in _WEIGHT_SUFFIXES:
            continue
        if p.suffix.lower() == ".pth" and official_checkpoint(p.name) is not None:
            continue  # listed as the official model
        if p.suffix.lower() == ".safetensors":
            info = _info_from_safetensors(p, "user")
        elif p.suffix.lower() == ".zip":
            info = _info_from_package(p)
        else:
            info = ModelInfo(
                name=p.stem,
                task="unknown",
                kind="user",
                available=True,
                path=p,
                config={},
                description="PyTorch checkpoint; architecture read from its keys on loading",
                file_name=p.name,
            )
        if info.name in taken:  # never shadow a bundled/official/earlier name
            info.name = f"{info.name} ({p.name})"
        taken.add(info.name)
        infos.append(info)
    return infos


def _entries(folder: Path | None) -> list[Path]:
    """The entries of the user models folder, sorted; none when it cannot be listed."""
    try:
        return sorted(folder.iterdir()) if folder is not None and folder.is_dir() else []
    except OSError:  # unreadable folder, /proc oddities...: see user_models_problem()
        return []


def user_models_problem() -> str:
    """Why the user models folder cannot be used (empty when it can); other models are unaffected."""
    try:
        folder = user_models_dir()
        if not folder.is_dir():
            return f"{folder} is not a folder"
        next(iter(folder.iterdir()), None)
    except OSError as exc:
        return (
            f"the user models folder {_user_models_dir_path()} cannot be used ({exc.strerror or exc}); "
            f"set {MODELS_DIR_ENV} to a readable folder"
        )
    return ""


def list_models(task: str | None = None) -> list[ModelInfo]:
    """All known models: bundled first, then official, then user models.

    Args:
        task: ``"denoise"``, ``"deblur"`` or ``"derain"`` to keep the models
            for that task (user models of unknown task are kept for every
            task); ``None`` for all.

    Official checkpoints are always listed; ``available`` tells whether their
    file is in :func:`user_models_dir`. A file that cannot be read or whose
    metadata is invalid is listed as unavailable with its ``problem``; an unusable
    user models folder (see :func:`user_models_problem`) lists no user models.
    Neither stops the listing of the other models.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of {', '.join(TASKS)} (or None for all).")
    try:
        folder: Path | None = user_models_dir()
    except OSError:  # read-only home etc.: still list bundled and official models
        folder = None
    models = _bundled_models()
    models += _official_models(folder)
    models += _user_models(folder, {m.name for m in models})
    if task is not None:
        models = [m for m in models if m.task in (task, "unknown")]
    return models


def get_model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` called ``name`` (an official file name such as ``HINet-GoPro.pth`` works too).

    Raises ``KeyError`` listing the known names.
    """
    models = list_models()
    for m in models:
        if m.name == name:
            return m
    ckpt = official_checkpoint(name)
    if ckpt is not None:
        return next(m for m in models if m.name == ckpt.name)
    known = ", ".join(m.name for m in models)
    raise KeyError(f"No model named {name!r}. Known models: {known}.")


def default_model(task: str) -> str:
    """Name of the model to use for ``task`` when the user names none.

    The bundled :data:`DEFAULT_MODELS` entry if present, else another
    bundled model for the task, else an available official checkpoint.
    Raises ``LookupError`` explaining what to do when there is none.
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    models = [m for m in list_models() if m.task == task and m.available]
    for kind in ("bundled", "official"):
        candidates = [m for m in models if m.kind == kind]
        preferred = [m for m in candidates if m.name == DEFAULT_MODELS[task]]
        if preferred or candidates:
            return (preferred or candidates)[0].name
    officials = [c for c in OFFICIAL_CHECKPOINTS if c.task == task]
    hints = "; ".join(f"{c.file_name} from {c.download}" for c in officials)
    raise LookupError(
        f"No {task} model is available: the package has no bundled weights for it "
        f"(expected {bundled_weights_dir() / (DEFAULT_MODELS[task] + '.safetensors')}) and no official "
        f"checkpoint is in {_user_models_dir_path()}. Put an official checkpoint there ({hints}), "
        f"or train one with `napari-hinet train` and save it there."
    )


def preferred_model(task: str) -> str | None:
    """The model a picker starts with for ``task``: :func:`default_model`, else the first
    available model listed for the task, else ``None`` (nothing to run)."""
    try:
        return default_model(task)
    except LookupError:
        available = [m.name for m in list_models(task) if m.available]
        return available[0] if available else None


def suggest_model(task: str, channels: str) -> str | None:
    """The model to use for ``task`` on ``channels`` data (``"rgb"`` or ``"gray"``).

    Rules, in this order:

    1. :func:`preferred_model` when its channels match;
    2. the first available bundled model of the task whose channels match,
       then any other available one whose channels match;
    3. :func:`preferred_model` (a model of the other kind still runs: the
       engine maps the channels, see docs/engine.md).
    """
    infos = [m for m in list_models(task) if m.available]
    default = preferred_model(task)
    by_name = {m.name: m for m in infos}
    if default in by_name and by_name[default].channels == channels:
        return default
    matching = sorted((m for m in infos if m.channels == channels), key=lambda m: m.kind != "bundled")
    return matching[0].name if matching else default


def base_models() -> list[ModelInfo]:
    """Available models to start fine-tuning from: the bundled default models first (denoise,
    deblur, derain), then the others in registry order."""
    defaults = list(DEFAULT_MODELS.values())
    models = [m for m in list_models() if m.available]
    return sorted(models, key=lambda m: defaults.index(m.name) if m.name in defaults else len(defaults))
