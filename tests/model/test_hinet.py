"""HINet as published: parity vectors, official state_dict layouts, channels, any input size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from napari_hinet.model import HINet, pad_to_valid, run_any_size

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"
VECTORS = sorted(REFERENCE.glob("hinet_ref_*.pt"))
OFFICIAL = json.loads((REFERENCE / "official_configs.json").read_text())["checkpoints"]
TOLERANCE = 1e-5  # max abs diff, float32 on CPU (reference README)


def test_reference_files_are_present():
    assert len(VECTORS) == 2, VECTORS
    assert [c["name"] for c in OFFICIAL] == [
        "HINet-SIDD-0.5x",
        "HINet-SIDD-1x",
        "HINet-GoPro",
        "HINet-REDS",
        "HINet-Rain13k",
    ]


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_parity_with_official_outputs(path: Path):
    ref = torch.load(path, map_location="cpu", weights_only=True)
    model = HINet(**ref["config"])
    model.load_state_dict(ref["params"], strict=True)
    assert list(model.state_dict()) == list(ref["params"]), "key order differs from the official one"
    model.eval()
    with torch.inference_mode():
        out_1, out_2 = model(ref["input"])
    assert out_1.shape == ref["out_1"].shape
    assert out_2.shape == ref["out_2"].shape
    diff_1 = (out_1 - ref["out_1"]).abs().max().item()
    diff_2 = (out_2 - ref["out_2"]).abs().max().item()
    print(f"{path.stem}: max abs diff out_1={diff_1:.3g} out_2={diff_2:.3g}")
    assert diff_1 < TOLERANCE
    assert diff_2 < TOLERANCE


@pytest.mark.parametrize("ckpt", OFFICIAL, ids=lambda c: c["name"])
def test_state_dict_equals_official_layout(ckpt: dict):
    with torch.device("meta"):  # full-size models without allocating memory
        model = HINet(**ckpt["constructor_kwargs"])
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == ckpt["state_dict"]  # names, shapes and order
    assert sum(p.numel() for p in model.parameters()) == ckpt["num_params"]
    assert len(list(model.buffers())) == ckpt["num_buffers"] == 0


@pytest.mark.parametrize("in_chn", [1, 2])
def test_gray_and_two_channel_models(in_chn: int):
    torch.manual_seed(0)
    model = HINet(in_chn=in_chn, wf=8, depth=3, hin_position_right=2).eval()
    sd = model.state_dict()
    assert sd["conv_01.weight"].shape == (8, in_chn, 3, 3)
    assert sd["sam12.conv2.weight"].shape == (in_chn, 8, 3, 3)  # SAM follows in_chn
    assert sd["sam12.conv3.weight"].shape == (8, in_chn, 3, 3)
    assert sd["last.weight"].shape == (in_chn, 8, 3, 3)
    x = torch.rand(2, in_chn, 32, 48)
    with torch.inference_mode():
        out_1, out_2 = model(x)
    assert out_1.shape == out_2.shape == x.shape
    assert torch.isfinite(out_2).all()


def test_official_sizes_are_required_without_padding():
    """The network itself keeps the official constraint; run_any_size lifts it."""
    model = HINet(wf=4, depth=3).eval()
    with pytest.raises(RuntimeError), torch.inference_mode():
        model(torch.rand(1, 3, 34, 32))


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (300, 513), (2, 1), (64, 64)])
def test_any_size_input_gives_input_size_output(size: tuple[int, int]):
    torch.manual_seed(0)
    # depth 5 with HIN down to the bottleneck, like the official models: the hardest case
    model = HINet(wf=4, depth=5, hin_position_left=0, hin_position_right=4).eval()
    x = torch.rand(1, 3, *size)
    with torch.inference_mode():
        y = run_any_size(model, x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_any_size_is_plain_forward_on_valid_sizes():
    torch.manual_seed(0)
    model = HINet(wf=4, depth=3, hin_position_right=2).eval()
    x = torch.rand(1, 3, 32, 48)  # multiple of 4 and >= 8: no padding needed
    with torch.inference_mode():
        assert torch.equal(run_any_size(model, x), model(x)[1])


def test_padding_is_reflection():
    x = torch.rand(1, 3, 17, 33)
    padded, size = pad_to_valid(x, 16)
    assert size == (17, 33)
    assert padded.shape[-2:] == (32, 48)
    expected = F.pad(x, (0, 48 - 33, 0, 32 - 17), mode="reflect")
    assert torch.equal(padded, expected)
