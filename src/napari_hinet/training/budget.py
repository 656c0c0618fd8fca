"""Fitting one warm-up + cosine cycle of a :class:`~napari_hinet.training.engine.Trainer`
to a wall-clock budget.

Used by :class:`~napari_hinet.training.finetune.FinetuneJob` (``time_budget_s``: "train
for five minutes" ends on a finished schedule) and by ``scripts/train_bundled.py
--budget-minutes`` (one call on a lent GPU). A run stays a pure function of its step
count (exact resume, reproducible batches): the planner only chooses that count, from
the pace of the first steps, and once more at :data:`REFIT_AT` of the budget.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..io import atomic_output
from .engine import StepEvent, TrainConfig, Trainer, lr_at

__all__ = ["PROBE_STEPS", "REFIT_AT", "REFIT_TOLERANCE", "BudgetPlanner", "fit_steps", "refit_schedule"]

#: Steps timed before the total is fitted (at most; never past the warm-up, whose
#: learning rates do not depend on the total, so nothing is redone).
PROBE_STEPS = 5
#: Share of the budget after which the plan is checked once against the measured pace.
REFIT_AT = 0.5
#: A re-fit is applied when it changes the total by more than this share.
REFIT_TOLERANCE = 0.05


def fit_steps(
    budget_s: float,
    *,
    elapsed_s: float,
    steps_done: int,
    step_s: float,
    val_s: float,
    val_every: int,
    warmup_steps: int,
) -> tuple[int, int]:
    """The total number of steps, and of warm-up steps, that end training at ``budget_s``.

    Rules, applied in this order (times in seconds):

    1. What is left: ``budget_s - elapsed_s``, less one validation (``val_s``) for
       the final one.
    2. A step costs ``step_s`` plus its share of the periodic validation,
       ``val_s / val_every``.
    3. ``total = steps_done + floor(left / cost)``, at least ``steps_done + 1``.
    4. The warm-up keeps ``warmup_steps`` unless that is more than a tenth of the
       total; then it is shortened to ``max(steps_done, total // 10)`` (the steps
       already done keep their warm-up rates).

    Returns:
        ``(total_steps, warmup_steps)``.
    """
    left = budget_s - elapsed_s - val_s
    cost = max(step_s, 1e-6) + val_s / max(val_every, 1)
    total = steps_done + max(1, math.floor(left / cost))
    warmup = warmup_steps if warmup_steps <= total // 10 else max(steps_done, total // 10)
    return int(total), int(min(warmup, total - 1))


def refit_schedule(cfg: TrainConfig, at_step: int, total: int) -> tuple[int, list[int], float]:
    """``(steps, restarts, restart_lr)`` for a schedule that, from ``at_step`` on, decays
    from the learning rate ``cfg`` has at ``at_step`` to ``lr_min`` at ``total``: a cosine
    restart at ``at_step`` whose peak is that rate, so the rate does not jump. (With it,
    :func:`lr_at` of the steps before ``at_step`` follows a cycle compressed to end there;
    those steps are done, and the planner checkpoints at the re-fit so none is redone.)"""
    total = max(int(total), at_step + 1)
    return total, [int(at_step)], float(lr_at(at_step, cfg))


class BudgetPlanner:
    """Sets ``trainer.cfg.steps`` (and the warm-up) so that training ends at ``budget_s``.

    Feed it every :class:`StepEvent` of ``trainer.run()`` (:meth:`observe`). Rules,
    applied in this order:

    1. **Resume.** With ``resumed`` and an existing ``plan_file``, the saved plan is
       applied and nothing is timed again.
    2. **Provisional total.** Until the fit, ``cfg.steps`` is at least the warm-up + 1
       and the probe + 1, so the trainer does not stop before rule 4.
    3. **Probe.** A step's time is its wall time less the validation it ran (the
       trainer's ``val_seconds``). The first ``skip`` steps of this run are not timed
       (one-off allocations; on a GPU, cuDNN's algorithm search); the next ``probe``
       are, but the fit never waits past the end of the warm-up (at least one step
       is timed).
    4. **Fit.** :func:`fit_steps` with their mean time, the time used so far (training,
       plus one validation's time for the validation before step 1) and the last
       validation's time gives ``steps`` and ``warmup_steps``; restarts are cleared.
    5. **Re-fit.** Once, after ``refit_at`` of the budget (None: never) and at least 3
       timed steps since the fit, the total is fitted again to the pace since the fit;
       applied (:func:`refit_schedule`: the cosine continues from the current rate)
       when past the warm-up and it changes the total by more than
       :data:`REFIT_TOLERANCE`. The trainer checkpoints there, so a resumed run never
       redoes the steps before it.
    6. **Record.** Every plan is kept in :attr:`plan` and, when given, ``plan_file``
       (JSON: ``time_budget_s``, ``steps``, ``warmup_steps``, ``step_s``, ``val_s``,
       ``fitted_at_step``, and ``refit`` after rule 5).
    """

    def __init__(
        self,
        trainer: Trainer,
        budget_s: float,
        *,
        skip: int = 1,
        probe: int = PROBE_STEPS,
        refit_at: float | None = REFIT_AT,
        plan_file: str | Path | None = None,
        resumed: bool = False,
    ) -> None:
        if not budget_s > 0:
            raise ValueError(f"the time budget must be > 0 seconds, got {budget_s}")
        self.trainer, self.budget_s, self.refit_at = trainer, float(budget_s), refit_at
        self.plan_file = Path(plan_file) if plan_file is not None else None
        self.plan: dict | None = None
        self._first_step = trainer.step
        self._previous = trainer.wall_time_s
        self._times: list[float] = []  # step times since the last plan (rule 3)
        tcfg = trainer.cfg
        if resumed and self.plan_file is not None and self.plan_file.exists():  # rule 1
            self._apply(json.loads(self.plan_file.read_text()))
            return
        self._skip = max(0, int(skip))
        self._fit_at = max(self._skip + 1, min(self._skip + max(1, int(probe)), tcfg.warmup_steps))
        tcfg.steps = max(tcfg.steps, tcfg.warmup_steps + 1, self._fit_at + 1)  # rule 2

    # ------------------------------------------------------------------ public
    def elapsed_s(self) -> float:
        """Seconds of the budget used: training so far plus the validation before step 1."""
        return self.trainer.wall_time_s + float((self.plan or {}).get("val_s", 0.0))

    def observe(self, event: StepEvent) -> None:
        """Time one step and fit (or re-fit) the plan when its rule says so."""
        step_s = event.elapsed_s - self._previous
        self._previous = event.elapsed_s
        if event.val_psnr is not None:
            step_s -= float(self.trainer.val_seconds or 0.0)
        if self.plan is None:
            if event.step - self._first_step > self._skip:
                self._times.append(step_s)
            if event.step - self._first_step >= self._fit_at:
                self._fit()
            return
        self._times.append(step_s)
        if (
            self.refit_at is not None
            and "refit" not in self.plan
            and len(self._times) >= 3
            and self.elapsed_s() >= self.refit_at * self.budget_s
        ):
            self._refit()

    # ------------------------------------------------------------------ rules 4-6
    def _val_s(self) -> float:
        return float(self.trainer.val_seconds or 0.0) if self.trainer.val is not None else 0.0

    def _fit_times(self, elapsed_s: float) -> tuple[float, int, int]:
        """``(mean step time, total, warm-up)`` from the steps timed since the last plan."""
        tcfg = self.trainer.cfg
        step_s = sum(self._times) / len(self._times)
        total, warmup = fit_steps(
            self.budget_s,
            elapsed_s=elapsed_s,
            steps_done=self.trainer.step,
            step_s=step_s,
            val_s=self._val_s(),
            val_every=tcfg.val_every,
            warmup_steps=tcfg.warmup_steps,
        )
        return step_s, total, warmup

    def _fit(self) -> None:
        trainer = self.trainer
        startup_s = self._val_s()  # the validation before step 1, timed as the last one
        step_s, steps, warmup = self._fit_times(trainer.wall_time_s + startup_s)
        plan = {
            "time_budget_s": self.budget_s,
            "steps": steps,
            "warmup_steps": warmup,
            "step_s": round(step_s, 4),
            "val_s": round(startup_s, 4),
            "fitted_at_step": trainer.step,
        }
        self._record(plan)
        trainer.log(f"time budget {self.budget_s:g} s: {steps} steps (warm-up {warmup}), {plan}")

    def _refit(self) -> None:
        trainer, tcfg = self.trainer, self.trainer.cfg
        step = trainer.step
        step_s, total, _ = self._fit_times(self.elapsed_s())
        applied = step > tcfg.warmup_steps and abs(total - tcfg.steps) > REFIT_TOLERANCE * tcfg.steps
        refit = {"at_step": step, "steps": total, "step_s": round(step_s, 4), "applied": bool(applied)}
        self._record({**self.plan, "refit": refit})
        trainer.save_checkpoint()
        trainer.log(f"time budget re-fit at step {step}: {refit}")

    def _record(self, plan: dict) -> None:
        self._apply(plan)
        self._times = []
        if self.plan_file is not None:
            with atomic_output(self.plan_file) as tmp:
                tmp.write_text(json.dumps(plan))

    def _apply(self, plan: dict) -> None:
        self.plan = plan
        tcfg = self.trainer.cfg
        tcfg.steps, tcfg.warmup_steps = int(plan["steps"]), int(plan["warmup_steps"])
        tcfg.restarts, tcfg.restart_lr = [], None
        refit = plan.get("refit") or {}
        if refit.get("applied"):
            tcfg.steps, tcfg.restarts, tcfg.restart_lr = refit_schedule(
                tcfg, refit["at_step"], refit["steps"]
            )
