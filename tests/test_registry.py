"""The model registry: official checkpoints, bundled models, the user models folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from napari_hinet import HINet, list_models, load_model, registry, save_model
from napari_hinet.registry import (
    DEFAULT_MODELS,
    ModelInfo,
    default_model,
    get_model_info,
    read_model_metadata,
    user_models_dir,
)

REFERENCE = Path(__file__).resolve().parent / "data" / "reference"
OFFICIAL = json.loads((REFERENCE / "official_configs.json").read_text())["checkpoints"]


def tiny(in_chn: int = 3) -> HINet:
    torch.manual_seed(0)
    return HINet(in_chn=in_chn, wf=4, depth=3, hin_position_right=2)


@pytest.fixture
def bundled_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty stand-in for the package's weights/ folder (the real one must not be written to)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(registry, "bundled_weights_dir", lambda: folder)
    return folder


def test_user_models_dir_env_override_and_created_on_demand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "a" / "b"
    monkeypatch.setenv("HINET_MODELS_DIR", str(folder))
    assert not folder.exists()
    assert user_models_dir() == folder
    assert folder.is_dir()


def test_user_models_dir_default_is_platform_data_dir(monkeypatch: pytest.MonkeyPatch):
    import platformdirs

    monkeypatch.delenv("HINET_MODELS_DIR", raising=False)
    expected = Path(platformdirs.user_data_dir("napari-hinet", appauthor=False)) / "models"
    assert registry._user_models_dir_path() == expected


def test_five_official_checkpoints_are_listed(tmp_models_dir: Path, bundled_dir: Path):
    models = list_models()
    official = [m for m in models if m.kind == "official"]
    assert [m.name for m in official] == [c["name"] for c in OFFICIAL]
    for info, ref in zip(official, OFFICIAL, strict=True):
        assert isinstance(info, ModelInfo)
        assert info.config == ref["constructor_kwargs"]
        assert info.file_name == ref["file"]
        assert info.where_to_get == ref["download"]
        assert ref["task"].startswith(info.task)
        assert not info.available and info.path is None
        assert "MIT" in info.licence
        assert "reported" in info.reported_metrics["source"]
        assert info.channels == "rgb" and info.patch_size == 256
        message = info.missing_message()
        assert ref["download"] in message and str(tmp_models_dir) in message and ref["file"] in message
    assert get_model_info("HINet-SIDD-1x").reported_metrics["SIDD validation"] == {
        "psnr": 39.99,
        "ssim": 0.958,
    }
    assert get_model_info("HINet-GoPro").reported_metrics["GoPro test"]["psnr"] == 32.77


def test_missing_official_model_says_where_to_get_it(tmp_models_dir: Path):
    with pytest.raises(FileNotFoundError) as info:
        load_model("HINet-Rain13k")
    assert "drive.google.com" in str(info.value)
    assert str(tmp_models_dir) in str(info.value)


def test_dropped_official_file_becomes_available(tmp_models_dir: Path):
    (tmp_models_dir / "HINet-GoPro.pth").write_bytes(b"not loaded by listing")
    info = get_model_info("HINet-GoPro")
    assert info.available and info.path == tmp_models_dir / "HINet-GoPro.pth"
    assert info.missing_message() == ""
    assert get_model_info("HINet-GoPro.pth") == info  # the file name works too
    assert not any(m.kind == "user" for m in list_models())  # not listed twice


def test_official_name_with_wrong_architecture_is_refused(tmp_models_dir: Path):
    torch.save({"params": tiny().state_dict()}, tmp_models_dir / "HINet-REDS.pth")
    with pytest.raises(ValueError, match="different architecture"):
        load_model("HINet-REDS")


@pytest.mark.slow
def test_dropped_official_gopro_loads_by_name(tmp_models_dir: Path, bundled_dir: Path):
    ckpt = next(c for c in OFFICIAL if c["name"] == "HINet-GoPro")
    sd = {f"module.{k}": torch.randn(shape) * 0.02 for k, shape in ckpt["state_dict"]}
    torch.save({"params": sd}, tmp_models_dir / "HINet-GoPro.pth", _use_new_zipfile_serialization=False)
    assert get_model_info("HINet-GoPro").available
    model = load_model("HINet-GoPro")
    assert model.config == ckpt["constructor_kwargs"]
    assert model.metadata["name"] == "HINet-GoPro" and model.metadata["task"] == "deblur"
    assert model.metadata["layout"] == "HINet-GoPro / HINet-REDS layout"
    assert default_model("deblur") == "HINet-GoPro"  # no bundled deblur model here


def test_user_models(tmp_models_dir: Path, bundled_dir: Path):
    save_model(tiny(1), tmp_models_dir / "my-fluo.safetensors", task="denoise", channels="gray")
    torch.save({"params": tiny().state_dict()}, tmp_models_dir / "friend.pth")
    (tmp_models_dir / "notes.txt").write_text("ignored")
    users = {m.name: m for m in list_models() if m.kind == "user"}
    assert set(users) == {"my-fluo", "friend"}
    assert users["my-fluo"].task == "denoise" and users["my-fluo"].channels == "gray"
    assert users["my-fluo"].config == tiny(1).config
    assert users["friend"].task == "unknown" and users["friend"].config == {}
    # unknown task: offered for every task; known task: only for its own
    assert {m.name for m in list_models("deblur") if m.kind == "user"} == {"friend"}
    assert {m.name for m in list_models("denoise") if m.kind == "user"} == {"my-fluo", "friend"}
    assert load_model("my-fluo").metadata["name"] == "my-fluo"
    assert load_model("friend").config["wf"] == 4


def test_bundled_models_metadata_read_without_loading_tensors(tmp_models_dir: Path, bundled_dir: Path):
    path = save_model(tiny(), bundled_dir / "hinet-deblur-photo.safetensors", task="deblur", patch_size=128)
    data = path.read_bytes()
    # keep the header, drop most tensor bytes: listing must not need them
    header_len = 8 + int.from_bytes(data[:8], "little")
    path.write_bytes(data[: header_len + 10])
    assert read_model_metadata(path)["task"] == "deblur"
    info = get_model_info("hinet-deblur-photo")
    assert info.kind == "bundled" and info.task == "deblur" and info.patch_size == 128 and info.available
    assert list_models()[0].name == "hinet-deblur-photo"  # bundled first


def test_default_model(tmp_models_dir: Path, bundled_dir: Path):
    with pytest.raises(LookupError) as info:
        default_model("denoise")
    assert "HINet-SIDD-1x.pth" in str(info.value) and str(tmp_models_dir) in str(info.value)
    (tmp_models_dir / "HINet-SIDD-1x.pth").write_bytes(b"x")
    assert default_model("denoise") == "HINet-SIDD-1x"  # official fallback
    save_model(tiny(), bundled_dir / "hinet-denoise-photo.safetensors", task="denoise")
    assert default_model("denoise") == "hinet-denoise-photo"  # any bundled model beats official
    save_model(tiny(1), bundled_dir / "hinet-denoise-fluo.safetensors", task="denoise")
    assert default_model("denoise") == DEFAULT_MODELS["denoise"] == "hinet-denoise-fluo"
    assert "hinet-denoise-photo" in [m.name for m in list_models("denoise")]  # selectable by name
    with pytest.raises(ValueError):
        default_model("colourise")


def test_unknown_names_and_tasks(tmp_models_dir: Path):
    with pytest.raises(KeyError, match="Known models: .*HINet-SIDD-0.5x"):
        get_model_info("HINet-XL")
    with pytest.raises(ValueError, match="denoise, deblur, derain"):
        list_models("upscale")


def test_unreadable_user_file_is_listed_as_unavailable(tmp_models_dir: Path, bundled_dir: Path):
    (tmp_models_dir / "broken.safetensors").write_bytes(b"\xff" * 20)
    (info,) = [m for m in list_models() if m.kind == "user"]
    assert not info.available and "unreadable" in info.description


def test_listing_models_does_not_import_torch():
    code = "import sys, napari_hinet.registry as r; r.list_models(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_model_choice_rules(tmp_models_dir: Path, bundled_dir: Path):
    """preferred_model / suggest_model / base_models: the pickers' rules, in the registry."""
    from napari_hinet.registry import base_models, preferred_model, suggest_model

    assert preferred_model("deblur") is None and suggest_model("deblur", "rgb") is None  # nothing to run
    save_model(tiny(1), tmp_models_dir / "my-gray.safetensors", task="denoise")
    assert preferred_model("denoise") == "my-gray"  # no default model: the first available one
    save_model(tiny(1), bundled_dir / "hinet-denoise-fluo.safetensors", task="denoise")
    save_model(tiny(), bundled_dir / "hinet-denoise-photo.safetensors", task="denoise")
    assert preferred_model("denoise") == DEFAULT_MODELS["denoise"] == "hinet-denoise-fluo"
    assert suggest_model("denoise", "gray") == "hinet-denoise-fluo"  # the default, its channels match
    assert suggest_model("denoise", "rgb") == "hinet-denoise-photo"  # a bundled RGB model instead
    save_model(tiny(), bundled_dir / "hinet-deblur-photo.safetensors", task="deblur")
    assert suggest_model("deblur", "gray") == "hinet-deblur-photo"  # no gray one: the default still
    names = [m.name for m in base_models()]
    assert names[:2] == ["hinet-denoise-fluo", "hinet-deblur-photo"] and "my-gray" in names
