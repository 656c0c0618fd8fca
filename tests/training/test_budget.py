"""BudgetPlanner: one warm-up + cosine cycle fitted to a wall-clock budget (fine-tuning's
``time_budget_s`` and ``train_bundled.py --budget-minutes``). Step times are synthetic
events, so the plans are exact; the fine-tuning tests run the planner on real steps."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hinet.model import HINet
from napari_hinet.training import BudgetPlanner, TrainConfig, lr_at
from napari_hinet.training.datasets import Degradation, SyntheticSource, fixed_set
from napari_hinet.training.engine import StepEvent, Trainer


def _trainer(run_dir=None, warmup_steps: int = 100) -> Trainer:
    img = [np.random.default_rng(0).random((48, 48, 1)).astype(np.float32)]
    src = SyntheticSource(img, Degradation("gaussian", sigma_255=(25, 25)))
    cfg = TrainConfig(
        steps=1000, batch_size=2, patch_size=16, warmup_steps=warmup_steps, val_every=50, num_threads=1
    )
    trainer = Trainer(HINet(1, wf=8, depth=3), src, fixed_set(src, 0, 2, 16), cfg, run_dir)
    trainer.val_seconds = 0.5  # as if the validation before step 1 took 0.5 s
    return trainer


def _steps(trainer: Trainer, step_s: float, n: int, val_every: int = 0):
    """n steps of ``step_s`` seconds of training each, as trainer.run() reports them; with
    ``val_every``, every such step also runs a validation of ``trainer.val_seconds``."""
    for _ in range(n):
        trainer.step += 1
        val = 30.0 if val_every and trainer.step % val_every == 0 else None
        trainer.wall_time_s += step_s + (trainer.val_seconds if val is not None else 0.0)
        yield StepEvent(trainer.step, trainer.cfg.steps, 0.0, 1e-4, val, elapsed_s=trainer.wall_time_s)


def _feed(planner: BudgetPlanner, events) -> None:
    for ev in events:
        planner.observe(ev)


def test_fit_steps_rules():
    from napari_hinet.training import fit_steps

    # 100 s left after 10 s, 0.5 s a step, a 2 s validation every 20 steps (+0.1 s a step)
    total, warmup = fit_steps(
        110, elapsed_s=10, steps_done=5, step_s=0.5, val_s=2, val_every=20, warmup_steps=20
    )
    assert total == 5 + int((110 - 10 - 2) / 0.6) == 168
    assert warmup == 16  # 20 is more than a tenth of 168
    assert (
        fit_steps(300, elapsed_s=0, steps_done=5, step_s=0.5, val_s=0, val_every=20, warmup_steps=20)[1] == 20
    )
    # a warm-up longer than a tenth of the total is shortened, never below the steps done
    total, warmup = fit_steps(
        20, elapsed_s=1, steps_done=6, step_s=0.5, val_s=0, val_every=50, warmup_steps=20
    )
    assert total == 6 + 38 and warmup == 6
    # an exhausted budget still ends the schedule one step later
    assert fit_steps(5, elapsed_s=9, steps_done=6, step_s=1, val_s=1, val_every=5, warmup_steps=3)[0] == 7


def test_refit_continues_the_cosine_from_the_current_rate():
    from napari_hinet.training import refit_schedule

    cfg = TrainConfig(steps=100, lr=1e-3, lr_min=1e-6, warmup_steps=10)
    for new_total in (60, 140):  # the machine got faster / slower after step 50
        steps, restarts, restart_lr = refit_schedule(cfg, 50, new_total)
        refit = TrainConfig(
            steps=steps, lr=1e-3, lr_min=1e-6, warmup_steps=10, restarts=restarts, restart_lr=restart_lr
        )
        assert restarts == [50]
        assert lr_at(50, refit) == pytest.approx(lr_at(50, cfg))  # the rate applied does not jump
        assert lr_at(steps, refit) == pytest.approx(1e-6) and steps == new_total
        rates = [lr_at(s, refit) for s in range(50, steps)]
        assert rates == sorted(rates, reverse=True)


def test_probe_skips_the_first_steps_then_fits_one_cycle():
    trainer = _trainer()
    planner = BudgetPlanner(trainer, 60.0, skip=5, probe=20)
    _feed(planner, _steps(trainer, 3.0, 1))  # one-off costs (allocations, cuDNN): not timed
    _feed(planner, _steps(trainer, 0.05, 23))
    assert planner.plan is None and trainer.cfg.steps == 1000  # still probing, steps untouched
    _feed(planner, _steps(trainer, 0.05, 1))
    plan = planner.plan
    assert plan["step_s"] == pytest.approx(0.05) and plan["fitted_at_step"] == 25
    # 60 s - (4.2 s of steps + 0.5 s of the first validation) - 0.5 s for the last one,
    # at 0.05 s + 0.5 s / 50 per step: 25 + 913 steps
    assert trainer.cfg.steps == plan["steps"] == 25 + 913
    assert trainer.cfg.warmup_steps == plan["warmup_steps"] == 93  # a tenth of the total at most
    assert trainer.cfg.restarts == []


def test_validation_time_is_not_counted_as_step_time():
    trainer = _trainer(warmup_steps=10)
    planner = BudgetPlanner(trainer, 60.0, skip=1, probe=5)
    _feed(planner, _steps(trainer, 0.05, 6, val_every=2))  # steps 2, 4, 6 validate (0.5 s each)
    assert planner.plan["fitted_at_step"] == 6 and planner.plan["step_s"] == pytest.approx(0.05)


def test_fit_never_waits_past_the_warm_up():
    trainer = _trainer(warmup_steps=3)
    planner = BudgetPlanner(trainer, 60.0, skip=1, probe=5)
    _feed(planner, _steps(trainer, 0.05, 3))
    assert planner.plan is not None and planner.plan["fitted_at_step"] == 3
    # a budget of 1 step less than the warm-up: the provisional total lets the fit happen
    short = _trainer(warmup_steps=30)
    short.cfg.steps = 2
    BudgetPlanner(short, 60.0, skip=5, probe=20)
    assert short.cfg.steps == 31


def test_refit_once_past_half_the_budget_when_the_pace_changes():
    trainer = _trainer()
    planner = BudgetPlanner(trainer, 60.0, skip=5, probe=20)
    _feed(planner, _steps(trainer, 0.05, 25))
    fitted = planner.plan["steps"]
    _feed(planner, _steps(trainer, 0.2, 5))  # slower, but before half the budget: no re-fit
    assert "refit" not in planner.plan and trainer.cfg.steps == fitted
    while planner.elapsed_s() < 30.0:
        _feed(planner, _steps(trainer, 0.2, 1))
    _feed(planner, _steps(trainer, 0.2, 1))
    refit = planner.plan["refit"]
    at = refit["at_step"]
    assert refit["applied"] and refit["steps"] < fitted and trainer.cfg.steps == refit["steps"]
    assert trainer.cfg.restarts == [at] and lr_at(trainer.cfg.steps, trainer.cfg) == pytest.approx(1e-6)
    _feed(planner, _steps(trainer, 0.05, 20))  # once only
    assert planner.plan["refit"] == refit


def test_a_resumed_run_keeps_its_plan(tmp_path):
    trainer = _trainer(tmp_path)
    planner = BudgetPlanner(trainer, 60.0, skip=1, probe=5, plan_file=tmp_path / "budget.json")
    _feed(planner, _steps(trainer, 0.05, 6))
    again = _trainer(tmp_path)
    resumed = BudgetPlanner(again, 60.0, skip=1, probe=5, plan_file=tmp_path / "budget.json", resumed=True)
    assert resumed.plan == planner.plan and again.cfg.steps == trainer.cfg.steps
    _feed(resumed, _steps(again, 1.0, 6))  # no second probe
    assert resumed.plan == planner.plan


def test_rejects_a_budget_that_is_not_positive():
    with pytest.raises(ValueError, match="budget must be > 0"):
        BudgetPlanner(_trainer(), 0.0)
