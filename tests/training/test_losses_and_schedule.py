"""Losses (official PSNR and L1 on both outputs) and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch

from napari_hinet.training.engine import TrainConfig, lr_at
from napari_hinet.training.losses import L1Loss, PSNRLoss, make_loss, psnr, two_stage_loss


def test_psnr_loss_is_minus_half_the_mean_psnr():
    torch.manual_seed(0)
    target = torch.rand(3, 2, 8, 8)
    pred = target + 0.1 * torch.randn_like(target)
    mse = ((pred - target) ** 2).flatten(1).mean(1)
    per_image_psnr = 10 * torch.log10(1 / (mse + 1e-8))
    assert PSNRLoss()(pred, target).item() == pytest.approx(-0.5 * per_image_psnr.mean().item(), rel=1e-5)
    assert PSNRLoss(weight=1.0)(pred, target).item() == pytest.approx(-per_image_psnr.mean().item(), rel=1e-5)


def test_l1_and_two_stage_sum():
    a, b, t = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.25)
    assert L1Loss()(a, t).item() == pytest.approx(0.25)
    assert two_stage_loss(L1Loss(), [a, b], t).item() == pytest.approx(0.25 + 0.75)
    assert isinstance(make_loss("l1"), L1Loss) and make_loss("psnr").weight == 0.5
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("ssim")


def test_psnr_metric():
    t = torch.full((2, 1, 4, 4), 0.5)
    assert psnr(t + 0.1, t) == pytest.approx(20.0, abs=1e-4)
    assert psnr(t + 2.0, t) == pytest.approx(10 * math.log10(1 / 0.25), abs=1e-4)  # prediction clamped to 1


def test_warmup_then_cosine():
    cfg = TrainConfig(steps=110, lr=1e-3, lr_min=1e-6, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx((1e-3 + 1e-6) / 2, rel=1e-6)
    assert lr_at(110, cfg) == pytest.approx(1e-6)
    values = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(b <= a for a, b in zip(values, values[1:], strict=False))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps"),
        ({"lr": 0}, "lr"),
        ({"precision": "int8"}, "precision"),
        ({"loss": "ssim"}, "loss"),
        ({"grad_clip": -1}, "grad_clip"),
    ],
)
def test_bad_train_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_warm_restart_keeps_the_past_schedule():
    first = TrainConfig(steps=100, lr=1e-3, lr_min=1e-6, warmup_steps=10)
    longer = TrainConfig(steps=160, lr=1e-3, lr_min=1e-6, warmup_steps=10, restarts=[100], restart_lr=3e-4)
    assert [lr_at(s, first) for s in range(100)] == [lr_at(s, longer) for s in range(100)]
    assert lr_at(100, longer) == pytest.approx(3e-4)
    assert lr_at(160, longer) == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="restarts"):
        TrainConfig(steps=100, warmup_steps=10, restarts=[100])
