"""Reading bioimage.io model packages (a ``.zip`` or a folder with ``rdf.yaml``).

Light on purpose (standard library and PyYAML, no torch): the registry lists
packages in the user models folder with it, and
:func:`napari_hinet.checkpoints.load_model` builds the network from what it
returns. Rules, applied in this order:

1. A package is a ``.zip`` file or a folder holding ``rdf.yaml`` (or
   ``bioimageio.yaml`` / ``*.bioimageio.yaml``) at its top level.
2. The description must be of ``type: model`` and carry
   ``pytorch_state_dict`` weights whose architecture is HINet: the callable
   is named ``HINet`` or ``HINetImage`` (ours: HINet returning only the
   final image) in spec 0.5 ``architecture.callable``, or in the
   ``file.py:HINet`` string of spec 0.4, and its kwargs are a subset of
   napari-hinet's HINet arguments. Anything else raises :class:`PackageError`
   saying what is supported. (The weights must then also fit that
   architecture key for key; :func:`~napari_hinet.checkpoints.load_model`
   checks that.)
3. The weights file's ``sha256``, when the description gives one, is checked
   against the file.
4. Metadata: a package written by napari-hinet carries its model metadata
   under ``config.napari_hinet`` and that is used as is. For other packages
   it is read from the description: ``normalization`` is ``"percentile"``
   (with its percentiles) when the first input is preprocessed with
   ``scale_range``, else ``"fixed"``; the task comes from the tags (``denoising``, ``deblurring``, ``deraining``)
   or is ``"unknown"``; ``channels`` follows ``in_chn`` (set by the loader).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "HINET_ARGUMENTS",
    "HINET_CALLABLES",
    "CorruptPackageError",
    "PackageError",
    "PackageModel",
    "is_package",
    "read_package",
    "weights_file",
]

#: Architecture callables read as HINet (``HINetImage`` = HINet returning only ``out_2``).
HINET_CALLABLES = ("HINet", "HINetImage")
#: Keyword arguments of napari-hinet's HINet (a declared HINet may use any subset).
HINET_ARGUMENTS = ("in_chn", "wf", "depth", "relu_slope", "hin_position_left", "hin_position_right")

_TASK_TAGS = {"denoising": "denoise", "deblurring": "deblur", "deraining": "derain"}
_MAX_RDF_BYTES = 10 * 1024 * 1024

SUPPORTED = (
    "napari-hinet imports bioimage.io model packages whose 'pytorch_state_dict' weights declare the "
    "HINet architecture (callable 'HINet' or 'HINetImage' with arguments among "
    + ", ".join(HINET_ARGUMENTS)
    + "), "
    "such as those written by `napari-hinet export --format bioimageio`"
)


class PackageError(ValueError):
    """The path is not a bioimage.io package napari-hinet can use (the message says why)."""


class CorruptPackageError(PackageError):
    """The package's weights file is missing or does not match its sha256."""


@dataclass
class PackageModel:
    """A HINet described by a bioimage.io package, before its weights are read.

    Attributes:
        path: the ``.zip`` file or the folder.
        rdf: the parsed description (dict).
        config: the HINet constructor arguments the package declares (may be
            partial: the loader reads the rest from the weights' shapes).
        weights: name of the state-dict file inside the package.
        weights_sha256: its declared SHA-256 (hex), or ``None``.
        metadata: napari-hinet model metadata (see ``docs/architecture.md``).
    """

    path: Path
    rdf: dict[str, Any]
    config: dict[str, Any]
    weights: str
    weights_sha256: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


