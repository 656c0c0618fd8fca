"""Self-ensemble: each tile restored in several orientations, turned back and averaged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_hinet import Restorer, RestoreSettings, restore
from napari_hinet.engine.ensemble import ALL_ORIENTATIONS, FLIPS, orient, orientations_for, unorient
from napari_hinet.model import HINet

FP32 = {"device": "cpu", "precision": "fp32", "compile": "off", "backend": "torch"}


def tiny(task: str) -> HINet:
    torch.manual_seed(0)
    net = HINet(in_chn=1, wf=8, depth=3)
    net.metadata = {"patch_size": 64, "normalization": "fixed", "name": f"tiny {task}", "task": task}
    return net.eval()


def test_each_orientation_is_distinct_and_turned_back_exactly():
    batch = np.arange(2 * 1 * 5 * 7, dtype=np.float32).reshape(2, 1, 5, 7)  # not square: h, w swap
    views = [orient(batch, k) for k in ALL_ORIENTATIONS]
    assert len({v.tobytes() + bytes(v.shape) for v in views}) == 8
    for k, view in zip(ALL_ORIENTATIONS, views, strict=True):
        np.testing.assert_array_equal(unorient(view, k), batch)
    assert {orient(batch, k).shape for k in FLIPS} == {batch.shape}  # flips keep h and w


def test_the_task_chooses_the_orientations():
    assert orientations_for("denoise", False) == (0,)
    assert orientations_for("denoise", True) == ALL_ORIENTATIONS
    assert orientations_for("deblur", True) == ALL_ORIENTATIONS
    assert orientations_for("derain", True) == FLIPS  # rain falls down: no quarter turns
    assert orientations_for("unknown", True) == FLIPS
    for task, views in (("denoise", 8), ("derain", 4)):
        restorer = Restorer(tiny(task), **FP32)
        assert restorer.plan((40, 50), ensemble=True)["ensemble"] == views
        assert restorer.plan((40, 50))["ensemble"] == 1


def test_ensemble_is_the_mean_of_the_restored_orientations():
    """Whole planes (tiling="none"): the ensemble equals restoring each rotated/flipped image by hand,
    turning each result back and averaging; the plain result differs from it."""
    rng = np.random.default_rng(5)
    img = np.clip(0.5 + 0.1 * rng.standard_normal((48, 64)), 0, 1).astype(np.float32)
    net = tiny("denoise")
    by_hand = []
    for k in ALL_ORIENTATIONS:
        view = orient(img[None], k)[0]
        by_hand.append(unorient(restore(view, net, tiling="none", **FP32)[None], k)[0])
    ensemble = restore(img, net, tiling="none", ensemble=True, **FP32)
    np.testing.assert_allclose(ensemble, np.mean(by_hand, axis=0), atol=1e-5)
    assert np.abs(ensemble - restore(img, net, tiling="none", **FP32)).max() > 1e-3


def test_ensemble_with_tiles_and_a_stack_keeps_shape_dtype_and_the_input():
    rng = np.random.default_rng(6)
    img = rng.integers(0, 4000, (2, 90, 70), dtype=np.uint16)
    before = img.copy()
    out = restore(img, tiny("denoise"), axes="ZYX", tile=32, overlap=8, ensemble=True, **FP32)
    assert out.shape == img.shape and out.dtype == np.uint16
    np.testing.assert_array_equal(img, before)


def test_ensemble_must_be_a_bool():
    with pytest.raises(ValueError, match="ensemble must be True or False"):
        RestoreSettings(ensemble="yes")


@pytest.mark.slow
def test_ensemble_restores_a_noisy_photo_better_with_the_bundled_denoiser():
    """What a user turns it on for: a higher PSNR than the plain run on the same noisy photo
    (a 128-pixel crop of the bundled cat sample, sigma 25; measured +0.11 dB)."""
    from importlib.resources import files

    import imageio.v3 as iio

    clean = iio.imread(files("napari_hinet.samples") / "chelsea.png")[100:228, 150:278] / np.float32(255)
    noisy = (clean + np.random.default_rng(7).normal(0, 25 / 255, clean.shape)).astype(np.float32)

    def psnr(x: np.ndarray) -> float:
        return float(10 * np.log10(1.0 / np.mean((np.clip(x, 0, 1) - clean) ** 2)))

    restorer = Restorer("hinet-denoise-photo", device="cpu", precision="fp32", compile="off")
    plain = restorer.restore(noisy, normalization="fixed", out_dtype="float32")
    ensemble = restorer.restore(noisy, normalization="fixed", out_dtype="float32", ensemble=True)
    assert psnr(ensemble) > psnr(plain) + 0.05 > psnr(noisy) + 5
