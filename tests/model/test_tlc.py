"""Local statistics (TLC): box means, equality with global statistics, unchanged weights."""

from __future__ import annotations

import pytest
import torch

from napari_hinet.model import HINet, run_any_size
from napari_hinet.model.tlc import (
    LocalHalfInstanceNorm,
    box_mean,
    get_statistics,
    set_statistics,
)


def _model(in_chn: int = 3) -> HINet:
    torch.manual_seed(0)
    return HINet(in_chn=in_chn, wf=8, depth=3).eval()


def _brute_box_mean(x: torch.Tensor, k: int, border: str) -> torch.Tensor:
    """Box mean by looping over positions (the definition in the tlc docstring)."""

    def bounds(p: int, n: int) -> tuple[int, int]:
        if border == "clamp":
            kk = min(k, n)
            start = min(max(p - kk // 2, 0), n - kk)
            return start, start + kk
        return max(0, p - k // 2), min(n, p - k // 2 + k)

    out = torch.empty_like(x)
    h, w = x.shape[-2:]
    for i in range(h):
        for j in range(w):
            (i0, i1), (j0, j1) = bounds(i, h), bounds(j, w)
            out[..., i, j] = x[..., i0:i1, j0:j1].mean(dim=(-2, -1))
    return out


@pytest.mark.parametrize("border", ["clamp", "shrink"])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 20])
def test_box_mean_matches_definition_on_odd_sizes(border: str, k: int):
    x = torch.randn(2, 3, 7, 9, generator=torch.Generator().manual_seed(k))
    assert torch.allclose(box_mean(x, k, border), _brute_box_mean(x, k, border), atol=1e-6)


@pytest.mark.parametrize(("border", "factor"), [("clamp", 1), ("shrink", 2)])
@pytest.mark.parametrize("size", [(45, 37), (64, 64)])
def test_local_equals_global_when_the_window_covers_the_input(border: str, factor: int, size):
    model = _model()
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = run_any_size(model, x)
        padded = max(64, -(-max(size) // 16) * 16)  # run_any_size pads to multiples of 16 (>= 32)
        set_statistics(model, "local", patch_size=factor * padded, border=border)
        local = run_any_size(model, x)
    assert get_statistics(model)["stats"] == "local"
    assert local.shape == x.shape
    assert torch.allclose(local, expected, atol=2e-5), (local - expected).abs().max()


def test_small_windows_change_the_output_and_global_restores_it():
    model = _model(in_chn=1)
    x = torch.rand(1, 1, 96, 80, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x)[-1]
        set_statistics(model, "local", patch_size=32)
        local = model(x)[-1]
        set_statistics(model, "global")
        back = model(x)[-1]
    assert (local - expected).abs().max() > 1e-3
    assert torch.equal(back, expected)
    assert get_statistics(model) == {"stats": "global"}


def test_state_dict_is_unchanged_and_parameters_are_shared():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = {k: id(p) for k, p in model.named_parameters()}
    set_statistics(model, "local", patch_size=64, scale=1.5)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert {k: id(p) for k, p in model.named_parameters()} == params
    fresh = _model()
    set_statistics(fresh, "local", patch_size=64)
    fresh.load_state_dict(before, strict=True)


def test_windows_follow_the_levels_and_metadata():
    model = _model()
    model.metadata = {"patch_size": 128}
    set_statistics(model, "local", scale=1.5)
    expected = {"stats": "local", "levels": [0, 1, 2], "windows": [192, 96, 48], "border": "clamp"}
    assert get_statistics(model) == expected
    norms = [m for m in model.modules() if isinstance(m, LocalHalfInstanceNorm)]
    assert len(norms) == 2 * 3  # both encoders, every level


def test_bf16_autocast_runs_the_norm_in_float32():
    model = set_statistics(_model(), "local", patch_size=32)
    x = torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        ref = model(x)[-1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)[-1].float()
    assert (low - ref).abs().max() < 0.1


def test_bad_arguments_name_the_choices():
    with pytest.raises(ValueError, match="'global', 'local'|global, local"):
        set_statistics(_model(), "windowed")
    with pytest.raises(ValueError, match="clamp"):
        set_statistics(_model(), "local", 64, border="reflect")
    with pytest.raises(ValueError, match="window"):
        LocalHalfInstanceNorm(8, 0)
