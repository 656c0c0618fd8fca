"""finetune(): the four data modes, saving into the registry, and the errors before training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_hinet.model import HINet
from napari_hinet.training import FinetuneConfig, FinetuneJob, finetune


def _scene(size=96, seed=0) -> np.ndarray:
    """A smooth gray test scene in [0.1, 0.9], float32 (H, W)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    im = ndimage.gaussian_filter(rng.random((size, size)), 3)
    im = (im - im.min()) / (im.max() - im.min())
    return (0.1 + 0.8 * im).astype(np.float32)


def _noisy(clean, seed, sigma=25):
    return (clean + np.random.default_rng(seed).normal(0, sigma / 255, clean.shape)).astype(np.float32)


def _cfg(**kw):
    base = dict(
        steps=30,
        batch_size=4,
        patch_size=32,
        lr=1e-3,
        warmup_steps=3,
        val_every=15,
        checkpoint_every=15,
        model={"wf": 8, "depth": 3},
        loss="l1",
        precision="fp32",
        num_threads=1,
        val_count=4,
        seed=0,
    )
    base.update(kw)
    return FinetuneConfig(**base)


CLEAN = [_scene(seed=i) for i in range(3)]
VAL_CLEAN = _scene(seed=10)
VAL_NOISY = _noisy(VAL_CLEAN, 99)

MODE_DATA = {
    "synthetic": lambda: {"clean": CLEAN, "degradation": {"kind": "gaussian", "sigma_255": (25, 25)}},
    "paired": lambda: {"inputs": [_noisy(c, i) for i, c in enumerate(CLEAN)], "targets": CLEAN},
    "n2n": lambda: {
        "inputs": [_noisy(c, i) for i, c in enumerate(CLEAN)],
        "targets": [_noisy(c, 50 + i) for i, c in enumerate(CLEAN)],
    },
    "self_supervised": lambda: {"inputs": [_noisy(c, i) for i, c in enumerate(CLEAN)]},
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["synthetic", "paired", "n2n", "self_supervised"])
def test_each_mode_raises_validation_psnr(mode):
    steps = []
    result = finetune(
        None,
        mode=mode,
        **MODE_DATA[mode](),
        val_inputs=VAL_NOISY,
        val_targets=VAL_CLEAN,
        config=_cfg(),
        progress=lambda s, t, loss, v: steps.append((s, t, loss, v)),
        save=False,
    )
    assert len(steps) == 30 and steps[-1][:2] == (30, 30)
    assert result.val_psnr_start is not None
    # sigma 25 noise is ~20 dB; 30 steps of a tiny model must clearly improve on the untrained one
    assert result.val_psnr > result.val_psnr_start + 1.0, (result.val_psnr_start, result.history.val_psnr)
    assert result.path is None and not result.stopped


def test_save_lists_the_model_and_preview_and_stop(tmp_models_dir):
    from napari_hinet.checkpoints import load_model
    from napari_hinet.registry import list_models

    previews, polls = [], []

    def should_stop():
        polls.append(1)
        return len(polls) > 6

    result = finetune(
        None,
        mode="synthetic",
        clean=CLEAN,
        degradation="gaussian",
        config=_cfg(steps=10, val_every=3, name="my-ft"),
        preview=lambda step, x, y, t: previews.append((step, x.shape, y.shape, t.shape)),
        should_stop=should_stop,
    )
    assert result.stopped and result.steps == 6
    assert previews[0][0] == 0 and all(p[1] == p[2] == p[3] for p in previews)
    assert result.path == tmp_models_dir / "my-ft.safetensors" and result.path.exists()
    info = {m.name: m for m in list_models("denoise")}
    assert "my-ft" in info and info["my-ft"].kind == "user"
    model = load_model("my-ft")
    meta = model.metadata
    assert meta["task"] == "denoise" and meta["channels"] == "gray" and meta["normalization"] == "percentile"
    assert meta["training"]["mode"] == "synthetic" and meta["training"]["steps"] == 6
    assert meta["training"]["base_model"].startswith("new HINet")
    assert meta["metrics"]["val_psnr"] == pytest.approx(result.val_psnr)
    assert "package_version" in meta["training"]


