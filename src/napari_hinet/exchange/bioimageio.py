"""Write a BioImage Model Zoo (bioimage.io, spec 0.5) package of a HINet.

The package is a ``.zip`` holding ``rdf.yaml`` and the files it names. Rules,
applied in this order:

1. **Weights**, three formats of the same float32 weights:
   ``pytorch_state_dict`` (``weights.pt``, a plain ``{name: tensor}`` dict
   that loads with ``torch.load(weights_only=True)``; architecture = the
   one-file ``hinet.py`` from :func:`.network.architecture_source` with
   callable ``HINetImage`` (HINet returning only the final image; same
   weights) and the model's config as kwargs; the torch version),
   ``torchscript`` (``weights_torchscript.pt``) and ``onnx``
   (``weights.onnx``, opset :data:`.onnx.OPSET`), the last two with parent
   ``pytorch_state_dict``. A model with TLC local statistics gets only the
   ``pytorch_state_dict`` weights (traces cannot keep its size-dependent windows).
2. **Input** ``input``: axes batch, channel (1 ``gray`` or 3 ``r g b``),
   y, x. Sizes: ``min + k * step`` with step ``m = 2**(depth-1)`` and min
   the smallest multiple of m that is at least ``2 * m`` and ``2 * halo + m``.
   Data: float32 (``ensure_dtype`` converts other input); values in any
   camera range for percentile models (microscopy), 0-255 for fixed-range
   models (8-bit photos).
3. **Pre-processing** = our normalisation (:mod:`napari_hinet.engine.intensity`):
   ``scale_range`` over channel, y, x with the model's percentiles (default
   1 and 99.8) for ``"percentile"`` models; ``scale_linear`` by 1/255 for
   ``"fixed"`` models.
4. **Output** ``output``: same axes and size as the input, with a ``halo``
   of half the engine's default overlap per side (:func:`napari_hinet.settings.default_overlap`
   of ``patch_size``: 8 pixels for 64- and 128-pixel models, 32 for 256): our engine
   blends tiles of ``patch_size`` over that overlap, i.e. it trusts a tile's border
   only half that deep. A consumer that tiles should crop the
   halo. **Post-processing** back to the input range: for fixed models
   ``scale_linear`` by 255 and ``clip`` to [0, 255] (exactly what our engine
   does). For percentile models the spec has no operation that inverts a
   per-image percentile scaling, so the output stays in the normalised units
   (0 = the input's low percentile, 1 = its high percentile); the README and
   the output description say so.
5. **Test tensors**: the test input is a crop of ``image`` (default: the
   model's sample image, see :mod:`napari_hinet._sample_data`) of a valid
   size near 64 x 64; the test output is computed by our engine
   (:func:`napari_hinet.restore`, whole image, float32) and mapped to the
   package's output units.
6. **Cover**: the test input and output side by side (2:1 PNG). **README**:
   the model card from the metadata (task, data, degradation, recipe,
   measured quality, limits). **Citations**: HINet, and TLC when the model
   uses local statistics (:func:`napari_hinet.model.set_statistics`; the
   kwarg ``local_statistics`` of the architecture then carries the windows). **Licence**:
   the SPDX id at the start of the model's licence (``"MIT (weights)..."``
   gives ``MIT``), or ``licence=`` given by the caller.
7. Our full model metadata goes under ``config.napari_hinet`` (so the
   import is lossless), the test tolerance under
   ``config.bioimageio.reproducibility_tolerance``. The description is
   validated by ``bioimageio.spec`` and zipped by its
   ``save_bioimageio_package``; ``bioimageio.core``'s ``test_model`` runs it
   in our tests.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine.intensity import percentile_mapping, percentile_normalize
from ..io import atomic_output
from ..metadata import ModelMetadata
from ..model import HINet
from ..settings import default_overlap
from .network import architecture_source, as_model, local_statistics
from .onnx import OPSET, export_onnx
from .torchscript import export_torchscript

__all__ = ["CITATIONS", "export_bioimageio", "licence_id", "package_layout"]

#: citation key -> (text, url)
CITATIONS = {
    "hinet": (
        "Chen, L., Lu, X., Zhang, J., Chu, X., Chen, C.: HINet: Half Instance Normalization Network "
        "for Image Restoration. CVPR Workshops (2021)",
        "https://arxiv.org/abs/2105.06086",
    ),
    "tlc": (
        "Chu, X., Chen, L., Chen, C., Lu, X.: Improving Image Restoration by Revisiting Global "
        "Information Aggregation. ECCV (2022)",
        "https://arxiv.org/abs/2112.04491",
    ),
}

_TASK_TAGS = {"denoise": "denoising", "deblur": "deblurring", "derain": "deraining"}
_TEST_SIZE = 64
_SAMPLES = {"denoise": "noisy_photo", "deblur": "blurred_photo", "derain": "rainy_photo"}


def package_layout(model: HINet) -> dict[str, int]:
    """Size rules of rule 2 and 4: ``{"step", "min", "halo"}`` in pixels for ``model``."""
    m = model.size_multiple
    patch = ModelMetadata.from_dict(model.metadata).patch_size
    halo = max(1, default_overlap(patch) // 2)
    minimum = -(-max(2 * m, 2 * halo + m) // m) * m
    return {"step": m, "min": minimum, "halo": halo}


def licence_id(text: str) -> str | None:
    """The SPDX licence id ``text`` is or starts with (``"MIT (weights)..."`` -> ``"MIT"``), else ``None``."""
    from bioimageio.spec.model import v0_5 as bmz
    from pydantic import ValidationError

    for token in (text.strip(), text.strip().split(" ")[0].strip(";,")) if text else ():
        try:
            return str(bmz.LicenseId(token))
        except ValidationError:
            continue
    return None


def _spdx(licence: str, given: bool) -> str:
    """The package licence: ``licence`` as given, or the SPDX id of the model's licence text."""
    found = licence_id(licence)
    if found is None or (given and found != licence.strip()):
        token = licence.strip() if given else (licence.strip().split(" ")[0] if licence else "")
        where = "is not an SPDX licence id" if given else f"(model licence: {licence!r}) names no SPDX id"
        raise ValueError(
            f"{token!r} {where}; a bioimage.io package needs one. Pass licence='MIT' (or 'CC-BY-4.0', "
            "'BSD-3-Clause', ...): the licence under which you share these weights."
        )
    return found


