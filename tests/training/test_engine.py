"""Trainer: checkpoints, in-process resume, best-by-validation, NaN guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_hinet.model import HINet
from napari_hinet.training.datasets import Degradation, SyntheticSource, fixed_set
from napari_hinet.training.engine import TrainConfig, Trainer, TrainingDiverged


def _images(n=2, size=48, seed=0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        im = ndimage.gaussian_filter(rng.random((size, size, 1)), sigma=(2, 2, 0))
        out.append(((im - im.min()) / (im.max() - im.min())).astype(np.float32))
    return out


def _trainer(run_dir, steps=8, precision="fp32", **kw):
    torch.manual_seed(0)
    src = SyntheticSource(_images(), Degradation("gaussian", sigma_255=(25, 25)))
    val = fixed_set(
        SyntheticSource(_images(1, seed=1), Degradation("gaussian", sigma_255=(25, 25))), 0, 4, 32
    )
    cfg = TrainConfig(
        steps=steps,
        batch_size=2,
        patch_size=16,
        lr=1e-3,
        warmup_steps=2,
        val_every=4,
        checkpoint_every=3,
        precision=precision,
        num_threads=1,
        **kw,
    )
    return Trainer(HINet(1, wf=8, depth=3), src, val, cfg, run_dir)


@pytest.mark.slow
def test_resume_repeats_an_uninterrupted_run_exactly(tmp_path):
    full = _trainer(tmp_path / "full")
    full_events = list(full.run())
    part = _trainer(tmp_path / "part")
    gen = part.run()
    for _ in range(5):  # steps 1..5; the last checkpoint is at step 3
        next(gen)
    gen.close()
    resumed = _trainer(tmp_path / "part")
    assert resumed.try_resume() and resumed.step == 3
    rest = list(resumed.run())
    assert [e.step for e in rest] == [4, 5, 6, 7, 8]
    assert [e.loss for e in rest] == [e.loss for e in full_events[3:]]
    assert resumed.history.losses == full.history.losses
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert (tmp_path / "part" / "train.log").read_text().count("resumed") == 1


def test_best_weights_and_files(tmp_path):
    tr = _trainer(tmp_path / "r")
    events = list(tr.run())
    assert events[-1].step == 8 and events[-1].checkpoint
    assert tr.start_psnr is not None and tr.best_psnr >= max(tr.history.val_psnr) - 1e-9
    best = torch.load(tmp_path / "r" / "best.pt", weights_only=True)
    assert best["psnr"] == pytest.approx(tr.best_psnr)
    assert not list((tmp_path / "r").glob("*.tmp"))  # atomic writes left no partial files
    model = tr.best_model()
    for k, v in best["model"].items():
        assert torch.equal(model.state_dict()[k], v)


def test_should_stop_checkpoints_and_generator_can_continue(tmp_path):
    tr = _trainer(tmp_path / "s")
    stop = {"flag": False}
    events = []
    for ev in tr.run(lambda: stop["flag"]):
        events.append(ev)
        if ev.step == 2:
            stop["flag"] = True
    assert tr.step == 2
    assert torch.load(tmp_path / "s" / "last.pt", weights_only=True)["step"] == 2
    stop["flag"] = False
    assert [e.step for e in tr.run()] == list(range(3, 9))


def test_nan_loss_stops_and_keeps_last_good_weights(tmp_path):
    tr = _trainer(tmp_path / "n", steps=10)
    gen = tr.run()
    for _ in range(2):
        next(gen)
    good = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.source.images[0][:] = np.nan  # corrupt the data
    tr.source.images[1][:] = np.nan
    with pytest.raises(TrainingDiverged, match="NaN|nan") as info:
        list(gen)
    assert "learning rate" in str(info.value)
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, good[k]), k
        assert torch.isfinite(v).all()
    saved = torch.load(tmp_path / "n" / "last.pt", weights_only=True)
    assert saved["step"] == 2
    for k, v in saved["model"].items():
        assert torch.equal(v, good[k])


def test_inf_gradient_is_caught(tmp_path):
    tr = _trainer(tmp_path / "g", steps=4)
    with torch.no_grad():
        tr.model.last.weight.fill_(1e30)  # finite loss is impossible -> inf/nan caught either way
    with pytest.raises(TrainingDiverged):
        list(tr.run())


def test_bf16_autocast_on_cpu_trains(tmp_path):
    tr = _trainer(None, steps=4, precision="bf16")
    assert tr.precision == "bf16"
    events = list(tr.run())
    assert all(np.isfinite(e.loss) for e in events)


def test_fp16_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA"):
        _trainer(None, precision="fp16")


def test_resume_into_a_different_model_is_a_clear_error(tmp_path):
    tr = _trainer(tmp_path / "x", steps=3)
    list(tr.run())
    other = Trainer(HINet(1, wf=4, depth=3), tr.source, tr.val, tr.cfg, tmp_path / "x")
    with pytest.raises(ValueError, match="different model"):
        other.try_resume()


def test_channels_last_trains_like_contiguous(tmp_path):
    """channels_last changes the memory layout only: same losses (fp32) and a plain exported model."""
    plain = [e.loss for e in _trainer(None, steps=3).run()]
    tr = _trainer(None, steps=3, channels_last=True)
    last = [e.loss for e in tr.run()]
    np.testing.assert_allclose(last, plain, rtol=1e-4)
    assert tr.best_model().conv_01.weight.is_contiguous()


def test_data_workers_train_on_the_same_batches(tmp_path):
    """Batches drawn ahead in worker processes are those of a run without workers: same losses."""
    plain = [e.loss for e in _trainer(None, steps=4).run()]
    tr = _trainer(None, steps=4, data_workers=2)
    assert [e.loss for e in tr.run()] == plain
    assert tr._prefetch is None  # the workers are stopped when the run ends
    with pytest.raises(ValueError, match="data_workers"):
        TrainConfig(data_workers=-1)


def test_exported_statistics_choice_drives_the_engine(tmp_path):
    # A bundled config's measured choice (inference.statistics) reaches the weights' metadata,
    # and stats="auto" follows it when the model is loaded back.
    from napari_hinet import Restorer, load_model
    from napari_hinet.training.export import export_model

    tr = _trainer(tmp_path / "r", steps=2)
    list(tr.run())
    kwargs = {"task": "denoise", "channels": "gray", "normalization": "percentile", "data": {}}
    export_model(tr, tmp_path / "local.safetensors", name="local", statistics="local", **kwargs)
    export_model(tr, tmp_path / "plain.safetensors", name="plain", **kwargs)
    local, plain = load_model(tmp_path / "local.safetensors"), load_model(tmp_path / "plain.safetensors")
    assert local.metadata["statistics"] == "local" and "statistics" not in plain.metadata
    assert Restorer(local, device="cpu", backend="torch").stats == "local"
    assert Restorer(plain, device="cpu", backend="torch").stats == "global"
