"""Fixtures of the reliability catalogue: tiny models and files, built once per session.

Every case of the catalogue asserts one exact outcome: our exception type and a
message check, an exit code and message, or a correct result. The models are
tiny (``wf=4``, ``depth=2``: 5 k parameters) and the images a few dozen pixels,
so the whole catalogue runs in the fast tier.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

TINY = {"in_chn": 1, "wf": 4, "depth": 2}


def tiny_hinet(in_chn: int = 1, seed: int = 0):
    """A tiny random HINet (float32, eval mode)."""
    import torch

    from napari_hinet.model import HINet

    torch.manual_seed(seed)
    return HINet(**dict(TINY, in_chn=in_chn)).eval()


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    """Valid tiny model files: ``safetensors`` (ours, gray), ``rgb`` (ours, RGB), ``pth`` and ``legacy_pth``."""
    import torch

    from napari_hinet.checkpoints import save_model

    folder = tmp_path_factory.mktemp("tiny-model-files")
    common = {"task": "denoise", "patch_size": 32, "normalization": "fixed", "description": "tiny"}
    gray = tiny_hinet(1)
    files = {
        "safetensors": save_model(gray, folder / "tiny.safetensors", channels="gray", **common),
        "rgb": save_model(tiny_hinet(3), folder / "tiny-rgb.safetensors", channels="rgb", **common),
    }
    torch.save({"params": gray.state_dict()}, folder / "tiny.pth")
    torch.save(
        {"params": gray.state_dict()}, folder / "tiny-legacy.pth", _use_new_zipfile_serialization=False
    )
    files["pth"] = folder / "tiny.pth"
    files["legacy_pth"] = folder / "tiny-legacy.pth"
    return files


def write_safetensors(path: Path, metadata_text: str | None, tensors=None, extra: dict | None = None) -> Path:
    """A ``.safetensors`` file with the tiny model's tensors and ``metadata_text`` under our key."""
    from safetensors.torch import save_file

    from napari_hinet.registry import METADATA_KEY

    if tensors is None:
        tensors = {k: v.contiguous() for k, v in tiny_hinet().state_dict().items()}
    meta = dict(extra or {})
    if metadata_text is not None:
        meta[METADATA_KEY] = metadata_text
    save_file(tensors, str(path), metadata=meta or None)
    return path


def our_metadata(**changes) -> str:
    """JSON metadata like save_model writes for the tiny model, with ``changes`` (None deletes a key)."""
    from napari_hinet.checkpoints import expected_shapes, weights_sha256

    model = tiny_hinet()
    sd = model.state_dict()
    meta = {
        "name": "tiny",
        "task": "denoise",
        "config": dict(model.config),
        "patch_size": 32,
        "normalization": "fixed",
        "channels": "gray",
        "sha256": weights_sha256(sd, list(expected_shapes(model.config))),
    }
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    return json.dumps(meta)


def tiny_config(**changes):
    """A FinetuneConfig for the tiny model: 2 steps of 2 patches of 16 px, validated and saved every step."""
    from napari_hinet.training.finetune import FinetuneConfig

    base = dict(
        steps=2,
        batch_size=2,
        patch_size=16,
        val_count=2,
        val_every=1,
        checkpoint_every=1,
        warmup_steps=1,
        model={"wf": 4, "depth": 2},
        resume=False,
    )
    return FinetuneConfig(**{**base, **changes})


def signal_cli(argv: list[str], sig: int, ready, timeout: float = 180.0) -> tuple[int, str]:
    """``napari-hinet ARGV`` in a child process, sent ``sig`` once ``ready()`` is true.

    A real process, as a user's ``kill`` or Ctrl-C reaches it: sending the signal
    to the test process itself races with the handlers of torch, OpenMP and
    OpenVINO threads (a segmentation fault was seen in CI). Returns (exit code,
    stdout + stderr).
    """
    import signal as _signal
    import subprocess
    import sys
    import time

    code = "import sys; from napari_hinet.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.communicate()[0] if proc.poll() is not None else ""
                raise AssertionError(f"the command ended (or hung) before the signal was sent: {out}")
            time.sleep(0.05)
        proc.send_signal(_signal.Signals(sig))
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out


def run_cli(*argv: str) -> tuple[int, str]:
    """``napari-hinet ARGV`` in this process; returns (exit code, stdout + stderr)."""
    from napari_hinet import cli

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = cli.main(list(argv))
    return code, buf.getvalue()
