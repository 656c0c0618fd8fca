"""The GPU training path of the bundled models, run here on the CPU: the packed cache
(scripts/pack_training_cache.py) and the fitted time budget (train_bundled.BudgetFit)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import pack_training_cache as pack  # noqa: E402
import train_bundled  # noqa: E402

from napari_hinet.model import HINet  # noqa: E402
from napari_hinet.training.datasets import Degradation, SyntheticSource, fixed_set  # noqa: E402
from napari_hinet.training.engine import StepEvent, TrainConfig, Trainer  # noqa: E402
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


def _trainer(steps: int = 1000) -> Trainer:
    img = [np.random.default_rng(0).random((48, 48, 1)).astype(np.float32)]
    src = SyntheticSource(img, Degradation("gaussian", sigma_255=(25, 25)))
    cfg = TrainConfig(steps=steps, batch_size=2, patch_size=16, warmup_steps=100, val_every=50, num_threads=1)
    return Trainer(HINet(1, wf=8, depth=3), src, fixed_set(src, 0, 2, 16), cfg, None)


def _events(trainer: Trainer, step_s: float, n: int):
    """n plain steps of ``step_s`` seconds each, as trainer.run() would report them."""
    for _ in range(n):
        trainer.step += 1
        trainer.wall_time_s += step_s
        yield StepEvent(trainer.step, trainer.cfg.steps, 0.0, 1e-4, elapsed_s=trainer.wall_time_s)


def test_budget_fit_sets_one_cycle_that_ends_at_the_budget():
    torch.manual_seed(0)
    trainer = _trainer()
    trainer.val_seconds = 0.5
    fit = train_bundled.BudgetFit(60.0, trainer)
    slow_start = StepEvent(1, 1000, 0.0, 1e-4, elapsed_s=3.0)  # one-off costs: not timed
    trainer.step, trainer.wall_time_s = 1, 3.0
    fit.observe(slow_start)
    for ev in _events(trainer, 0.05, fit.PROBE_SKIP + fit.PROBE_STEPS - 2):
        fit.observe(ev)
    assert fit.plan is None  # still probing
    for ev in _events(trainer, 0.05, 1):
        fit.observe(ev)
    assert fit.plan is not None and fit.plan["step_s"] == pytest.approx(0.05)
    # 60 s - 4.2 s done - 0.5 s last validation, at 0.05 s + 0.5 s / 50 per step: 25 + 921 steps
    assert trainer.cfg.steps == 25 + 921 and fit.plan["steps"] == trainer.cfg.steps
    assert trainer.cfg.warmup_steps == 94 and trainer.cfg.restarts == []  # a tenth of the total at most
    steps = trainer.cfg.steps
    for ev in _events(trainer, 0.2, 5):  # fitted once: a later slow-down does not move it
        fit.observe(ev)
    assert trainer.cfg.steps == steps