def _rdf_name(names: list[str]) -> str | None:
    for name in ("rdf.yaml", "bioimageio.yaml"):
        if name in names:
            return name
    found = sorted(n for n in names if n.endswith(".bioimageio.yaml") and "/" not in n)
    return found[0] if found else None


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a bioimage.io package (rule 1); reads no weights."""
    path = Path(path)
    if path.is_dir():
        return _rdf_name([p.name for p in path.iterdir()]) is not None
    if path.is_file() and path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                return _rdf_name(zf.namelist()) is not None
        except (zipfile.BadZipFile, OSError):
            return True  # a damaged package: read_package explains
    return False


def _read_member(path: Path, name: str) -> bytes:
    if path.is_dir():
        return (path / name).read_bytes()
    with zipfile.ZipFile(path) as zf:
        return zf.read(name)


def _load_rdf(path: Path) -> dict[str, Any]:
    import yaml

    try:
        if path.is_dir():
            names = [p.name for p in path.iterdir()]
        else:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        name = _rdf_name(names)
        if name is None:
            raise PackageError(f"{path} is not a bioimage.io package: it holds no rdf.yaml. {SUPPORTED}.")
        raw = _read_member(path, name)
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        raise PackageError(f"Could not read the bioimage.io package {path}: {exc}.") from exc
    if len(raw) > _MAX_RDF_BYTES:
        raise PackageError(f"{path}: its {name} is {len(raw)} bytes long; not a model description.")
    try:
        rdf = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise PackageError(f"{path}: its {name} is not valid YAML ({exc}).") from exc
    if not isinstance(rdf, dict):
        raise PackageError(f"{path}: its {name} is not a YAML mapping.")
    return rdf


def _architecture(rdf: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the pytorch_state_dict weights entry, the declared kwargs) after rule 2."""
    kind = rdf.get("type")
    if kind != "model":
        raise PackageError(f"{path} describes a bioimage.io {kind!r}, not a model. {SUPPORTED}.")
    weights = rdf.get("weights") or {}
    entry = weights.get("pytorch_state_dict") if isinstance(weights, dict) else None
    if not isinstance(entry, dict):
        formats = ", ".join(sorted(weights)) if isinstance(weights, dict) else "none"
        raise PackageError(
            f"{path} has no 'pytorch_state_dict' weights (it has: {formats}). {SUPPORTED}; "
            "TorchScript or ONNX weights alone do not tell the architecture."
        )
    arch = entry.get("architecture")
    if isinstance(arch, dict):  # spec 0.5
        callable_name = str(arch.get("callable", ""))
        kwargs = arch.get("kwargs") or {}
    elif isinstance(arch, str):  # spec 0.4: "file.py:Callable" or "module.Callable"
        callable_name = arch.replace(":", ".").split(".")[-1]
        kwargs = entry.get("kwargs") or {}
    else:
        raise PackageError(f"{path}: its pytorch_state_dict weights declare no architecture. {SUPPORTED}.")
    if callable_name not in HINET_CALLABLES:
        raise PackageError(
            f"{path} declares the architecture {callable_name!r}, not HINet. {SUPPORTED}; "
            "other networks can be run with bioimageio.core or the tools listed in docs/sharing.md."
        )
    if not isinstance(kwargs, dict):
        raise PackageError(f"{path}: the HINet kwargs are not a mapping ({kwargs!r}).")
    unknown = sorted(set(kwargs) - {*HINET_ARGUMENTS, "local_statistics"})
    if unknown:
        raise PackageError(
            f"{path} declares a HINet with arguments napari-hinet's HINet does not have: "
            f"{', '.join(unknown)}. {SUPPORTED}."
        )
    return entry, kwargs


def _derived_metadata(rdf: dict[str, Any]) -> dict[str, Any]:
    """Rule 4 for packages not written by napari-hinet."""
    inputs = rdf.get("inputs") or [{}]
    first = inputs[0] if isinstance(inputs[0], dict) else {}
    meta: dict[str, Any] = {"normalization": "fixed"}
    for step in first.get("preprocessing") or []:
        if isinstance(step, dict) and step.get("id", step.get("name")) == "scale_range":
            kw = step.get("kwargs") or {}
            meta["normalization"] = "percentile"
            meta["percentiles"] = [
                float(kw.get("min_percentile", 0.0)),
                float(kw.get("max_percentile", 100.0)),
            ]
    tags = [str(t).lower() for t in rdf.get("tags") or []]
    meta["task"] = next((task for tag, task in _TASK_TAGS.items() if tag in tags), "unknown")
    meta["input_range"] = [0.0, 1.0]
    meta["description"] = str(rdf.get("description", ""))
    meta["licence"] = str(rdf.get("license", rdf.get("licence", "unknown")))
    return meta


def read_package(path: str | os.PathLike) -> PackageModel:
    """Read and check a bioimage.io package's description (rules 1, 2 and 4; no weights read).

    Raises :class:`PackageError` naming the problem and what is supported.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No bioimage.io package at {path}.")
    rdf = _load_rdf(path)
    entry, kwargs = _architecture(rdf, path)
    source = entry.get("source")
    if not isinstance(source, str) or "://" in source:
        raise PackageError(
            f"{path}: the pytorch_state_dict weights are not a file inside the package ({source!r}); "
            "nothing is downloaded: get the package with its weights (the .zip) and load that."
        )
    config = dict(kwargs)
    tlc = config.pop("local_statistics", None)  # HINetImage's TLC windows: metadata, not a HINet argument
    ours = (rdf.get("config") or {}).get("napari_hinet")
    if isinstance(ours, dict):
        meta = dict(ours)
    else:
        meta = _derived_metadata(rdf)
    if tlc:
        meta["local_statistics"] = tlc
    meta["name"] = str(rdf.get("name") or path.stem)
    meta["bioimageio"] = {"format_version": str(rdf.get("format_version", "")), "package": str(path)}
    return PackageModel(
        path=path,
        rdf=rdf,
        config=config,
        weights=source,
        weights_sha256=entry.get("sha256"),
        metadata=meta,
    )


@contextmanager
def weights_file(package: PackageModel) -> Iterator[Path]:
    """A local path to the package's state-dict file, its sha256 checked (rule 3).

    For a ``.zip`` the file is extracted to a temporary folder removed afterwards.
    Raises :class:`PackageError` if the file is missing or its hash differs.
    """
    try:
        data = _read_member(package.path, package.weights)
    except (KeyError, OSError, zipfile.BadZipFile) as exc:
        raise CorruptPackageError(
            f"{package.path}: the weights file {package.weights!r} named in its description is missing ({exc})."
        ) from exc
    if package.weights_sha256:
        actual = hashlib.sha256(data).hexdigest()
        if actual != package.weights_sha256:
            raise CorruptPackageError(
                f"{package.path}: the weights file {package.weights!r} is corrupted: its sha256 is {actual}, "
                f"the description says {package.weights_sha256}. Copy or download the package again."
            )
    with tempfile.TemporaryDirectory(prefix="hinet-package-") as tmp:
        local = Path(tmp) / Path(package.weights).name
        local.write_bytes(data)
        yield local