def test_fine_tune_a_given_model_with_channel_rule():
    torch.manual_seed(0)
    rgb = HINet(3, wf=8, depth=3)
    with pytest.raises(ValueError, match="channel_rule='replicate'"):
        FinetuneJob(rgb, mode="synthetic", clean=CLEAN, degradation="gaussian", config=_cfg())
    job = FinetuneJob(
        rgb, mode="synthetic", clean=CLEAN, degradation="gaussian", config=_cfg(channel_rule="replicate")
    )
    assert job.val[0].shape[1] == 3
    gray = HINet(1, wf=8, depth=3)
    rgb_images = [np.stack([c] * 3, axis=-1) for c in CLEAN]
    with pytest.raises(ValueError, match="channel_rule='gray'"):
        FinetuneJob(gray, mode="synthetic", clean=rgb_images, degradation="gaussian", config=_cfg())
    job = FinetuneJob(
        gray, mode="synthetic", clean=rgb_images, degradation="gaussian", config=_cfg(channel_rule="gray")
    )
    assert job.val[0].shape[1] == 1


def test_patch_larger_than_images():
    with pytest.raises(ValueError, match="larger than the smallest training image"):
        FinetuneJob(
            None, mode="synthetic", clean=[_scene(40)] * 3, degradation="gaussian", config=_cfg(patch_size=48)
        )
    with pytest.raises(ValueError, match="2 x patch_size"):
        FinetuneJob(None, mode="self_supervised", inputs=[_scene(48)] * 3, config=_cfg(patch_size=32))


def test_patch_not_a_multiple():
    with pytest.raises(ValueError, match="multiple of 4"):
        FinetuneJob(None, mode="synthetic", clean=CLEAN, degradation="gaussian", config=_cfg(patch_size=30))


def test_mismatched_pairs():
    with pytest.raises(ValueError, match="mismatched pair"):
        FinetuneJob(None, mode="paired", inputs=[_scene(96)], targets=[_scene(80)], config=_cfg())
    with pytest.raises(ValueError, match="must pair up"):
        FinetuneJob(None, mode="n2n", inputs=CLEAN, targets=CLEAN[:2], config=_cfg())


def test_missing_data_and_bad_mode():
    with pytest.raises(ValueError, match="needs clean="):
        FinetuneJob(None, mode="synthetic", degradation="gaussian", config=_cfg())
    with pytest.raises(ValueError, match="needs degradation="):
        FinetuneJob(None, mode="synthetic", clean=CLEAN, config=_cfg())
    with pytest.raises(ValueError, match="needs inputs= and targets="):
        FinetuneJob(None, mode="paired", inputs=CLEAN, config=_cfg())
    with pytest.raises(ValueError, match="unknown mode"):
        FinetuneJob(None, mode="magic", config=_cfg())
    with pytest.raises(ValueError, match="cannot read an array"):
        FinetuneJob(
            None, mode="synthetic", clean=np.zeros((2, 2, 2, 2, 2)), degradation="gaussian", config=_cfg()
        )


def test_folders_empty_unmatched_and_matched(tmp_path):
    import tifffile

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        FinetuneJob(None, mode="synthetic", clean=empty, degradation="gaussian", config=_cfg())
    noisy, clean = tmp_path / "noisy", tmp_path / "clean"
    noisy.mkdir()
    clean.mkdir()
    for i, c in enumerate(CLEAN):
        tifffile.imwrite(clean / f"img{i}.tif", (c * 65535).astype(np.uint16))
        tifffile.imwrite(noisy / f"img{i}.tif", (np.clip(_noisy(c, i), 0, 1) * 65535).astype(np.uint16))
    tifffile.imwrite(noisy / "extra.tif", np.zeros((96, 96), np.uint16))
    with pytest.raises(ValueError, match="same names"):
        FinetuneJob(None, mode="paired", inputs=noisy, targets=clean, config=_cfg())
    (noisy / "extra.tif").unlink()
    job = FinetuneJob(None, mode="paired", inputs=noisy, targets=clean, config=_cfg(normalization="fixed"))
    assert job.data_summary["images"] == 2 and job.data_summary["validation"].startswith("held out")
    with pytest.raises(FileNotFoundError):
        FinetuneJob(None, mode="synthetic", clean=tmp_path / "nope", degradation="gaussian", config=_cfg())


