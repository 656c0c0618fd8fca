"""The GPU training path of the bundled models, run here on the CPU: the packed cache
(scripts/pack_training_cache.py); its time budget is tests/training/test_budget.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import pack_training_cache as pack  # noqa: E402

from napari_hinet.training.pool import load_cache  # noqa: E402


def test_tiles_cover_the_image_without_overlap():
    img = np.arange(1000 * 700).reshape(1000, 700, 1)
    parts = pack.tiles(img, 300)
    assert len(parts) == 3 * 2
    assert all(300 <= p.shape[0] < 600 and 300 <= p.shape[1] < 600 for p in parts)
    values = np.concatenate([p.ravel() for p in parts])
    assert values.size == img.size and np.unique(values).size == img.size  # every pixel once
    small = np.zeros((100, 800, 3))
    assert len(pack.tiles(small, 300)) == 1  # smaller than a tile in one side: whole


def _fake_cache(folder: Path) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir()
    natural = {f"natural/p{i}.png": rng.integers(0, 256, (800, 900, 3), dtype=np.uint8) for i in range(3)}
    np.savez(folder / "natural_train.npz", **natural)
    np.savez(
        folder / "natural_val.npz", **{"natural/v.png": rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)}
    )
    micro = {f"micro/m{i}#0": rng.random((200, 200, 1), dtype=np.float32) for i in range(2)}
    np.savez(folder / "micro_train.npz", **micro)
    np.savez(folder / "micro_val.npz", **{"micro/v#0": rng.random((100, 100, 1), dtype=np.float32)})
    np.savez(folder / "natural_test.npz", x=np.zeros(1))


def test_pack_fits_the_size_keeps_validation_and_every_image(tmp_path):
    _fake_cache(tmp_path / "cache")
    info = pack.pack(tmp_path / "cache", tmp_path / "out", max_mib=4.0, tile=200)
    out = tmp_path / "out"
    assert sum(f.stat().st_size for f in out.glob("*.npz")) <= 4.0 * 2**20
    assert not (out / "natural_test.npz").exists()  # test files never travel
    assert 0.1 < info["share_kept"] < 1.0  # random pixels do not compress: a share was dropped
    for key in ("natural_val", "micro_val"):  # validation whole, bit for bit
        full, packed = load_cache(tmp_path / "cache", key), load_cache(out, key)
        assert packed.keys() == full.keys()
        assert all(np.array_equal(packed[k], full[k]) for k in full)
    names = {k.split("@")[0] for k in load_cache(out, "natural_train")}
    assert names == {f"natural/p{i}.png" for i in range(3)}  # a share of every image
    micro = load_cache(out, "micro_train")
    assert {k.split("#")[0] for k in micro} == {"micro/m0", "micro/m1"}
    assert all(a.dtype == np.float32 for a in micro.values())
