"""Patch sources: crops, augmentation, Neighbor2Neighbor pairs, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hinet.training.datasets import (
    Degradation,
    MixtureSource,
    NeighborSource,
    PairedSource,
    SyntheticSource,
    dihedral,
    make_batch,
    neighbor_pair,
)


def test_dihedral_gives_eight_distinct_transforms():
    x = np.arange(12).reshape(3, 4)
    outs = {dihedral(x, k).tobytes() + bytes(dihedral(x, k).shape) for k in range(8)}
    assert len(outs) == 8
    np.testing.assert_array_equal(dihedral(x, 0), x)


def test_neighbor_pair_takes_two_different_pixels_per_cell():
    h = w = 8
    idx = np.arange(h * w, dtype=np.float32).reshape(h, w, 1)
    a, b = neighbor_pair(idx, np.random.default_rng(0))
    assert a.shape == b.shape == (4, 4, 1)
    for i in range(4):
        for j in range(4):
            cell = set(idx[2 * i : 2 * i + 2, 2 * j : 2 * j + 2, 0].ravel())
            assert a[i, j, 0] in cell and b[i, j, 0] in cell and a[i, j, 0] != b[i, j, 0]
            ya, xa = divmod(int(a[i, j, 0]), w)
            yb, xb = divmod(int(b[i, j, 0]), w)
            assert abs(ya - yb) + abs(xa - xb) == 1  # adjacent neighbours


def test_synthetic_source_batch_shapes_and_determinism():
    rng = np.random.default_rng(0)
    images = [rng.random((50, 70, 3)).astype(np.float32), (rng.random((40, 40, 3)) * 255).astype(np.uint8)]
    for kind in Degradation.KINDS:
        src = SyntheticSource(images, Degradation(kind))
        x1, y1 = make_batch(src, np.random.default_rng([1, 2]), 3, 32)
        x2, y2 = make_batch(src, np.random.default_rng([1, 2]), 3, 32)
        assert x1.shape == y1.shape == (3, 3, 32, 32) and x1.dtype == np.float32
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
        assert 0 <= y1.min() and y1.max() <= 1
        assert not np.allclose(x1, y1)


def test_small_images_are_padded_not_rejected_by_the_source():
    src = SyntheticSource([np.zeros((10, 12, 1), np.float32)], Degradation("gaussian"))
    x, y = make_batch(src, np.random.default_rng(0), 2, 16)
    assert x.shape == (2, 1, 16, 16)


def test_paired_source_crops_aligned_pairs_and_n2n_swaps():
    rng = np.random.default_rng(0)
    a = rng.random((64, 64, 1)).astype(np.float32)
    src = PairedSource([a], [a + 1.0])
    x, y = make_batch(src, np.random.default_rng(3), 8, 16)
    np.testing.assert_allclose(y - x, 1.0, atol=1e-6)
    swapped = PairedSource([a], [a + 1.0], swap=True)
    x, y = make_batch(swapped, np.random.default_rng(3), 32, 16)
    diffs = (y - x).mean(axis=(1, 2, 3))
    assert (diffs > 0.5).any() and (diffs < -0.5).any()


def test_neighbor_source_and_mixture():
    rng = np.random.default_rng(0)
    noisy = [rng.random((64, 64, 1)).astype(np.float32)]
    x, y = make_batch(NeighborSource(noisy), np.random.default_rng(0), 2, 16)
    assert x.shape == y.shape == (2, 1, 16, 16)
    mix = MixtureSource([NeighborSource(noisy), SyntheticSource(noisy, Degradation("gaussian"))], [0.5, 0.5])
    assert make_batch(mix, np.random.default_rng(0), 4, 16)[0].shape == (4, 1, 16, 16)
    with pytest.raises(ValueError, match="same channels"):
        MixtureSource([NeighborSource(noisy), NeighborSource([np.zeros((40, 40, 3), np.float32)])], [1, 1])


def test_bad_degradation():
    with pytest.raises(ValueError, match="unknown degradation"):
        Degradation("snow")
    with pytest.raises(ValueError, match="range"):
        Degradation("gaussian", sigma_255=(50, 10))


def test_gray_share_gives_channel_identical_noise_and_targets():
    rng = np.random.default_rng(0)
    rgb = [rng.random((40, 40, 3)).astype(np.float32)]
    deg = Degradation("gaussian", sigma_255=(25, 25))
    gray_src = SyntheticSource(rgb, deg, gray_share=1.0)
    x, y = gray_src.sample(np.random.default_rng(1), 16)
    # R, G and B are the same gray patch, with the same noise (as the engine feeds a gray photo)
    np.testing.assert_array_equal(x[..., 0], x[..., 1])
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    np.testing.assert_array_equal(y[..., 0], y[..., 2])
    assert np.std(x - y) > 0.05
    colour = SyntheticSource(rgb, deg, gray_share=0.0).sample(np.random.default_rng(1), 16)[0]
    assert not np.array_equal(colour[..., 0], colour[..., 1])


def test_gray_share_is_a_share():
    rng = np.random.default_rng(0)
    rgb = [rng.random((40, 40, 3)).astype(np.float32)]
    src = SyntheticSource(rgb, Degradation("gaussian", sigma_255=(25, 25)), gray_share=0.3)
    gen = np.random.default_rng(2)
    grays = sum(np.array_equal(x[..., 0], x[..., 1]) for x, _ in (src.sample(gen, 8) for _ in range(200)))
    assert 40 <= grays <= 80


def _half_flat_image() -> np.ndarray:
    """40 x 80: a flat gray left half and a random (textured) right half."""
    img = np.full((40, 80, 1), 0.5, np.float32)
    img[:, 40:] = np.random.default_rng(0).random((40, 40, 1))
    return img


def test_min_texture_redraws_flat_crops():
    img, deg = [_half_flat_image()], Degradation("gaussian", sigma_255=(0, 0))
    gen = np.random.default_rng(3)
    plain = [SyntheticSource(img, deg).sample(gen, 16)[1] for _ in range(100)]
    filtered = [SyntheticSource(img, deg, min_texture=0.05).sample(gen, 16)[1] for _ in range(100)]
    flat = [sum(float(np.ptp(y)) == 0.0 for y in ys) for ys in (plain, filtered)]
    assert flat[0] >= 20  # about a third of plain 16-px crops lie in the flat half
    assert flat[1] <= 2  # the filter gives up after 8 draws: a flat crop survives ~1 time in 2000


def test_texture_share_filters_only_a_share_of_samples():
    img, deg = [_half_flat_image()], Degradation("gaussian", sigma_255=(0, 0))
    src = SyntheticSource(img, deg, min_texture=0.05, texture_share=0.5)
    gen = np.random.default_rng(4)
    flat = sum(float(np.ptp(src.sample(gen, 16)[1])) == 0.0 for _ in range(300))
    assert 20 <= flat <= 80  # half the samples unfiltered, of which about a third flat
    with pytest.raises(ValueError, match="texture_share"):
        SyntheticSource(img, deg, texture_share=1.5)


def test_file_share_stores_noisy_patches_as_8_bit_files_would():
    rng = np.random.default_rng(0)
    clean = rng.random((32, 32, 1)).astype(np.float32)
    as_file = Degradation("gaussian", sigma_255=(50, 50), file_share=1.0)
    noisy, target = as_file.apply(clean, np.random.default_rng(1))
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0  # clipped
    np.testing.assert_allclose(noisy * 255, np.round(noisy * 255), atol=1e-4)  # 8-bit steps
    np.testing.assert_array_equal(target, clean)
    raw, _ = Degradation("gaussian", sigma_255=(50, 50)).apply(clean, np.random.default_rng(1))
    assert raw.min() < 0.0 or raw.max() > 1.0  # without it the noise is not clipped
