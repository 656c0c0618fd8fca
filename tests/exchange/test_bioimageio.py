"""bioimage.io packages: written by us, passed by bioimageio.core's model test, read back."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import yaml

from napari_hinet.exchange.bioimageio import export_bioimageio, package_layout
from napari_hinet.exchange.onnx import export_onnx
from napari_hinet.model import set_statistics

from .conftest import make_tiny

core = pytest.importorskip("bioimageio.core")


def _rdf(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return yaml.safe_load(zf.read("rdf.yaml"))


def _passes(path, **kwargs) -> None:
    summary = core.test_model(path, **kwargs)
    failed = [d for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", "\n".join(f"{d.name}: {d.errors}" for d in failed)


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory):
    """The tiny percentile model and its package (written once for this module)."""
    model = make_tiny()
    return model, export_bioimageio(model, tmp_path_factory.mktemp("pkg") / "tiny.zip", authors=["A. Tester"])


def test_percentile_package_passes_bioimageio_core(tiny_package):
    tiny_model, path = tiny_package
    _passes(path)  # all three weight formats, test tensors and the size/batch checks

    rdf = _rdf(path)
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript", "onnx"}
    sd = rdf["weights"]["pytorch_state_dict"]
    assert sd["architecture"]["callable"] == "HINetImage"
    assert sd["architecture"]["kwargs"] == tiny_model.config
    assert sd["pytorch_version"].startswith("2.")
    assert rdf["weights"]["onnx"]["opset_version"] == 17
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    layout = package_layout(tiny_model)
    assert layout == {"step": 4, "min": 12, "halo": 4}  # depth 3, patch 32
    assert inp["axes"][2]["size"] == {"min": 12, "step": 4}
    assert out["axes"][2]["halo"] == 4
    scale = next(p for p in inp["preprocessing"] if p["id"] == "scale_range")["kwargs"]
    assert (scale["min_percentile"], scale["max_percentile"]) == (1.0, 99.8)
    assert "normalised units" in out["description"]
    assert rdf["license"] == "MIT" and [c["url"] for c in rdf["cite"]] == ["https://arxiv.org/abs/2105.06086"]
    assert rdf["authors"] == [{"name": "A. Tester"}]
    assert rdf["config"]["napari_hinet"]["task"] == "denoise"
    with zipfile.ZipFile(path) as zf:
        readme = zf.read("README.md").decode()
        names = set(zf.namelist())
    for section in ("## Training data", "## Measured quality", "## Limits", "## Citations"):
        assert section in readme
    assert {"cover.png", "hinet.py", "weights.pt", "test_input.npy", "test_output.npy"} <= names


def test_fixed_rgb_package_maps_8_bit_and_cites_tlc(tmp_path):
    model = make_tiny(in_chn=3, normalization="fixed", seed=1)
    image = np.random.default_rng(0).integers(0, 256, (80, 90, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="package takes 8-bit images; give image= as uint8"):
        export_bioimageio(model, tmp_path / "x.zip", image=image.astype(np.uint16) * 200)
    set_statistics(model, "local", patch_size=16)  # TLC windows 16, 8, 4 at levels 0-2
    path = export_bioimageio(model, tmp_path / "rgb.zip", image=image)
    _passes(path, weight_format="pytorch_state_dict")  # the architecture file rebuilds the TLC windows
    rdf = _rdf(path)
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    assert inp["data"] == {"type": "float32", "range": [0.0, 255.0]}
    assert [p["id"] for p in inp["preprocessing"]] == ["ensure_dtype", "scale_linear", "ensure_dtype"]
    assert [p["id"] for p in out["postprocessing"]] == ["scale_linear", "clip", "ensure_dtype"]
    assert len(rdf["cite"]) == 2 and "Global" in rdf["cite"][1]["text"]
    assert set(rdf["weights"]) == {"pytorch_state_dict"}  # traces cannot keep TLC windows
    with pytest.raises(ValueError, match="TLC local statistics"):
        export_onnx(model, tmp_path / "rgb.onnx")
    kwargs = rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]
    assert kwargs["local_statistics"] == {"levels": [0, 1, 2], "windows": [16, 8, 4], "border": "clamp"}


def test_round_trip_export_import_restore_is_identical(tiny_package, tmp_path):
    from napari_hinet import load_model, restore

    tiny_model, path = tiny_package
    back = load_model(path)
    assert back.config == tiny_model.config
    assert back.metadata["normalization"] == "percentile" and back.metadata["source"] == "bioimage.io"
    image = np.random.default_rng(3).normal(500, 50, (40, 52)).astype(np.float32)
    kwargs = {"device": "cpu", "tile": 32, "overlap": 8}
    np.testing.assert_array_equal(restore(image, back, **kwargs), restore(image, tiny_model, **kwargs))

    folder = tmp_path / "unpacked"
    zipfile.ZipFile(path).extractall(folder)
    assert load_model(folder).config == tiny_model.config  # a folder with rdf.yaml works too