def test_single_image_is_split_into_train_and_validation_strips():
    job = FinetuneJob(None, mode="synthetic", clean=_scene(160), degradation="gaussian", config=_cfg())
    assert job.data_summary["images"] == 1
    with pytest.raises(ValueError, match="too small to split"):
        FinetuneJob(None, mode="synthetic", clean=_scene(48), degradation="gaussian", config=_cfg())


def test_fixed_normalization_rejects_float_data_outside_unit_range():
    with pytest.raises(ValueError, match="normalization='percentile'"):
        FinetuneJob(
            None,
            mode="synthetic",
            clean=[c * 255 for c in CLEAN],
            degradation="gaussian",
            config=_cfg(normalization="fixed"),
        )


@pytest.mark.slow
def test_paired_percentile_pairs_share_the_input_range(tmp_models_dir):
    # Noisy and clean images have different percentiles; the target must be scaled with the
    # input's range (as restore() maps the output back), else a good base model starts with
    # a misleadingly low validation PSNR (18.6 dB instead of ~31.5 dB on this sample).
    from napari_hinet._sample_data import noisy_fluorescence

    data = {meta["name"]: arr for arr, meta, *_ in noisy_fluorescence()}
    job = FinetuneJob(
        "hinet-denoise-fluo",
        mode="paired",
        inputs=data["nuclei (noisy)"],
        targets=data["nuclei (clean)"],
        config=FinetuneConfig(steps=1, batch_size=2, patch_size=64, val_every=1),
    )
    for _ in job.run():
        pass
    assert job.trainer.history.val_psnr[0] > 28.0


# ----------------------------------------------------------------------------- time budget
def test_time_budget_rejects_bad_values():
    with pytest.raises(ValueError, match="time_budget_s must be > 0"):
        _cfg(time_budget_s=0)
    with pytest.raises(ValueError, match="restarts"):
        _cfg(time_budget_s=10, steps=100, restarts=[50])


@pytest.mark.slow
def test_time_budget_ends_on_a_finished_schedule(tmp_path, tmp_models_dir):
    """The schedule, not a timer, ends the run: the last step has the final learning rate.
    Wall-time bounds are generous (the machine may be loaded); the plan is exact."""
    import json

    from napari_hinet.checkpoints import load_model
    from napari_hinet.training.engine import lr_at

    events = []
    job = FinetuneJob(
        None,
        mode="self_supervised",
        **MODE_DATA["self_supervised"](),
        config=_cfg(
            time_budget_s=4.0, warmup_steps=10, val_every=10, run_dir=str(tmp_path / "run"), name="budget"
        ),
    )
    for ev in job.run():
        events.append(ev)
    plan = job.budget_plan
    tcfg = job.trainer.cfg
    refit = plan.get("refit", {})
    total = refit["steps"] if refit.get("applied") else plan["steps"]
    assert plan["fitted_at_step"] == 6 and total == tcfg.steps == events[-1].step
    # the planned total from the fitting step on (the re-fitted one after a re-fit)
    assert events[-1].total == tcfg.steps and all(
        ev.total in (plan["steps"], tcfg.steps) for ev in events[5:]
    )
    # finished: every step of the schedule was done, which ends at lr_min
    assert lr_at(tcfg.steps, tcfg) == pytest.approx(tcfg.lr_min)
    assert [lr_at(s, tcfg) for s in range(plan["warmup_steps"], tcfg.steps + 1)][-1] == min(
        lr_at(s, tcfg) for s in range(tcfg.steps + 1)
    )
    assert 1.0 < job.trainer.wall_time_s < 4.0 * 4  # on budget within wide, load-proof bounds
    assert json.loads((tmp_path / "run" / "budget.json").read_text()) == plan
    meta = load_model(job.save()).metadata
    assert meta["training"]["time_budget"] == plan and meta["training"]["steps"] == total


@pytest.mark.slow
def test_time_budget_resume_keeps_the_plan(tmp_path):
    run = str(tmp_path / "run")
    data = MODE_DATA["self_supervised"]()
    job = FinetuneJob(None, mode="self_supervised", **data, config=_cfg(time_budget_s=3.0, run_dir=run))
    polls = []
    for _ in job.run(should_stop=lambda: polls.append(1) or len(polls) > 9):
        pass
    assert job.stopped and job.steps_done == 9
    again = FinetuneJob(None, mode="self_supervised", **data, config=_cfg(time_budget_s=3.0, run_dir=run))
    assert again.resumed and again.budget_plan == job.budget_plan
    assert again.trainer.cfg.steps == job.trainer.cfg.steps


