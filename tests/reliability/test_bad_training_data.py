"""Bad training data: every problem is a ValueError naming it, raised before the first step."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hinet.training.engine import TrainingDiverged
from napari_hinet.training.finetune import FinetuneJob

from .conftest import tiny_config, tiny_hinet


def _cfg(**changes):
    return tiny_config(**changes)


def _img(seed=0, shape=(48, 48), dtype=np.float32):
    return np.random.default_rng(seed).random(shape).astype(dtype)


def _with(value, where=(5, 5), shape=(48, 48)):
    a = _img(shape=shape)
    a[where] = value
    return a


def _stack(n, seed=0):
    return np.random.default_rng(seed).random((n, 48, 48)).astype(np.float32)


CASES = [
    # id, FinetuneJob kwargs, message regex
    (
        "nan-target",
        dict(mode="paired", inputs=_img(), targets=_with(np.nan)),
        r"training image .* NaN or infinite",
    ),
    ("inf-target", dict(mode="paired", inputs=_img(), targets=_with(np.inf)), "NaN or infinite"),
    ("nan-input-fixed", dict(mode="paired", inputs=_with(np.nan), targets=_img()), "NaN or infinite"),
    ("neg-inf-input", dict(mode="paired", inputs=_with(-np.inf), targets=_img()), "NaN or infinite"),
    (
        "nan-clean-synthetic",
        dict(mode="synthetic", clean=_with(np.nan), degradation="gaussian"),
        "NaN or inf",
    ),
    ("nan-self-supervised", dict(mode="self_supervised", inputs=_with(np.nan, shape=(64, 64))), "NaN or inf"),
    ("nan-n2n-second", dict(mode="n2n", inputs=_img(), targets=_with(np.nan)), "NaN or infinite"),
    (
        "nan-val-target",
        dict(mode="paired", inputs=_img(), targets=_img(1), val_inputs=_img(2), val_targets=_with(np.nan)),
        r"validation image .* NaN",
    ),
    (
        "nan-val-input",
        dict(mode="paired", inputs=_img(), targets=_img(1), val_inputs=_with(np.nan), val_targets=_img(2)),
        r"validation image .* NaN",
    ),
    (
        "nan-val-clean",
        dict(mode="synthetic", clean=_img(), degradation="gaussian", val_clean=_with(np.nan)),
        "valid",
    ),
    ("all-nan-stack", dict(mode="paired", inputs=np.full((2, 48, 48), np.nan), targets=_stack(2)), "NaN"),
    (
        "zero-length-stack",
        dict(mode="paired", inputs=np.zeros((0, 48, 48)), targets=np.zeros((0, 48, 48))),
        "no pixels",
    ),
    (
        "zero-width-image",
        dict(mode="synthetic", clean=np.zeros((48, 0)), degradation="gaussian"),
        "no pixels",
    ),
    ("empty-list", dict(mode="paired", inputs=[], targets=[]), "no images given"),
    ("complex-images", dict(mode="paired", inputs=_img().astype(complex), targets=_img()), "complex"),
    ("object-images", dict(mode="paired", inputs=np.array([[object()] * 4] * 4), targets=_img()), "object"),
    ("string-images", dict(mode="paired", inputs=np.full((8, 8), "a"), targets=_img()), "<U1"),
    ("mismatched-pair", dict(mode="paired", inputs=_img(), targets=_img(shape=(40, 48))), "mismatched pair"),
    ("count-mismatch", dict(mode="paired", inputs=_stack(2), targets=_stack(3)), "they must pair up"),
    (
        "too-small",
        dict(mode="synthetic", clean=_img(shape=(12, 12)), degradation="gaussian"),
        "too small|larger than",
    ),
    ("float-beyond-range", dict(mode="paired", inputs=_img() * 1000, targets=_img() * 1000), r"\[0, 1\]"),
    ("unknown-mode", dict(mode="magic", inputs=_img()), "unknown mode"),
    ("synthetic-no-degradation", dict(mode="synthetic", clean=_img()), "needs degradation"),
    ("paired-no-targets", dict(mode="paired", inputs=_img()), "needs inputs= and targets="),
    ("self-supervised-no-input", dict(mode="self_supervised"), "needs inputs="),
    ("val-input-only", dict(mode="paired", inputs=_img(), targets=_img(1), val_inputs=_img(2)), "need both"),
    (
        "4d-odd-shape",
        dict(mode="paired", inputs=np.zeros((2, 2, 8, 8)), targets=np.zeros((2, 2, 8, 8))),
        "cannot read",
    ),
]


@pytest.mark.parametrize("kwargs,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_training_data_is_refused_before_training(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FinetuneJob(None, config=_cfg(normalization="fixed"), **kwargs)


CONFIGS = [
    ("steps-0", dict(steps=0), "steps must be >= 1"),
    ("batch-0", dict(batch_size=0), "batch_size must be >= 1"),
    ("lr-0", dict(lr=0.0), "lr must be > 0"),
    ("precision-fp8", dict(precision="fp8"), "precision must be"),
    ("loss-l2", dict(loss="l2"), "loss must be"),
    ("val-fraction-1.5", dict(val_fraction=1.5), "val_fraction"),
    ("grad-clip-negative", dict(grad_clip=-1.0), "grad_clip"),
    ("normalization-zscore", dict(normalization="zscore"), "normalization must be"),
    ("channel-rule-other", dict(channel_rule="average"), "channel_rule"),
    ("restart-after-end", dict(restarts=[5]), "restarts must lie"),
]


@pytest.mark.parametrize("changes,match", [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_bad_training_settings(changes, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**changes)


def test_patch_size_not_a_multiple_of_the_model():
    with pytest.raises(ValueError, match="must be a multiple of"):
        FinetuneJob(None, mode="paired", inputs=_img(), targets=_img(1), config=_cfg(patch_size=15))


# ----------------------------------------------------------------- correct results


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.uint16, np.int32, np.float64])
def test_any_real_dtype_trains(dtype):
    rng = np.random.default_rng(0)
    if dtype is np.bool_:
        a, b = rng.random((48, 48)) > 0.5, rng.random((48, 48)) > 0.5
    else:
        top = 1.0 if np.dtype(dtype).kind == "f" else np.iinfo(dtype).max
        a, b = (rng.random((2, 48, 48)) * top).astype(dtype), (rng.random((2, 48, 48)) * top).astype(dtype)
    job = FinetuneJob(None, mode="paired", inputs=a, targets=b, config=_cfg(normalization="fixed"))
    events = list(job.run())
    assert len(events) == 2 and all(np.isfinite(e.loss) for e in events)
    assert np.isfinite(job.trainer.best_psnr)


def test_nan_weights_stop_at_the_first_validation():
    import torch

    model = tiny_hinet()
    with torch.no_grad():
        model.conv_01.weight.fill_(float("nan"))
    job = FinetuneJob(model, mode="paired", inputs=_img(), targets=_img(1), config=_cfg())
    with pytest.raises(TrainingDiverged, match=r"validation PSNR is nan at step 0"):
        list(job.run())
    assert job.trainer.best_psnr is None  # nothing NaN is recorded as the best
