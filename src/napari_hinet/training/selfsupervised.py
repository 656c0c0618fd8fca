"""Self-supervised objectives: training a denoiser from noisy images only.

The ``"self_supervised"`` mode of :func:`~napari_hinet.training.finetune` uses one
of these methods (``FinetuneConfig.ssl_method``); all assume noise that is
independent from pixel to pixel and zero-mean given the signal (camera shot and
read noise), never spatially correlated noise (after demosaicing, JPEG...).

1. ``"neighbor"`` -- Neighbor2Neighbor without its regulariser (Huang et al.,
   CVPR 2021): in every 2x2 cell of a noisy patch ``y`` two different, adjacent
   pixels are picked; the first goes to the half-size image ``g1(y)``, the second
   to ``g2(y)``, and the network learns ``f(g1(y)) -> g2(y)``. Pairs are cut in
   numpy (:class:`~napari_hinet.training.datasets.NeighborSource`); the loss is
   the configured one.
2. ``"neighbor_reg"`` -- the same pairs plus the paper's regulariser:
   ``L = loss(f(g1), g2) + gamma * loss(f(g1), g2 + g1(f(y)) - g2(f(y)))``, where
   ``f(y)`` is the network's output on the whole noisy patch, computed without
   gradient, and sub-sampled with the same choice of pixels. The second term
   removes the bias that the half-pixel offset between ``g1`` and ``g2`` adds
   (lost sharpness). Costs one extra gradient-free forward pass on a patch with
   4 x the pixels.
3. ``"blind_spot"`` -- blind-spot masking (Noise2Void, Krull et al., CVPR 2019):
   about :data:`MASK_FRACTION` of the pixels of a noisy patch are replaced by a
   random neighbour within :data:`MASK_RADIUS` pixels; the loss is the squared
   (``loss="l1"``: absolute) error between the output and the *original* noisy
   value at the replaced pixels only, so the network cannot learn identity.
4. ``"sure"`` -- Stein's unbiased risk estimate (Stein 1981; Monte-Carlo SURE,
   Ramani et al., IEEE TIP 2008; as a training loss, Soltanayev and Chun,
   NeurIPS 2018). For noise of known per-pixel variance ``v``, the mean squared
   error against the *unknown clean image* is estimated from the noisy patch
   ``y`` alone: ``mean((f(y) - y)^2) - mean(v) + 2 mean(v * div f(y))``, and the
   divergence by one random probe ``b ~ N(0, 1)``:
   ``div f(y) ~ b * (f(y + epsilon b) - f(y)) / epsilon``
   (:data:`SURE_EPSILON`). It trains at full resolution on the noise level of
   the data itself, but is only as good as ``v``: ``v`` comes from a
   Poisson-Gaussian :class:`~napari_hinet.training.noise_model.NoiseModel`,
   given or estimated (:class:`~napari_hinet.training.datasets.NoiseMapSource`);
   a variance 10 % too high makes the network over-smooth. The two forward passes
   run in float32 whatever the precision (a finite difference of bf16 outputs
   is rounding noise), so a step costs about 3 x a bf16 step. The validation
   PSNR of this method is also a SURE estimate (:func:`sure_mse`): an estimate
   against the clean image, not a noisy view.

All randomness comes from torch's global generator, which the training
checkpoints store, so resumed runs stay exact.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .losses import two_stage_loss

__all__ = [
    "GAMMA",
    "MASK_FRACTION",
    "MASK_RADIUS",
    "METHODS",
    "SURE_EPSILON",
    "blind_spot_objective",
    "neighbor_objective",
    "neighbor_subsample",
    "sure_mse",
    "sure_objective",
]

METHODS = ("neighbor", "neighbor_reg", "blind_spot", "sure")
#: Weight of the Neighbor2Neighbor regulariser (the paper's gamma).
GAMMA = 1.0
#: Share of the pixels of a patch replaced by a neighbour in blind-spot training.
MASK_FRACTION = 0.02
#: Replacement neighbours are drawn from the (2 r + 1)^2 window, centre excluded.
MASK_RADIUS = 2
#: Step of the finite difference that estimates the divergence in SURE (image units).
SURE_EPSILON = 1e-3

# Adjacent pixel pairs inside a 2x2 cell (positions 0 1 / 2 3), both orders.
_PAIRS = torch.tensor([(0, 1), (1, 0), (2, 3), (3, 2), (0, 2), (2, 0), (1, 3), (3, 1)])


def neighbor_subsample(x: Tensor, choice: Tensor) -> tuple[Tensor, Tensor]:
    """``g1(x), g2(x)``: the two half-size images of ``x`` ``(N, C, 2H, 2W)`` given the
    pair ``choice`` ``(N, H, W)`` (integers 0..7) of every 2x2 cell; same for all channels."""
    n, c, h, w = x.shape
    cells = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    pair = _PAIRS.to(x.device)[choice]  # (N, H, W, 2)
    pair = pair[:, None].expand(n, c, h // 2, w // 2, 2)
    first = torch.gather(cells, -1, pair[..., :1])[..., 0]
    second = torch.gather(cells, -1, pair[..., 1:])[..., 0]
    return first, second


def neighbor_objective(loss_fn: torch.nn.Module, gamma: float = GAMMA) -> Callable:
    """Neighbor2Neighbor loss with regulariser weight ``gamma`` on noisy batches ``(N, C, 2P, 2P)``."""

    def objective(model, x: Tensor, _target: Tensor, autocast) -> Tensor:
        n, _, h, w = x.shape
        choice = torch.randint(len(_PAIRS), (n, h // 2, w // 2))
        g1, g2 = neighbor_subsample(x.contiguous(), choice)
        with autocast():
            outputs = [o.float() for o in model(g1)]
        loss = two_stage_loss(loss_fn, outputs, g2)
        if gamma > 0:
            with torch.no_grad():
                was_training = model.training
                model.eval()
                with autocast():
                    full = model(x)[-1].float()
                model.train(was_training)
                f1, f2 = neighbor_subsample(full, choice)
            loss = loss + gamma * two_stage_loss(loss_fn, outputs, g2 + (f1 - f2))
        return loss

    return objective


def blind_spot_objective(
    l1: bool = False, fraction: float = MASK_FRACTION, radius: int = MASK_RADIUS
) -> Callable:
    """Blind-spot (Noise2Void) loss on noisy batches ``(N, C, P, P)``."""

    def objective(model, x: Tensor, _target: Tensor, autocast) -> Tensor:
        n, c, h, w = x.shape
        x = x.contiguous()
        mask = torch.rand(n, 1, h, w, device=x.device) < fraction
        dy = torch.randint(-radius, radius + 1, (n, 1, h, w), device=x.device)
        dx = torch.randint(-radius, radius + 1, (n, 1, h, w), device=x.device)
        centre = (dy == 0) & (dx == 0)
        dx = torch.where(centre, torch.ones_like(dx), dx)  # never the pixel itself
        rows = (torch.arange(h, device=x.device).view(1, 1, h, 1) + dy).abs()
        cols = (torch.arange(w, device=x.device).view(1, 1, 1, w) + dx).abs()
        rows = torch.where(rows >= h, 2 * (h - 1) - rows, rows)  # mirror at the far edges
        cols = torch.where(cols >= w, 2 * (w - 1) - cols, cols)
        flat = (rows * w + cols).expand(n, c, h, w).reshape(n, c, -1)
        neighbour = torch.gather(x.reshape(n, c, -1), 2, flat).reshape(n, c, h, w)
        masked = torch.where(mask, neighbour, x)
        with autocast():
            outputs = [o.float() for o in model(masked)]
        weight = mask.expand(n, c, h, w).float()
        count = weight.sum().clamp_min(1.0)
        loss = torch.zeros((), device=x.device)
        for out in outputs:
            err = (out - x).abs() if l1 else (out - x) ** 2
            loss = loss + (err * weight).sum() / count
        return loss

    return objective


def _sure(f: Tensor, f_eps: Tensor, y: Tensor, variance: Tensor, b: Tensor, epsilon: float) -> Tensor:
    """Monte-Carlo SURE of one output ``f = f(y)`` given ``f_eps = f(y + epsilon b)``."""
    divergence = (variance * b * (f_eps - f)).mean() / epsilon
    return ((f - y) ** 2).mean() - variance.mean() + 2.0 * divergence


def sure_objective(epsilon: float = SURE_EPSILON) -> Callable:
    """SURE loss (method 4) on noisy batches ``y`` with their noise variances ``(N, C, P, P)``."""

    def objective(model, y: Tensor, variance: Tensor, _autocast) -> Tensor:
        b = torch.randn_like(y)
        both = model(torch.cat([y, y + epsilon * b]))  # float32: see the module docstring
        n = len(y)
        loss = torch.zeros((), device=y.device)
        for out in both:
            loss = loss + _sure(out[:n].float(), out[n:].float(), y, variance, b, epsilon)
        return loss

    return objective


def sure_mse(epsilon: float = SURE_EPSILON, seed: int = 0) -> Callable:
    """``val_mse(model, y, variance) -> float``: SURE of the final output, the same probe
    ``b`` for every call (seeded), so validations of one run are comparable."""

    def val_mse(model, y: Tensor, variance: Tensor) -> float:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        b = torch.randn(y.shape, generator=gen).to(y.device)
        f = model(y)[-1].float()
        f_eps = model(y + epsilon * b)[-1].float()
        return float(_sure(f, f_eps, y, variance, b, epsilon))

    return val_mse
