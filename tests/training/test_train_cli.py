"""`napari-hinet train` (training/cli.py): flags, YAML config, errors, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_hinet.training.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"


def _write_scenes(folder: Path, n=3, size=64, seed=0):
    import tifffile
    from scipy import ndimage

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        im = ndimage.gaussian_filter(rng.random((size, size)), 2)
        im = (im - im.min()) / (im.max() - im.min())
        tifffile.imwrite(folder / f"s{i}.tif", (im * 255).astype(np.uint8))
    return folder


TINY = [
    "--wf",
    "8",
    "--depth",
    "3",
    "--patch-size",
    "16",
    "--batch-size",
    "2",
    "--precision",
    "fp32",
    "--num-threads",
    "1",
    "--val-count",
    "2",
    "--no-progress",
]


def test_cli_trains_with_yaml_and_flags(tmp_path, tmp_models_dir, capsys):
    clean = _write_scenes(tmp_path / "clean")
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(
        "mode: synthetic\n"
        f"clean: {clean}\n"
        "degradation: {kind: gaussian, sigma_255: [20, 30]}\n"
        "train: {steps: 50, val_every: 2, checkpoint_every: 2, lr: 0.001, warmup_steps: 1}\n"
    )
    rc = main(
        [
            "train",
            "--config",
            str(cfg),
            "--steps",
            "4",
            "--name",
            "cli-model",
            "--run-dir",
            str(tmp_path / "run"),
            *TINY,
        ]
    )
    assert rc == 0
    out = capsys.readouterr()
    assert "saved" in out.out and "validation PSNR" in out.out
    assert (tmp_models_dir / "cli-model.safetensors").exists()
    log = (tmp_path / "run" / "train.log").read_text()
    assert "step 4 val_psnr" in log  # the flag (4 steps) overrode the YAML (50)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["step"] == 4


def test_cli_time_budget_and_labelled_validation(tmp_path, tmp_models_dir, capsys):
    noisy = _write_scenes(tmp_path / "noisy")
    run = tmp_path / "run"
    rc = main(
        [
            "train",
            "--mode",
            "self_supervised",
            "--inputs",
            str(noisy),
            "--time-budget",
            "3",
            "--ssl-method",
            "blind_spot",
            "--name",
            "budget-cli",
            "--run-dir",
            str(run),
            *TINY,
        ]
    )
    assert rc == 0
    out = capsys.readouterr()
    assert "validation PSNR is measured against: noisy view (neighbour sub-sample)" in out.err
    assert "(time budget 3 s)" in out.out and "(against: noisy view (neighbour sub-sample))" in out.out
    plan = json.loads((run / "budget.json").read_text())
    done = torch.load(run / "last.pt", weights_only=True)["step"]
    assert plan["fitted_at_step"] == 6 and done >= 7
    assert f"saved {tmp_models_dir / 'budget-cli.safetensors'}: {done} steps" in out.out
    assert (
        main(["train", "--mode", "self_supervised", "--inputs", str(noisy), "--time-budget", "-1", *TINY])
        == 2
    )
    assert "time_budget_s must be > 0" in capsys.readouterr().err


def test_cli_errors_are_clear(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        main(["train", "--mode", "synthetic", "--clean", str(empty), "--degradation", "gaussian", *TINY]) == 2
    )
    assert "holds no images" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {stepz: 3}\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "unknown training settings: stepz" in capsys.readouterr().err


def _run_cli(run_dir: Path, clean: Path, env: dict, steps: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "napari_hinet.training.cli",
        "train",
        "--mode",
        "synthetic",
        "--clean",
        str(clean),
        "--degradation",
        "gaussian",
        "--steps",
        str(steps),
        "--checkpoint-every",
        "5",
        "--val-every",
        "10",
        "--lr",
        "0.001",
        "--run-dir",
        str(run_dir),
        "--name",
        run_dir.name,
        *TINY,
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    clean = _write_scenes(tmp_path / "clean", size=96)
    env = {**os.environ, "PYTHONPATH": str(SRC), "HINET_MODELS_DIR": str(tmp_path / "models")}
    steps = 60
    ref = _run_cli(tmp_path / "ref", clean, env, steps)
    assert ref.wait(timeout=600) == 0, ref.stdout.read().decode()

    victim = _run_cli(tmp_path / "killed", clean, env, steps)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.monotonic() + 300
    killed_at = None
    while time.monotonic() < deadline and victim.poll() is None:
        if last.exists():
            step = torch.load(last, weights_only=True)["step"]
            if step >= 10:
                victim.send_signal(signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.05)
    victim.wait(timeout=60)
    assert killed_at is not None and victim.returncode == -signal.SIGKILL, (
        "the run ended before it could be killed"
    )
    state = torch.load(last, weights_only=True)
    assert state["step"] < steps

    resumed = _run_cli(tmp_path / "killed", clean, env, steps)
    out = resumed.communicate(timeout=600)[0].decode()
    assert resumed.returncode == 0, out
    assert "resumed at step" in out

    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["step"] == b["step"] == steps
    assert a["history"]["losses"] == b["history"]["losses"]  # step for step
    assert a["history"]["val_psnr"] == b["history"]["val_psnr"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
