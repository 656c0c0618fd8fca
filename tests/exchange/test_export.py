"""napari_hinet.export() and `napari-hinet export`."""

from __future__ import annotations

import sys

import pytest
import torch

import napari_hinet
from napari_hinet.checkpoints import save_model
from napari_hinet.cli import main

from .conftest import make_tiny


@pytest.fixture
def tiny_file(tmp_path):
    return save_model(make_tiny(), tmp_path / "tiny.safetensors")


def test_export_is_public_and_lazy():
    code = "import sys, napari_hinet; napari_hinet.export; assert 'torch' not in sys.modules"
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_export_from_a_file_in_each_bare_format(tiny_file, tmp_path):
    onnx_path = napari_hinet.export(tiny_file, tmp_path / "m.onnx", format="onnx")
    ts_path = napari_hinet.export(str(tiny_file), tmp_path / "m.pt", format="torchscript")
    assert onnx_path.stat().st_size > 0
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        expected = make_tiny()(x)[1]
    assert torch.allclose(torch.jit.load(str(ts_path))(x), expected, atol=1e-5)


def test_exporting_a_model_leaves_it_as_it_was(tmp_path):
    model = make_tiny().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    napari_hinet.export(model, tmp_path / "m.onnx", format="onnx")
    assert model.training, "export must not switch the caller's model to eval mode"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_export_errors_name_the_problem(tiny_file, tmp_path):
    with pytest.raises(ValueError, match="Unknown export format 'tflite'; choose one of bioimageio"):
        napari_hinet.export(tiny_file, tmp_path / "m.x", format="tflite")
    with pytest.raises(ValueError, match="only be stored in a bioimage.io package"):
        napari_hinet.export(tiny_file, tmp_path / "m.onnx", format="onnx", authors=["me"])
    assert not list(tmp_path.glob("m.*"))


def test_cli_export(tiny_file, tmp_path, capsys):
    assert main(["export", str(tiny_file), "-o", str(tmp_path / "m.onnx")]) == 0  # format from the suffix
    assert "wrote" in capsys.readouterr().out and (tmp_path / "m.onnx").is_file()
    assert main(["export", "no-such-model", "-o", str(tmp_path / "x.zip")]) == 2
    assert "No model named 'no-such-model'" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


@pytest.mark.slow
def test_cli_exports_the_bundled_fluorescence_model_and_bioimageio_core_passes_it(tmp_path, capsys):
    out = tmp_path / "out.zip"
    assert main(["export", "hinet-denoise-fluo", "-o", str(out), "--format", "bioimageio", "--check"]) == 0
    assert "bioimageio.core test: passed" in capsys.readouterr().out


@pytest.mark.slow
def test_a_fine_tuned_model_exports_and_passes(tmp_models_dir, tmp_path):
    """Fine-tune the bundled fluorescence model a few steps, export it, bioimageio.core passes it."""
    import numpy as np
    from bioimageio.core import test_model

    from napari_hinet import finetune
    from napari_hinet.training.finetune import FinetuneConfig

    clean = np.random.default_rng(0).random((2, 64, 64)).astype(np.float32)
    cfg = FinetuneConfig(steps=2, batch_size=2, patch_size=32, val_every=2, name="fluo-ft")
    result = finetune(
        "hinet-denoise-fluo", mode="synthetic", clean=list(clean), degradation="gaussian", config=cfg
    )
    assert result.path == tmp_models_dir / "fluo-ft.safetensors"
    with pytest.raises(ValueError, match="names no SPDX id; a bioimage.io package needs one. Pass licence="):
        napari_hinet.export("fluo-ft", tmp_path / "ft.zip")  # user-trained: the user says under which licence
    path = napari_hinet.export("fluo-ft", tmp_path / "ft.zip", licence="CC-BY-4.0")
    assert test_model(path, weight_format="pytorch_state_dict").status == "passed"
    back = napari_hinet.load_model(path)
    assert back.metadata["training"]["mode"] == "synthetic" and back.metadata["name"] == "fluo-ft"
