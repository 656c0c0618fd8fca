"""Loading official and own checkpoints: layouts, safety, our safetensors format."""

from __future__ import annotations

import builtins
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from napari_hinet import HINet, load_model, save_model
from napari_hinet.checkpoints import (
    CorruptCheckpointError,
    LayoutError,
    UnsafeCheckpointError,
    detect_layout,
    expected_shapes,
    infer_config,
    weights_sha256,
)

REFERENCE = Path(__file__).resolve().parent / "data" / "reference"
OFFICIAL = json.loads((REFERENCE / "official_configs.json").read_text())["checkpoints"]
BY_NAME = {c["name"]: c for c in OFFICIAL}


def random_official_state_dict(ckpt: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with exactly the keys and shapes of an official checkpoint."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.02 for k, shape in ckpt["state_dict"]}


def save_official(sd: dict, path: Path, *, module_prefix: bool, legacy: bool, key: str = "params") -> Path:
    """Write ``sd`` the way BasicSR does: ``torch.save({key: state_dict})``."""
    if module_prefix:
        sd = {f"module.{k}": v for k, v in sd.items()}
    torch.save({key: sd}, path, _use_new_zipfile_serialization=not legacy)
    return path


def small_model(seed: int = 0, **kwargs) -> HINet:
    torch.manual_seed(seed)
    config = {"wf": 8, "depth": 3, "hin_position_left": 0, "hin_position_right": 2, **kwargs}
    return HINet(**config).eval()


def outputs_equal(a: HINet, b: HINet, in_chn: int = 3, size: int = 32) -> bool:
    x = torch.rand(1, in_chn, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        return torch.equal(a(x)[1], b(x)[1])


# ----------------------------------------------------------------- official layouts


@pytest.mark.parametrize("ckpt", OFFICIAL, ids=lambda c: c["name"])
def test_layout_detected_and_config_inferred_from_keys_alone(ckpt: dict):
    sd = {k: torch.empty(shape, device="meta") for k, shape in ckpt["state_dict"]}
    layout = detect_layout(sd)
    assert layout is not None and ckpt["name"] in layout
    assert infer_config(sd) == ckpt["constructor_kwargs"]
    prefixed = {f"module.{k}": v for k, v in sd.items()}
    assert detect_layout(prefixed) == layout
    assert infer_config(prefixed) == ckpt["constructor_kwargs"]


def test_layout_names_tell_shared_architectures():
    names = {
        c["name"]: detect_layout({k: torch.empty(s, device="meta") for k, s in c["state_dict"]})
        for c in OFFICIAL
    }
    assert names["HINet-SIDD-1x"] == names["HINet-Rain13k"] == "HINet-SIDD-1x / HINet-Rain13k layout"
    assert names["HINet-GoPro"] == names["HINet-REDS"] == "HINet-GoPro / HINet-REDS layout"
    assert names["HINet-SIDD-0.5x"] == "HINet-SIDD-0.5x layout"


def test_small_models_have_no_official_layout():
    assert detect_layout(small_model().state_dict()) is None


@pytest.mark.parametrize(
    ("module_prefix", "legacy"), [(True, True), (False, False)], ids=["module+legacy", "plain+zip"]
)
def test_load_official_half_width_checkpoint(tmp_path: Path, module_prefix: bool, legacy: bool):
    ckpt = BY_NAME["HINet-SIDD-0.5x"]
    sd = random_official_state_dict(ckpt)
    path = save_official(sd, tmp_path / "HINet-SIDD-0.5x.pth", module_prefix=module_prefix, legacy=legacy)
    model = load_model(path)
    assert model.config == ckpt["constructor_kwargs"]
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    meta = model.metadata
    assert meta["layout"] == "HINet-SIDD-0.5x layout"
    assert meta["name"] == "HINet-SIDD-0.5x" and meta["task"] == "denoise"
    assert meta["patch_size"] == 256 and meta["channels"] == "rgb" and meta["normalization"] == "fixed"
    assert meta["input_range"] == [0.0, 1.0]
    assert meta["sha256"] == weights_sha256(sd, [k for k, _ in ckpt["state_dict"]])


# every layout once, alternating the two BasicSR-style variants (both are also run on
# SIDD-0.5x in the fast tier); full-size files of 355 MB each, hence the slow tier
_VARIANTS = [(c, i % 2 == 0, i % 2 == 0) for i, c in enumerate(OFFICIAL)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ckpt", "module_prefix", "legacy"),
    _VARIANTS,
    ids=[f"{c['name']}-{'module+legacy' if m else 'plain+zip'}" for c, m, _ in _VARIANTS],
)
def test_load_every_official_layout(tmp_path: Path, ckpt: dict, module_prefix: bool, legacy: bool):
    sd = random_official_state_dict(ckpt, seed=3)
    path = save_official(sd, tmp_path / ckpt["file"], module_prefix=module_prefix, legacy=legacy)
    model = load_model(path)
    assert model.config == ckpt["constructor_kwargs"]
    assert ckpt["name"] in model.metadata["layout"]
    assert model.metadata["name"] == ckpt["name"]
    reference = HINet(**ckpt["constructor_kwargs"])
    reference.load_state_dict(sd)
    assert outputs_equal(model, reference.eval())


@pytest.mark.parametrize("key", ["params", "params_ema", "model", None])
def test_state_dict_containers(tmp_path: Path, key: str | None):
    model = small_model()
    sd = model.state_dict()
    path = tmp_path / "x.pth"
    torch.save(sd if key is None else {key: sd, "step": 5, "format": "any"}, path)
    loaded = load_model(path)
    assert loaded.config["wf"] == 8 and loaded.config["depth"] == 3
    assert loaded.metadata["layout"] is None and loaded.metadata["task"] == "unknown"
    assert loaded.metadata["channels"] == "rgb"
    assert outputs_equal(loaded, model)


def test_gray_pth_is_not_called_rgb(tmp_path: Path):
    torch.save({"params": small_model(in_chn=1).state_dict()}, tmp_path / "gray.pth")
    meta = load_model(tmp_path / "gray.pth").metadata
    assert meta["channels"] == "gray" and meta["config"]["in_chn"] == 1


def test_model_without_hin_loads(tmp_path: Path):
    model = small_model(hin_position_left=0, hin_position_right=-1)
    assert not any(".norm." in k for k in model.state_dict())
    torch.save({"params": model.state_dict()}, tmp_path / "nohin.pth")
    loaded = load_model(tmp_path / "nohin.pth")
    assert (loaded.config["hin_position_left"], loaded.config["hin_position_right"]) == (0, -1)
    assert outputs_equal(loaded, model)


def test_file_named_like_official_but_other_layout_is_not_named_official(tmp_path: Path):
    path = tmp_path / "HINet-GoPro.pth"
    torch.save({"params": small_model().state_dict()}, path)
    meta = load_model(path).metadata
    assert meta["name"] == "HINet-GoPro"  # the file stem
    assert meta["task"] == "unknown"  # but nothing official is claimed


def test_unfit_state_dict_lists_missing_unexpected_and_nearest(tmp_path: Path):
    # the GoPro key set (depth 5, HIN on levels 3..4) at a small width
    sd = dict(HINet(wf=4, depth=5, hin_position_left=3, hin_position_right=4).state_dict())
    del sd["last.weight"]
    sd["extra.weight"] = torch.zeros(3)
    path = tmp_path / "broken.pth"
    torch.save({"params": sd}, path)
    with pytest.raises(LayoutError) as info:
        load_model(path)
    text = str(info.value)
    assert "missing keys (1): last.weight" in text
    assert "unexpected keys (1): extra.weight" in text
    assert "Nearest official layout: HINet-GoPro / HINet-REDS layout" in text


def test_not_a_hinet_at_all(tmp_path: Path):
    path = tmp_path / "resnet.pth"
    torch.save({"params": {"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}}, path)
    with pytest.raises(LayoutError, match="conv_01.weight") as info:
        load_model(path)
    assert "unexpected keys (2): fc.weight, fc.bias" in str(info.value)
    assert "Nearest official layout" in str(info.value)


def test_shape_mismatch_is_reported(tmp_path: Path):
    sd = dict(small_model().state_dict())
    sd["cat12.weight"] = torch.zeros(8, 8, 1, 1)  # should be (8, 16, 1, 1)
    torch.save(sd, tmp_path / "x.pth")
    with pytest.raises(LayoutError, match=r"shape mismatches \(1\): cat12.weight"):
        load_model(tmp_path / "x.pth")


# ----------------------------------------------------------------- safety


class _Payload:
    """Unpickling this creates ``marker``: stands in for any code a crafted file could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path, legacy: bool):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    state = {"params": small_model().state_dict(), "extra": _Payload(marker)}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)

    with pytest.raises(UnsafeCheckpointError, match="Refused to load") as info:
        load_model(path)
    assert "Nothing from it was executed" in str(info.value)
    assert not marker.exists()

    # control: the payload is real, unrestricted unpickling would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_plain_pickle_file_is_refused(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UnsafeCheckpointError):
        load_model(path)
    assert not marker.exists()


def test_garbage_and_truncated_pth(tmp_path: Path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(os.urandom(2000))
    with pytest.raises((UnsafeCheckpointError, CorruptCheckpointError)):
        load_model(garbage)
    for legacy in (False, True):
        path = tmp_path / f"trunc{legacy}.pth"
        torch.save({"params": small_model().state_dict()}, path, _use_new_zipfile_serialization=not legacy)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CorruptCheckpointError, match="truncated or damaged"):
            load_model(path)


# ----------------------------------------------------------------- our format


def test_safetensors_round_trip_with_metadata(tmp_path: Path):
    model = small_model(in_chn=1)
    training = {"data": "synthetic", "steps": 10, "seed": 0}
    path = save_model(
        model,
        tmp_path / "mine.safetensors",
        task="denoise",
        channels="gray",
        normalization="percentile",
        patch_size=128,
        training=training,
        metrics={"psnr": 30.0},
        licence="CC0-1.0",
    )
    assert path == tmp_path / "mine.safetensors"
    assert [p.name for p in tmp_path.iterdir()] == ["mine.safetensors"]  # no temp file left
    loaded = load_model(path)
    meta = loaded.metadata
    assert loaded.config == model.config
    assert meta["name"] == "mine" and meta["task"] == "denoise" and meta["channels"] == "gray"
    assert meta["normalization"] == "percentile" and meta["patch_size"] == 128
    assert meta["training"] == training and meta["metrics"] == {"psnr": 30.0} and meta["licence"] == "CC0-1.0"
    assert meta["sha256"] == weights_sha256(model.state_dict())
    assert meta["weights_dtype"] == "float32"
    assert outputs_equal(loaded, model, in_chn=1)


def test_sha256_is_the_same_for_official_pth_and_converted_safetensors(tmp_path: Path):
    model = small_model()
    torch.save({"params": model.state_dict()}, tmp_path / "a.pth")
    from_pth = load_model(tmp_path / "a.pth")
    save_model(from_pth, tmp_path / "a.safetensors")
    assert load_model(tmp_path / "a.safetensors").metadata["sha256"] == from_pth.metadata["sha256"]


def test_float16_storage_loads_as_float32(tmp_path: Path):
    model = small_model()
    full = save_model(model, tmp_path / "full.safetensors")
    half = save_model(model, tmp_path / "half.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half)
    assert loaded.metadata["weights_dtype"] == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, atol=1e-3, rtol=1e-3)


def test_corrupted_weights_are_detected(tmp_path: Path):
    path = save_model(small_model(), tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="sha256"):
        load_model(path)


@pytest.mark.parametrize("keep", [0.5, 0.001])
def test_truncated_safetensors_is_detected(tmp_path: Path, keep: float):
    path = save_model(small_model(), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: max(int(len(data) * keep), 4)])
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        load_model(path)


def test_save_is_atomic_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = save_model(small_model(seed=1), tmp_path / "m.safetensors", task="denoise")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        save_model(small_model(seed=2), path, task="deblur")
    assert path.read_bytes() == before  # old file untouched
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # temp file removed


def test_save_rejects_bad_metadata(tmp_path: Path):
    model = small_model()
    with pytest.raises(ValueError, match="JSON"):
        save_model(model, tmp_path / "m.safetensors", training={"when": object()})
    with pytest.raises(ValueError, match="config"):
        save_model(model, tmp_path / "m.safetensors", config={"wf": 16})
    assert not list(tmp_path.iterdir())


def test_safetensors_without_our_metadata_loads_as_state_dict(tmp_path: Path):
    from safetensors.torch import save_file

    model = small_model()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "bare.safetensors"))
    loaded = load_model(tmp_path / "bare.safetensors")
    assert loaded.config == infer_config(model.state_dict())
    assert outputs_equal(loaded, model)


# ----------------------------------------------------------------- other sources


def test_model_instance_is_returned_in_eval_mode():
    model = small_model().train()
    assert load_model(model) is model
    assert not model.training


def test_wrong_source_types():
    with pytest.raises(TypeError):
        load_model(torch.nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError):
        load_model(42)


def test_missing_file_and_unknown_name(tmp_models_dir: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nothing.pth")
    with pytest.raises(KeyError, match="HINet-GoPro"):  # lists the known names
        load_model("no-such-model")


def test_expected_shapes_cost_no_memory():
    shapes = expected_shapes(BY_NAME["HINet-SIDD-1x"]["constructor_kwargs"])
    assert [[k, list(s)] for k, s in shapes.items()] == BY_NAME["HINet-SIDD-1x"]["state_dict"]


def test_saved_model_is_readable_by_others(tmp_path: Path):
    # A model saved into a shared folder (or the package) must not be private to its writer.
    old = os.umask(0o022)
    try:
        path = save_model(small_model(), tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
