"""Reading packages: what is supported, clear errors for the rest, the registry lists them."""

from __future__ import annotations

import shutil
import zipfile

import pytest
import torch
import yaml

from napari_hinet.checkpoints import CorruptCheckpointError, LayoutError, load_model
from napari_hinet.registry import list_models

from .conftest import make_tiny


def _package(folder, rdf: dict, weights: dict | None = None):
    """A minimal package folder: rdf.yaml and, optionally, a state dict."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    if weights is not None:
        torch.save(weights, folder / "weights.pt")
    return folder


def _hinet_rdf(kwargs: dict, callable_name: str = "HINet") -> dict:
    return {
        "type": "model",
        "format_version": "0.5.4",
        "name": "someone else's HINet",
        "tags": ["deblurring"],
        "inputs": [
            {"id": "raw", "preprocessing": [{"id": "scale_range", "kwargs": {"max_percentile": 99.0}}]}
        ],
        "weights": {
            "pytorch_state_dict": {
                "source": "weights.pt",
                "architecture": {"source": "arch.py", "callable": callable_name, "kwargs": kwargs},
            }
        },
    }


def test_a_declared_hinet_from_elsewhere_loads(tmp_path):
    tiny = make_tiny()
    folder = _package(tmp_path / "pkg", _hinet_rdf({"in_chn": 1, "wf": 8, "depth": 3}), tiny.state_dict())
    model = load_model(folder)
    assert model.config == tiny.config  # undeclared arguments read from the weights
    meta = model.metadata
    assert (meta["task"], meta["normalization"], meta["percentiles"], meta["channels"]) == (
        "deblur",
        "percentile",
        [0.0, 99.0],
        "gray",
    )
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x)[1], tiny(x)[1])


@pytest.mark.parametrize(
    ("rdf", "message"),
    [
        ({"type": "dataset"}, "not a model"),
        ({"type": "model", "weights": {"onnx": {"source": "m.onnx"}}}, "no 'pytorch_state_dict' weights"),
        (_hinet_rdf({}, callable_name="UNet2d"), "declares the architecture 'UNet2d', not HINet"),
        (_hinet_rdf({"width": 3}), "arguments napari-hinet's HINet does not have: width"),
    ],
)
def test_other_packages_get_an_error_saying_what_is_supported(tmp_path, rdf, message):
    folder = _package(tmp_path / "pkg", rdf)
    with pytest.raises(LayoutError, match=message) as info:
        load_model(folder)
    assert "napari-hinet imports bioimage.io model packages" in str(info.value)


def test_wrong_weights_hash_is_corrupt(tmp_path):
    rdf = _hinet_rdf({"in_chn": 1, "wf": 8, "depth": 3})
    rdf["weights"]["pytorch_state_dict"]["sha256"] = "0" * 64
    folder = _package(tmp_path / "pkg", rdf, make_tiny().state_dict())
    with pytest.raises(CorruptCheckpointError, match="sha256"):
        load_model(folder)


def test_registry_lists_packages_and_a_broken_one_does_not_break_listing(tmp_models_dir, tmp_path):
    tiny = make_tiny()
    folder = _package(tmp_path / "good", _hinet_rdf({"in_chn": 1, "wf": 8, "depth": 3}), tiny.state_dict())
    shutil.make_archive(str(tmp_models_dir / "good"), "zip", folder)
    (tmp_models_dir / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with zipfile.ZipFile(tmp_models_dir / "other.zip", "w") as zf:
        zf.writestr("rdf.yaml", yaml.safe_dump({"type": "model", "name": "a unet", "weights": {}}))

    infos = {m.file_name: m for m in list_models() if m.kind == "user"}
    good = infos["good.zip"]
    assert good.available and good.name == "someone else's HINet" and good.task == "deblur"
    assert good in list_models("deblur") and good not in list_models("derain")
    assert not infos["broken.zip"].available and "broken.zip" in infos["broken.zip"].problem
    assert not infos["other.zip"].available and "pytorch_state_dict" in infos["other.zip"].problem
    assert load_model("someone else's HINet").config == tiny.config
