"""Interrupted runs: stopping never leaves a partial output, and a damaged run state is a clear error.

A run folder's ``last.pt`` that cannot be resumed from raises RunStateError
with the file name and what to do; the CLI exits 2 with that message. SIGTERM
ends ``train`` and ``restore`` with 143, SIGINT with 130 (the exit-code table).
"""

from __future__ import annotations

import pickle
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_hinet.checkpoints import RunStateError
from napari_hinet.cli import EXIT_TERMINATED, EXIT_USAGE
from napari_hinet.training.finetune import FinetuneJob

from .conftest import run_cli, signal_cli, tiny_config, tiny_hinet


def _data(tmp: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    a, b = tmp / "noisy", tmp / "clean"
    a.mkdir(exist_ok=True)
    b.mkdir(exist_ok=True)
    for i in range(2):
        clean = rng.random((48, 48)).astype(np.float32)
        tifffile.imwrite(b / f"{i}.tif", clean)
        tifffile.imwrite(
            a / f"{i}.tif", np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
        )
    return a, b


def _cfg(run_dir: Path, **changes):
    return tiny_config(**{"normalization": "fixed", "run_dir": str(run_dir), "resume": True, **changes})


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A finished two-step run folder (last.pt, best.pt)."""
    tmp = tmp_path_factory.mktemp("good-run")
    a, b = _data(tmp)
    job = FinetuneJob(None, mode="paired", inputs=str(a), targets=str(b), config=_cfg(tmp / "run"))
    list(job.run())
    assert (tmp / "run" / "last.pt").is_file()
    return tmp


def _damage(kind: str, last: Path, tmp: Path) -> None:
    import torch

    data = last.read_bytes()
    if kind == "truncated":
        last.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        last.write_bytes(b"")
    elif kind == "random":
        last.write_bytes(bytes(range(256)) * 16)
    elif kind == "text":
        last.write_text("step: 12\n")
    elif kind == "a-folder":
        last.unlink()
        last.mkdir()
    elif kind == "malicious":
        last.write_bytes(
            pickle.dumps({"format": "napari-hinet-train-v1", "x": _Payload(tmp / "executed")}, 2)
        )
    else:
        state = torch.load(last, weights_only=True)
        if kind == "model-only":
            state = {"model": state["model"]}
        elif kind == "other-model":
            state["model"] = tiny_hinet(3).state_dict()
        elif kind == "missing-history":
            del state["history"]
        elif kind == "step-text":
            state["step"] = "twelve"
        elif kind == "bad-rng":
            state["torch_rng"] = torch.zeros(3)
        elif kind == "wrong-format":
            state["format"] = "napari-hinet-train-v0"
        torch.save(state, last)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


DAMAGE = {
    "truncated": "truncated or damaged",
    "empty": r"empty \(0 bytes\)",
    "random": "not a PyTorch checkpoint",
    "text": "not a PyTorch checkpoint",
    "a-folder": "is a folder",
    "malicious": r"Python objects other than tensors \((io|builtins)\.open\)",
    "model-only": "not a napari-hinet training checkpoint",
    "wrong-format": "not a napari-hinet training checkpoint",
    "other-model": "belongs to a different model",
    "missing-history": r"lacks or has a damaged field \(KeyError",
    "step-text": "lacks or has a damaged field",
    "bad-rng": "lacks or has a damaged field",
}


@pytest.mark.parametrize("kind,match", DAMAGE.items(), ids=DAMAGE.keys())
def test_damaged_run_state_is_a_clear_error(good_run, tmp_path, kind, match):
    run = tmp_path / "run"
    shutil.copytree(good_run / "run", run)
    _damage(kind, run / "last.pt", tmp_path)
    a, b = good_run / "noisy", good_run / "clean"
    with pytest.raises(RunStateError, match=match) as info:
        FinetuneJob(None, mode="paired", inputs=str(a), targets=str(b), config=_cfg(run, steps=4))
    text = str(info.value)
    assert "last.pt" in text and "--no-resume" in text and "weights_only" not in text
    assert not (tmp_path / "executed").exists()


@pytest.mark.parametrize("kind", ["truncated", "malicious", "other-model"])
def test_cli_train_damaged_run_state_exits_2(good_run, tmp_path, kind):
    run = tmp_path / "run"
    shutil.copytree(good_run / "run", run)
    _damage(kind, run / "last.pt", tmp_path)
    code, text = run_cli(*_train_argv(good_run, run, steps=4))
    assert code == EXIT_USAGE, text
    assert "Cannot resume training" in text and "Traceback" not in text


def test_cli_train_no_resume_starts_over(good_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(good_run / "run", run)
    _damage("truncated", run / "last.pt", tmp_path)
    code, text = run_cli(
        *_train_argv(good_run, run, steps=1), "--no-resume", "--output", str(tmp_path / "m.safetensors")
    )
    assert code == 0, text
    assert (tmp_path / "m.safetensors").is_file()


def _train_argv(data: Path, run: Path, steps: int) -> list[str]:
    return [
        "train",
        "--mode",
        "paired",
        "--inputs",
        str(data / "noisy"),
        "--targets",
        str(data / "clean"),
        "--steps",
        str(steps),
        "--batch-size",
        "2",
        "--patch-size",
        "16",
        "--val-count",
        "2",
        "--val-every",
        "1",
        "--checkpoint-every",
        "1",
        "--warmup-steps",
        "1",
        "--wf",
        "4",
        "--depth",
        "2",
        "--normalization",
        "fixed",
        "--run-dir",
        str(run),
        "--no-progress",
    ]


@pytest.mark.parametrize(
    "sig,code", [(signal.SIGTERM, EXIT_TERMINATED), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_cli_train_signal_exit_code_and_checkpoint(good_run, tmp_path, sig, code):
    """The signal arrives during training; the state is saved and the exit code follows the table."""
    run = tmp_path / "run"
    argv = [*_train_argv(good_run, run, steps=100_000), "--output", str(tmp_path / "m.safetensors")]
    got, text = signal_cli(argv, sig, ready=lambda: (run / "last.pt").is_file())
    assert got == code, text
    assert (run / "last.pt").is_file() and not (tmp_path / "m.safetensors").exists()
    assert "resume with the same command" in text
    job = FinetuneJob(
        None,
        mode="paired",
        inputs=str(good_run / "noisy"),
        targets=str(good_run / "clean"),
        config=_cfg(run, steps=100_000),
    )
    assert job.resumed and job.steps_done >= 1


@pytest.mark.parametrize(
    "sig,code", [(signal.SIGTERM, EXIT_TERMINATED), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_cli_restore_signal_leaves_complete_files_only(tmp_path, tiny_files, sig, code):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        tifffile.imwrite(src / f"{i}.tif", rng.integers(0, 255, (384, 384), dtype=np.uint8))
    argv = ["restore", str(src), "-o", str(out), "--model", str(tiny_files["safetensors"]), "--tile", "32"]
    argv += ["--overlap", "0", "--no-progress"]

    def first_output_written() -> bool:  # the signal arrives while the batch is running
        return out.is_dir() and any(p.suffix == ".tif" for p in out.iterdir())

    got, text = signal_cli(argv, sig, ready=first_output_written)
    assert got == code, text
    assert "rerun with --skip-existing to resume" in text
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert all(name.endswith(".tif") for name in written), written  # no partial temporaries
    for name in written:
        assert tifffile.imread(out / name).shape == (384, 384)
    again, text = run_cli(*argv, "--skip-existing")
    assert again == 0, text
    assert sorted(p.name for p in out.iterdir()) == [f"{i}.tif" for i in range(6)]