def _test_image(model: HINet, image: np.ndarray | None) -> np.ndarray:
    """(C, H, W) test input of a valid size near 64 x 64 (rule 5), in data units."""
    from .._sample_data import noisy_fluorescence, noisy_photo

    channels = model.config["in_chn"]
    if image is None:
        if channels == 3:
            from .. import _sample_data

            task = model.metadata.get("task")
            image = getattr(_sample_data, _SAMPLES.get(task, "noisy_photo"))()[1][0]
        elif model.metadata.get("normalization") == "percentile":
            image = noisy_fluorescence()[1][0].astype(np.float32)
        else:
            rgb = noisy_photo()[1][0]
            image = np.rint(rgb.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])).astype(np.uint8)
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    elif image.ndim == 3 and image.shape[-1] in (1, 3) and image.shape[0] not in (1, 3):
        image = np.moveaxis(image, -1, 0)
    if image.ndim != 3 or image.shape[0] not in (1, channels):
        raise ValueError(
            f"image must be a 2-D plane or a (Y, X, {channels}) image for this {channels}-channel model, "
            f"got shape {image.shape}."
        )
    if image.shape[0] != channels:
        image = np.repeat(image, channels, axis=0)
    layout = package_layout(model)
    size = layout["min"] + max(0, -(-(_TEST_SIZE - layout["min"]) // layout["step"])) * layout["step"]
    h, w = image.shape[1:]
    if h < size or w < size:
        raise ValueError(
            f"image must be at least {size} x {size} pixels for the test tensors, got {h} x {w}."
        )
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(image[:, top : top + size, left : left + size])


def _as_8_bit(image: np.ndarray) -> np.ndarray:
    """A fixed-range model's test image as uint8: uint8 as is, floats in [0, 1] scaled by 255."""
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind == "f" and image.size and 0.0 <= image.min() and image.max() <= 1.0:
        return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    raise ValueError(
        f"This model maps a fixed 8-bit range (normalization 'fixed'), so its package takes 8-bit "
        f"images; give image= as uint8 or as floats in [0, 1], not {image.dtype} "
        f"(values {image.min()}..{image.max()})."
    )


def _engine_output(model: HINet, test_input: np.ndarray, fixed: bool, percentiles: list[float]) -> np.ndarray:
    """Our engine's result for the (C, H, W) test input, in the package's output units (rule 5)."""
    from ..engine import restore

    data = np.moveaxis(test_input, 0, -1) if test_input.shape[0] == 3 else test_input[0]
    out = restore(
        data,
        model,
        axes="YXC" if test_input.shape[0] == 3 else "YX",
        device="cpu",
        precision="fp32",
        backend="torch",  # the package's reference output comes from the reference implementation
        tiling="none",
        normalization="fixed" if fixed else "percentile",
        percentiles=tuple(percentiles),
        out_dtype="float32",
    )
    out = np.moveaxis(out, -1, 0) if test_input.shape[0] == 3 else out[None]
    if not fixed:
        out = percentile_mapping(test_input, tuple(percentiles)).forward(out)  # the engine's mapping
    return out.astype(np.float32)


def _cover(before: np.ndarray, after: np.ndarray, path: Path, fixed: bool) -> None:
    """Before | after PNG (2:1), both shown with the input's display range."""
    import imageio.v3 as iio

    if fixed:
        lo, hi = 0.0, 255.0
        shown = [before.astype(np.float32), after]
    else:
        lo, hi = 0.0, 1.0
        shown = [percentile_normalize(before), after]
    tiles = [np.clip((np.moveaxis(t, 0, -1) - lo) / (hi - lo) * 255.0, 0, 255) for t in shown]
    pair = np.concatenate(tiles, axis=1).round().astype(np.uint8)
    pair = pair.repeat(4, axis=0).repeat(4, axis=1)  # 4x: a 64-pixel crop is too small to look at
    iio.imwrite(path, pair[..., 0] if pair.shape[-1] == 1 else pair)


def _yaml_block(value: Any) -> str:
    import yaml

    return "```yaml\n" + yaml.safe_dump(value, sort_keys=False, allow_unicode=True).strip() + "\n```\n"


def _readme(meta: dict[str, Any], name: str, description: str, layout: dict[str, int], fixed: bool) -> str:
    training = meta.get("training") or {}
    data = dict(training.get("data") or {})
    degradation = data.pop("degradation", None)
    percentiles = meta.get("percentiles", [1.0, 99.8])
    lines = [
        f"# {name}",
        "",
        description,
        "",
        "## Use",
        "",
        f"- Task: **{meta.get('task', 'unknown')}**, {meta.get('channels', '?')} images, 2-D planes.",
        f"- Network: HINet {json.dumps(meta.get('config', {}))}.",
        f"- Input size: H and W = {layout['min']} + k x {layout['step']} pixels "
        f"(multiples of 2**(depth-1) = {layout['step']}).",
        f"- Halo: crop {layout['halo']} pixels from each side of a tile when tiling "
        "(Half Instance Normalization makes each output depend on its whole tile; "
        f"napari-hinet blends tiles of {meta.get('patch_size', 256)} pixels).",
    ]
    if fixed:
        lines.append(
            "- Intensities: 8-bit input is divided by 255; the output is multiplied by 255 and clipped."
        )
    else:
        lines += [
            f"- Intensities: each image is scaled so that its {percentiles[0]}th / {percentiles[1]}th "
            "percentiles map to 0 / 1 (`scale_range`).",
            "- **The output is in these normalised units** (the bioimage.io spec has no operation that "
            "inverts a per-image percentile scaling). To get camera units back, compute the same two "
            "percentiles of the input and apply `output * (high - low) + low`, as napari-hinet does.",
        ]
    lines += ["", "## Training data", ""]
    lines.append(_yaml_block(data) if data else "Not recorded for this model.\n")
    if degradation:
        lines += ["## Degradation model", "", _yaml_block(degradation)]
    recipe = {k: v for k, v in training.items() if k not in ("data", "split")}
    if recipe:
        lines += ["## Training recipe", "", _yaml_block(recipe)]
    lines += ["## Measured quality", ""]
    metrics = meta.get("metrics") or meta.get("reported_metrics")
    lines.append(_yaml_block(metrics) if metrics else "No measurements recorded for this model.\n")
    lines += [
        "## Limits",
        "",
        "- Trained on the data and degradations above; other noise levels, blur kernels or modalities "
        "may be restored less well or get artefacts. Check the result against the raw image.",
        "- A restored image is an estimate, not a measurement: do not quantify structures the input "
        "does not show.",
        "- Tiles smaller than the training patch see less context; whole planes or large tiles "
        "with the halo cropped match napari-hinet best.",
        "",
        "## Citations",
        "",
    ]
    for key in _citation_keys(meta):
        text, url = CITATIONS[key]
        lines.append(f"- {text}. {url}")
    lines += [
        "",
        "## Licence",
        "",
        str(meta.get("licence", "unknown")),
        "",
        f"Exported with napari-hinet {_package_version()} (torch {torch.__version__}).",
        "",
    ]
    return "\n".join(lines)


def _citation_keys(meta: dict[str, Any]) -> list[str]:
    return ["hinet", "tlc"] if meta.get("local_statistics") else ["hinet"]  # set from the model


def _package_version() -> str:
    from .. import __version__

    return __version__


def _authors(value: Any, meta: dict[str, Any]) -> list[dict[str, str]]:
    value = value if value is not None else meta.get("authors")
    if value is None:
        value = (
            ["napari-hinet developers"] if meta.get("registry_kind") == "bundled" else ["napari-hinet user"]
        )
    if isinstance(value, str):
        value = [value]
    return [a if isinstance(a, dict) else {"name": str(a)} for a in value]


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(meta, default=str))


def export_bioimageio(
    model: HINet | str | os.PathLike,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    description: str | None = None,
    authors: list[str] | list[dict[str, str]] | str | None = None,
    licence: str | None = None,
    tags: list[str] | None = None,
    image: np.ndarray | None = None,
    **metadata: Any,
) -> Path:
    """Write ``model`` as a bioimage.io (spec 0.5) ``.zip`` package; returns the path.

    Args:
        model: a HINet, registry name or weights file (see :func:`~napari_hinet.load_model`).
        path: the ``.zip`` to write (atomically; parent folders are created).
        name: package name (5-128 characters); default: the model's name.
        description: one paragraph; default: made from task, channels and metrics.
        authors: names (or ``{"name": ..., "affiliation": ...}`` dicts);
            default: the model's ``authors`` metadata, "napari-hinet developers"
            for bundled models.
        licence: SPDX licence id of the weights; default: read from the model's licence.
        tags: extra tags (task, "napari-hinet", "hinet", "2d", "pytorch" are always added).
        image: the test image, 2-D (gray) or (Y, X, 3) (RGB), in data units;
            default: the model's sample image. A centre crop of about 64 x 64 is used.
        **metadata: stored with the model metadata under ``config.napari_hinet``
            (e.g. ``training``, ``metrics``).

    The package carries pytorch_state_dict, TorchScript and ONNX weights, test
    tensors, a cover, a README model card and citations (rules in the module docstring).
    """
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as bmz

    model = as_model(model)  # a HINet is used as is: not moved, not switched to eval
    meta = _jsonable({**model.metadata, **metadata})
    meta["local_statistics"] = local_statistics(model)  # TLC windows, or None
    name = str(name or meta.get("name") or "hinet-model")
    if len(name) < 5:
        name = f"HINet {name}"
    meta["name"] = name
    task = str(meta.get("task", "unknown"))
    fixed = meta.get("normalization", "fixed") != "percentile"
    percentiles = [float(p) for p in meta.get("percentiles", [1.0, 99.8])]
    meta["percentiles"] = percentiles
    channels = model.config["in_chn"]
    layout = package_layout(model)
    spdx = _spdx(licence, True) if licence else _spdx(str(meta.get("licence", "")), False)
    if description is None:
        description = meta.get("description") or (
            f"HINet ({task}) for {'RGB' if channels == 3 else 'single-channel'} images, "
            f"exported from napari-hinet."
        )

    test_input = _test_image(model, image)
    if fixed:
        test_input = _as_8_bit(test_input)
    else:
        test_input = test_input.astype(np.float32)
    test_output = _engine_output(model, test_input, fixed, percentiles)
    test_input = test_input.astype(np.float32)  # the package's input data type (8-bit values for photos)

    with tempfile.TemporaryDirectory(prefix="hinet-bioimageio-") as tmp_dir:
        tmp = Path(tmp_dir)
        np.save(tmp / "test_input.npy", test_input[None])
        np.save(tmp / "test_output.npy", test_output[None])
        _cover(test_input, test_output, tmp / "cover.png", fixed)
        (tmp / "README.md").write_text(_readme(meta, name, description, layout, fixed))
        (tmp / "hinet.py").write_text(architecture_source())
        cpu = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
        torch.save(cpu, tmp / "weights.pt")
        if not meta["local_statistics"]:  # TLC: pytorch_state_dict only (see network.traceable)
            export_torchscript(model, tmp / "weights_torchscript.pt")
            export_onnx(model, tmp / "weights.onnx")

        channel_names = ["r", "g", "b"] if channels == 3 else ["gray"] if channels == 1 else None
        channel_axis = (
            bmz.ChannelAxis(channel_names=[bmz.Identifier(c) for c in channel_names])
            if channel_names
            else bmz.ChannelAxis(channel_names=[bmz.Identifier(f"c{i}") for i in range(channels)])
        )
        size = bmz.ParameterizedSize(min=layout["min"], step=layout["step"])
        axes_in = [
            bmz.BatchAxis(),
            channel_axis,
            bmz.SpaceInputAxis(id=bmz.AxisId("y"), size=size),
            bmz.SpaceInputAxis(id=bmz.AxisId("x"), size=size),
        ]
        if fixed:
            pre = [
                bmz.EnsureDtypeDescr(kwargs=bmz.EnsureDtypeKwargs(dtype="float32")),
                bmz.ScaleLinearDescr(kwargs=bmz.ScaleLinearKwargs(gain=1.0 / 255.0)),
            ]
            post = [
                bmz.ScaleLinearDescr(kwargs=bmz.ScaleLinearKwargs(gain=255.0)),
                bmz.ClipDescr(kwargs=bmz.ClipKwargs(min=0.0, max=255.0)),
            ]
            in_data = bmz.IntervalOrRatioDataDescr(type="float32", range=(0.0, 255.0))
            out_data = bmz.IntervalOrRatioDataDescr(type="float32", range=(0.0, 255.0))
            out_text = "Restored image in the input's 8-bit units (float32, clipped to [0, 255])."
        else:
            pre = [
                bmz.EnsureDtypeDescr(kwargs=bmz.EnsureDtypeKwargs(dtype="float32")),
                bmz.ScaleRangeDescr(
                    kwargs=bmz.ScaleRangeKwargs(
                        axes=[bmz.AxisId("channel"), bmz.AxisId("y"), bmz.AxisId("x")],
                        min_percentile=percentiles[0],
                        max_percentile=percentiles[1],
                    )
                ),
            ]
            post = []
            in_data = bmz.IntervalOrRatioDataDescr(type="float32")
            out_data = bmz.IntervalOrRatioDataDescr(type="float32")
            out_text = (
                f"Restored image in normalised units: 0 and 1 are the input's {percentiles[0]}th and "
                f"{percentiles[1]}th percentiles (see README)."
            )
        axes_out = [
            bmz.BatchAxis(),
            channel_axis,
            *(
                bmz.SpaceOutputAxisWithHalo(
                    id=bmz.AxisId(a),
                    size=bmz.SizeReference(tensor_id=bmz.TensorId("input"), axis_id=bmz.AxisId(a)),
                    halo=layout["halo"],
                )
                for a in ("y", "x")
            ),
        ]
        kind = "microscopy image" if not fixed else "8-bit image"
        inputs = [
            bmz.InputTensorDescr(
                id=bmz.TensorId("input"),
                description=f"Degraded {kind} (batch, channel, y, x).",
                axes=axes_in,
                test_tensor=bmz.FileDescr(source=tmp / "test_input.npy"),
                data=in_data,
                preprocessing=pre,
            )
        ]
        outputs = [
            bmz.OutputTensorDescr(
                id=bmz.TensorId("output"),
                description=out_text,
                axes=axes_out,
                test_tensor=bmz.FileDescr(source=tmp / "test_output.npy"),
                data=out_data,
                postprocessing=post,
            )
        ]
        torch_version = bmz.Version(torch.__version__.split("+")[0])
        weights = bmz.WeightsDescr(
            pytorch_state_dict=bmz.PytorchStateDictWeightsDescr(
                source=tmp / "weights.pt",
                architecture=bmz.ArchitectureFromFileDescr(
                    source=tmp / "hinet.py",
                    callable=bmz.Identifier("HINetImage"),
                    kwargs={
                        **model.config,
                        **(
                            {"local_statistics": meta["local_statistics"]} if meta["local_statistics"] else {}
                        ),
                    },
                ),
                pytorch_version=torch_version,
            ),
            **(
                {}
                if meta["local_statistics"]
                else {
                    "torchscript": bmz.TorchscriptWeightsDescr(
                        source=tmp / "weights_torchscript.pt",
                        pytorch_version=torch_version,
                        parent="pytorch_state_dict",
                    ),
                    "onnx": bmz.OnnxWeightsDescr(
                        source=tmp / "weights.onnx", opset_version=OPSET, parent="pytorch_state_dict"
                    ),
                }
            ),
        )
        scale = 255.0 if fixed else 1.0
        tolerance = bmz.ReproducibilityTolerance(
            absolute_tolerance=1e-3 * scale, relative_tolerance=1e-3, mismatched_elements_per_million=0
        )
        all_tags = ["napari-hinet", "hinet", "2d", "pytorch", "image-restoration"]
        if task in _TASK_TAGS:
            all_tags.append(_TASK_TAGS[task])
        all_tags.append("fluorescence-light-microscopy" if not fixed else "photography")
        all_tags += [t for t in tags or [] if t not in all_tags]
        descr = bmz.ModelDescr(
            name=name,
            description=str(description),
            authors=[bmz.Author(**a) for a in _authors(authors, meta)],
            cite=[bmz.CiteEntry(text=CITATIONS[k][0], url=CITATIONS[k][1]) for k in _citation_keys(meta)],
            license=bmz.LicenseId(spdx),
            documentation=bmz.FileDescr(source=tmp / "README.md"),
            covers=[bmz.FileDescr(source=tmp / "cover.png")],
            tags=all_tags,
            inputs=inputs,
            outputs=outputs,
            weights=weights,
            config=bmz.Config(
                bioimageio=bmz.BioimageioConfig(reproducibility_tolerance=[tolerance]),
                napari_hinet=meta,
            ),
        )
        with atomic_output(path) as out:
            save_bioimageio_package(descr, output_path=out.with_suffix(".zip"))
            out.with_suffix(".zip").replace(out)
    return Path(path)
