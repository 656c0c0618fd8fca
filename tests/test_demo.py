"""README's first command, minus the set-up: scripts/demo.py restores the sample end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_writes_before_after_png(tmp_path: Path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    import imageio.v3 as iio
    import tifffile

    noisy = tifffile.imread(out / "noisy.tif")
    restored = tifffile.imread(out / "restored.tif")
    assert restored.shape == noisy.shape and restored.dtype == noisy.dtype
    panel = iio.imread(out / "before_after.png")
    assert panel.shape == (noisy.shape[0], 3 * noisy.shape[1] + 16)
    assert np.ptp(panel) > 0
    assert str(out / "before_after.png") in result.stdout
    if "random-untrained-demo" in result.stdout:  # no trained weights: it must say so
        assert "RANDOMLY INITIALISED" in result.stdout
