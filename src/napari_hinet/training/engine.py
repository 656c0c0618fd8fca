"""The training loop: Adam, warm-up + cosine decay, clipping, checkpoints, resume.

:class:`Trainer` is GUI-free. :meth:`Trainer.run` is a generator that yields a
:class:`StepEvent` after every optimisation step, so a caller (the
:func:`~napari_hinet.training.finetune` function, the CLI, the Fine-tune widget)
can plot, preview and stop between steps.

Reproducibility: the batch of step ``s`` is drawn from
``numpy.random.default_rng([seed, s])`` and the learning rate is a pure
function of ``s`` (:func:`lr_at`), so the state needed to resume is the model,
the optimizer (Adam moments), the step and the best-so-far record; these are
written atomically to ``<run_dir>/last.pt`` every ``checkpoint_every`` steps.
On CPU, a resumed run repeats an uninterrupted one step for step.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .datasets import step_batch
from .losses import make_loss, psnr, two_stage_loss
from .prefetch import BatchPrefetcher

__all__ = ["StepEvent", "Trainer", "TrainConfig", "TrainingDiverged", "lr_at"]


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN/Inf; the last good weights were kept."""


@dataclass
class TrainConfig:
    """Optimisation settings (units: steps = optimizer updates; sizes in pixels).

    Attributes:
        steps: total number of optimizer steps (the cosine schedule spans them).
        batch_size: patches per step.
        patch_size: training patch side; rounded up to a multiple of the model's
            ``size_multiple`` (``2**(depth-1)``).
        lr: peak learning rate (Adam, betas (0.9, 0.999), no weight decay).
        lr_min: learning rate at the end of the cosine decay.
        warmup_steps: linear warm-up from ``lr / warmup_steps`` to ``lr``.
        loss: ``"psnr"`` (official deblur/derain, weight 0.5) or ``"l1"`` (official
            denoise, weight 1), applied to both stage outputs and summed.
        loss_weight: overrides the loss's default weight.
        grad_clip: max total gradient norm (official: 0.01), ``None`` = no clipping.
        seed: seeds model initialisation and the per-step data generator.
        val_every: validate every this many steps (and at step 0 and the end).
        checkpoint_every: write ``last.pt`` every this many steps (and at the end).
        precision: ``"auto"`` (bf16 autocast on CUDA if supported, else fp16 AMP;
            fp32 on CPU), ``"fp32"``, ``"bf16"`` (autocast, CPU or CUDA) or ``"fp16"``
            (CUDA AMP with a gradient scaler).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        num_threads: torch CPU threads (``None`` = leave torch's default).
        restarts: steps at which a new cosine cycle starts (warm restarts), e.g.
            ``[2000]`` with ``steps=3500``: steps 0..1999 follow exactly the
            schedule of a 2000-step run, then the rate jumps to ``restart_lr``
            and decays again until ``steps``. This lets a finished run be
            continued (raise ``steps``, add the old end to ``restarts``) without
            changing its past.
        restart_lr: peak learning rate of the restarted cycles (default ``lr``).
        channels_last: keep the model and batches in channels-last memory format
            (measured on a 2-core AVX-512 CPU, bf16, ``wf=16``, 8 patches of 128 px:
            0.42 s per step instead of 0.57 s).
        data_workers: processes that draw the batches of coming steps
            (:class:`~.prefetch.BatchPrefetcher`; the same batches as without them).
            0 (default) draws each batch in this process, which suits a CPU whose
            cores all train; on a GPU, degrading patches on the CPU is otherwise the
            bottleneck (motion blur: ~9 ms per 192-pixel patch).
    """

    steps: int = 1000
    batch_size: int = 8
    patch_size: int = 64
    lr: float = 2e-4
    lr_min: float = 1e-6
    warmup_steps: int = 100
    loss: str = "psnr"
    loss_weight: float | None = None
    grad_clip: float | None = 0.01
    seed: int = 0
    val_every: int = 100
    checkpoint_every: int = 100
    precision: str = "auto"
    device: str = "cpu"
    num_threads: int | None = None
    restarts: list[int] = field(default_factory=list)
    restart_lr: float | None = None
    channels_last: bool = False
    data_workers: int = 0

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "patch_size", "val_every", "checkpoint_every")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.lr_min < 0:
            raise ValueError(f"lr must be > 0 and lr_min >= 0, got lr={self.lr}, lr_min={self.lr_min}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if self.loss not in ("psnr", "l1"):
            raise ValueError(f"loss must be 'psnr' or 'l1', got {self.loss!r}")
        self.restarts = sorted(int(r) for r in self.restarts)
        if any(r <= self.warmup_steps or r >= self.steps for r in self.restarts):
            raise ValueError(f"restarts must lie between warmup_steps and steps, got {self.restarts}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.data_workers < 0:
            raise ValueError(f"data_workers must be >= 0, got {self.data_workers}")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for the update number ``step`` (0-based): linear warm-up, then cosine
    decay to ``lr_min`` (restarted at each of ``cfg.restarts``)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    bounds = [cfg.warmup_steps, *cfg.restarts, cfg.steps]
    cycle = sum(1 for r in cfg.restarts if step >= r)
    start, end = bounds[cycle], bounds[cycle + 1]
    peak = cfg.lr if cycle == 0 else (cfg.restart_lr if cfg.restart_lr is not None else cfg.lr)
    t = min(max(step - start, 0) / max(end - start, 1), 1.0)
    return cfg.lr_min + 0.5 * (peak - cfg.lr_min) * (1.0 + math.cos(math.pi * t))


@dataclass
class StepEvent:
    """What happened at one step (sent to progress callbacks and the widget)."""

    step: int  # steps done so far (1..total)
    total: int
    loss: float
    lr: float
    val_psnr: float | None = None  # set on validation steps (dB)
    best_psnr: float | None = None
    elapsed_s: float = 0.0
    checkpoint: bool = False


@dataclass
class History:
    """Loss and validation curves, kept in the checkpoint (for plots after resume)."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_psnr: list[float] = field(default_factory=list)


def _atomic_torch_save(obj: dict, path: Path) -> None:
    from ..io import atomic_output

    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


class Trainer:
    """Train ``model`` on batches from ``source``; validate on fixed ``val`` arrays.

    Args:
        model: a HINet (any ``nn.Module`` returning ``[out_1, out_2]``).
        source: a patch source of :mod:`napari_hinet.training.datasets`.
        val: ``(inputs, targets)`` float32 ``(N, C, H, W)`` arrays, or ``None``.
        cfg: the :class:`TrainConfig`.
        run_dir: folder for ``last.pt``, ``best.pt`` and ``train.log``; ``None`` =
            no files (nothing to resume from).
        extra_state: JSON-able dict stored in checkpoints (e.g. the data recipe).
        objective: ``objective(model, x, y, autocast) -> loss`` replacing the default
            ``two_stage_loss(loss_fn, model(x), y)`` (e.g. a self-supervised loss that
            needs the network more than once); ``autocast`` is a context factory.
        val_mse: ``val_mse(model, x, y) -> float``, the mean squared error of a
            validation chunk when it is not ``mse(model(x)[-1], y)`` (e.g. an
            estimate without a clean image); validation PSNR is then
            ``-10 log10`` of its mean over the validation set.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        source,
        val: tuple[np.ndarray, np.ndarray] | None,
        cfg: TrainConfig,
        run_dir: str | os.PathLike | None = None,
        extra_state: dict | None = None,
        objective: Callable | None = None,
        val_mse: Callable | None = None,
    ) -> None:
        self.cfg = cfg
        self.objective = objective
        self.val_mse = val_mse
        self.val_seconds: float | None = None  # wall time of the last validation
        self.device = torch.device(cfg.device)
        if cfg.num_threads:
            torch.set_num_threads(int(cfg.num_threads))
        self.model = model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.source = source
        self.val = val
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.extra_state = extra_state or {}
        self.loss_fn = make_loss(cfg.loss, cfg.loss_weight)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
        self.precision = self._resolve_precision()
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.step = 0
        self.best_psnr: float | None = None
        self.start_psnr: float | None = None
        self.history = History()
        self.wall_time_s = 0.0
        self.best_state: dict | None = None
        self._prefetch: BatchPrefetcher | None = None  # while run() goes, with data_workers > 0
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ setup
    def _resolve_precision(self) -> str:
        from ..engine.devices import precision_name, resolve_precision

        return precision_name(resolve_precision(self.cfg.precision, self.device, training=True))

    def _autocast(self):
        if self.precision == "fp32":
            return torch.autocast(self.device.type, enabled=False)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "format": "napari-hinet-train-v1",
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "best_psnr": self.best_psnr if self.best_psnr is not None else float("nan"),
            "start_psnr": self.start_psnr if self.start_psnr is not None else float("nan"),
            "history": asdict(self.history),
            "wall_time_s": self.wall_time_s,
            "torch_rng": torch.get_rng_state(),
            "config": json.dumps(asdict(self.cfg)),
            "extra": json.dumps(self.extra_state),
        }

    def save_checkpoint(self) -> None:
        if self.run_dir is not None:
            _atomic_torch_save(self.state_dict(), self.run_dir / "last.pt")

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore the full training state written by :meth:`save_checkpoint`.

        Raises :class:`~napari_hinet.checkpoints.RunStateError` (file name and what
        to do) for a file that is damaged, unsafe, of another format or of another model.
        """
        from ..checkpoints import CheckpointError, RunStateError, read_torch_file

        fix = "Start over with resume=False (--no-resume), or use another run folder."
        try:
            state = read_torch_file(path, remedy=fix)
            best_path = self.run_dir / "best.pt" if self.run_dir is not None else None
            best = (
                read_torch_file(best_path, remedy=fix)
                if best_path is not None and best_path.exists()
                else None
            )
        except CheckpointError as exc:
            raise RunStateError(
                f"Cannot resume training: {exc}" + ("" if fix in str(exc) else f" {fix}")
            ) from None
        if not isinstance(state, dict) or state.get("format") != "napari-hinet-train-v1":
            raise RunStateError(
                f"Cannot resume training: {path} is not a napari-hinet training checkpoint. {fix}"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise RunStateError(
                f"Cannot resume training: the checkpoint {path} belongs to a different model or optimizer "
                f"({str(exc).splitlines()[0][:200]}). {fix}"
            ) from None
        try:
            if self.scaler is not None and state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
            step = int(state["step"])
            best_psnr = float(state["best_psnr"])
            start = float(state["start_psnr"])
            history = History(**state["history"])
            wall = float(state["wall_time_s"])
            torch.set_rng_state(state["torch_rng"])
            best_state = best["model"] if best is not None else None
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise RunStateError(
                f"Cannot resume training: {path} lacks or has a damaged field ({type(exc).__name__}: "
                f"{str(exc)[:200]}). {fix}"
            ) from None
        self.step = step
        self.best_psnr = None if math.isnan(best_psnr) else best_psnr
        self.start_psnr = None if math.isnan(start) else start
        self.history = history
        self.wall_time_s = wall
        if best_state is not None:
            self.best_state = best_state

    def try_resume(self) -> bool:
        """Load ``<run_dir>/last.pt`` if it exists; returns whether it did."""
        if self.run_dir is None or not (self.run_dir / "last.pt").exists():
            return False
        self.load_checkpoint(self.run_dir / "last.pt")
        self.log(f"resumed from {self.run_dir / 'last.pt'} at step {self.step}")
        return True

    def log(self, message: str) -> None:
        if self.run_dir is None:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        with open(self.run_dir / "train.log", "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {message}\n")

    # ------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, chunk: int = 8) -> float | None:
        """Mean PSNR (dB, peak 1) of the model's final output on the validation set."""
        if self.val is None:
            return None
        self.model.eval()
        values = []
        inputs, targets = self.val
        for i in range(0, len(inputs), chunk):
            x = torch.from_numpy(inputs[i : i + chunk]).to(self.device)
            y = torch.from_numpy(targets[i : i + chunk]).to(self.device)
            if self.val_mse is not None:
                values.append(float(self.val_mse(self.model, x, y)) * len(x))
                continue
            with self._autocast():
                out = self.model(x)[-1]
            values.append(psnr(out.float(), y) * len(x))
        self.model.train()
        if self.val_mse is not None:
            return -10.0 * math.log10(max(sum(values) / len(inputs), 1e-10))
        return float(sum(values) / len(inputs))

    @torch.no_grad()
    def predict_val(self, index: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(input, output, target) of validation sample ``index`` as ``(H, W, C)`` arrays."""
        if self.val is None:
            return None
        self.model.eval()
        x = torch.from_numpy(self.val[0][index : index + 1]).to(self.device)
        with self._autocast():
            out = self.model(x)[-1].float().clamp(0, 1)
        self.model.train()

        def hwc(a):
            return np.ascontiguousarray(np.asarray(a)[0].transpose(1, 2, 0))

        return (
            hwc(self.val[0][index : index + 1]),
            hwc(out.cpu().numpy()),
            hwc(self.val[1][index : index + 1]),
        )

    def _record_validation(self) -> float | None:
        started = time.perf_counter()
        value = self.validate()
        self.val_seconds = time.perf_counter() - started
        if value is None:
            return None
        if not math.isfinite(value):
            self._diverged(
                f"the validation PSNR is {value} at step {self.step} (the model's output holds NaN/Inf)"
            )
        if self.start_psnr is None:
            self.start_psnr = value
        self.history.val_steps.append(self.step)
        self.history.val_psnr.append(value)
        if self.best_psnr is None or value > self.best_psnr:
            self.best_psnr = value
            self.best_state = {k: v.detach().to("cpu").clone() for k, v in self.model.state_dict().items()}
            if self.run_dir is not None:
                _atomic_torch_save(
                    {"model": self.best_state, "step": self.step, "psnr": value}, self.run_dir / "best.pt"
                )
        self.log(f"step {self.step} val_psnr {value:.3f} best {self.best_psnr:.3f}")
        return value

    # ------------------------------------------------------------------ train
    def train_step(self) -> float:
        """One optimisation step on the batch of the current step; returns the loss."""
        cfg = self.cfg
        if self._prefetch is not None:
            x_np, y_np = self._prefetch.get(self.step)
        else:
            x_np, y_np = step_batch(self.source, cfg.seed, self.step, cfg.batch_size, cfg.patch_size)
        x = torch.from_numpy(x_np).to(self.device, non_blocking=True)
        y = torch.from_numpy(y_np).to(self.device, non_blocking=True)
        if cfg.channels_last:
            x = x.to(memory_format=torch.channels_last)
        lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        if self.objective is not None:
            loss = self.objective(self.model, x, y, self._autocast)
        else:
            with self._autocast():
                outputs = self.model(x)
            loss = two_stage_loss(self.loss_fn, [o.float() for o in outputs], y)
        if not torch.isfinite(loss.detach()):
            self._diverged(f"the loss is {loss.item()} at step {self.step + 1}")
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips the step itself on inf/nan (loss scaling)
            self.scaler.update()
        else:
            if not torch.isfinite(norm):
                self._diverged(f"the gradient norm is {float(norm)} at step {self.step + 1}")
            self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def _diverged(self, what: str) -> None:
        """Keep the last good weights (no update was applied), save them, and stop."""
        self.save_checkpoint()
        where = f"; the last good state is in {self.run_dir / 'last.pt'}" if self.run_dir else ""
        msg = (
            f"training stopped: {what}{where}. Lower the learning rate (now {self.cfg.lr:g}), "
            f"keep gradient clipping on (grad_clip={self.cfg.grad_clip}), or check the data for NaN/Inf."
        )
        self.log(msg)
        raise TrainingDiverged(msg)

    def run(self, should_stop: Callable[[], bool] | None = None) -> Iterator[StepEvent]:
        """Train until ``cfg.steps``; yields a :class:`StepEvent` after every step.

        ``should_stop()`` is polled before each step; when it returns True the
        state is checkpointed and the generator ends (call again to resume).
        """
        cfg = self.cfg
        self.model.train()
        if self.step == 0 and not self.history.val_steps:
            self._record_validation()
            self.log(f"start: {cfg.steps} steps, precision {self.precision}, device {self.device}")
        if cfg.data_workers > 0:
            self._prefetch = BatchPrefetcher(
                self.source, cfg.seed, cfg.batch_size, cfg.patch_size, cfg.data_workers
            )
        try:
            yield from self._run_steps(should_stop)
        finally:
            if self._prefetch is not None:
                self._prefetch.close()
                self._prefetch = None

    def _run_steps(self, should_stop: Callable[[], bool] | None) -> Iterator[StepEvent]:
        cfg = self.cfg
        t0 = time.perf_counter() - self.wall_time_s
        while self.step < cfg.steps:
            if should_stop is not None and should_stop():
                self.wall_time_s = time.perf_counter() - t0
                self.save_checkpoint()
                self.log(f"stopped at step {self.step}")
                return
            loss = self.train_step()
            self.history.steps.append(self.step)
            self.history.losses.append(loss)
            val = None
            if self.step % cfg.val_every == 0 or self.step == cfg.steps:
                val = self._record_validation()
                self.log(f"step {self.step} loss {loss:.5f} lr {lr_at(self.step - 1, cfg):.3g}")
            self.wall_time_s = time.perf_counter() - t0
            saved = self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps
            if saved:
                self.save_checkpoint()
            yield StepEvent(
                self.step,
                cfg.steps,
                loss,
                lr_at(self.step - 1, cfg),
                val,
                self.best_psnr,
                self.wall_time_s,
                saved,
            )
        self.log(f"done: {self.step} steps in {self.wall_time_s:.1f} s, best val PSNR {self.best_psnr}")

    def best_model(self) -> torch.nn.Module:
        """A copy of the model with the best-by-validation weights (or the current ones)."""
        model = copy.deepcopy(self.model).cpu().to(memory_format=torch.contiguous_format)
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        return model
