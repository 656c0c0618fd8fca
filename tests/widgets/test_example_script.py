"""examples/denoise_layer.py runs as documented in docs/napari.md (headless, with --screenshot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.gui]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "denoise_layer.py"


def test_example_denoises_the_sample_layer_and_prints_provenance(tiny_models, tmp_path) -> None:
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs an X display (run the GUI tests under xvfb-run)")
    shot = tmp_path / "example.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "HINET_NUM_THREADS": "2"}
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--model",
            tiny_models["denoise"],
            "--device",
            "cpu",
            "--screenshot",
            str(shot),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "added 'nuclei (noisy) (HINet denoise)': (512, 512) float32" in proc.stdout
    provenance = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert provenance["model"] == tiny_models["denoise"] and provenance["task"] == "denoise"
    assert shot.is_file() and shot.stat().st_size > 10_000