# ----------------------------------------------------------------------------- what validation measures
def test_validation_reference_is_labelled(tmp_models_dir):
    from napari_hinet.checkpoints import load_model

    cfg = _cfg(steps=1, val_every=1)
    refs = {
        mode: FinetuneJob(None, mode=mode, **MODE_DATA[mode](), config=cfg).val_reference
        for mode in ("paired", "n2n", "self_supervised")
    }
    assert refs == {
        "paired": "clean",
        "n2n": "noisy view (second acquisition)",
        "self_supervised": "noisy view (neighbour sub-sample)",
    }
    # clean validation pairs make it clean again
    job = FinetuneJob(
        None,
        mode="self_supervised",
        **MODE_DATA["self_supervised"](),
        val_inputs=VAL_NOISY,
        val_targets=VAL_CLEAN,
        config=cfg,
    )
    assert job.val_reference == "clean"
    result = finetune(
        None, mode="self_supervised", **MODE_DATA["self_supervised"](), config=_cfg(steps=1, name="ref")
    )
    assert result.val_reference == "noisy view (neighbour sub-sample)"
    assert load_model("ref").metadata["metrics"]["val_reference"] == result.val_reference


@pytest.mark.slow
@pytest.mark.parametrize("method", ["neighbor_reg", "blind_spot", "sure"])
def test_each_self_supervised_method_learns_to_denoise(method):
    noise = {"noise_model": (0.0, (25 / 255) ** 2)} if method == "sure" else {}  # the data's own units
    result = finetune(
        None,
        mode="self_supervised",
        **MODE_DATA["self_supervised"](),
        val_inputs=VAL_NOISY,
        val_targets=VAL_CLEAN,
        config=_cfg(steps=40, val_every=20, ssl_method=method, **noise),
        save=False,
    )
    assert result.val_reference == "clean"
    assert result.val_psnr > result.val_psnr_start + 1.0, (result.val_psnr_start, result.history.val_psnr)


def test_sure_carries_the_noise_model_through_the_normalisation_and_validates_against_clean():
    from napari_hinet.training.finetune import SURE_ESTIMATE

    sigma = 25 / 255
    inputs = [(1000 * n).astype(np.float32) for n in MODE_DATA["self_supervised"]()["inputs"]]  # other units
    cfg = _cfg(steps=2, ssl_method="sure", noise_model=(0.0, (1000 * sigma) ** 2), normalization="percentile")
    job = FinetuneJob(None, mode="self_supervised", inputs=inputs, config=cfg)
    assert job.val_reference == SURE_ESTIMATE == "clean, estimated (SURE)"
    # each map is sigma^2 in the [0, 1] units of its own percentile mapping
    from napari_hinet.training.finetune import _percentile_range

    lo, hi = _percentile_range(inputs[0])
    expected = (1000 * sigma / (hi - lo)) ** 2
    np.testing.assert_allclose(job.source.variances[0], expected, rtol=1e-5)
    # estimated when not given: close to the same level (smooth scenes, white noise)
    estimated = FinetuneJob(
        None, mode="self_supervised", inputs=inputs, config=_cfg(steps=2, ssl_method="sure")
    )
    assert float(np.median(estimated.source.variances[0])) == pytest.approx(expected, rel=0.2)
    assert estimated.data_summary["noise_model"] == "estimated from each image"
    result = finetune(None, mode="self_supervised", inputs=inputs, config=cfg, save=False)
    assert result.val_reference == SURE_ESTIMATE and np.isfinite(result.val_psnr)


@pytest.mark.parametrize(
    ("noise_model", "message"),
    [
        ((1.0,), "two finite numbers"),
        ((float("nan"), 1.0), "two finite numbers"),
        ((-1.0, 0.0), "must be >= 0"),
    ],
)
def test_a_bad_noise_model_is_refused_before_training(noise_model, message):
    with pytest.raises(ValueError, match=message):
        _cfg(ssl_method="sure", noise_model=noise_model)
