"""Run napari-hinet's main job on bundled sample data and write a before/after PNG.

Called by ``scripts/demo.sh`` (README's first command) inside ``.venv``:

1. writes the bundled noisy fluorescence sample (and its clean twin) as TIFFs;
2. runs the command line ``napari-hinet restore noisy.tif -o restored.tif --task denoise``
   (or ``--model`` with a small RANDOMLY INITIALISED model when the package has no
   trained denoising weights yet; this is printed in capitals);
3. writes ``before_after.png`` (noisy | restored | clean) and prints PSNR numbers.

Headless: needs no display. Usage: ``python scripts/demo.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

BANNER_LINES = [
    "NO TRAINED DENOISING WEIGHTS ARE INSTALLED: this demo uses a small,",
    "RANDOMLY INITIALISED HINet ({what}).",
    "The output shows that the pipeline runs end to end, NOT restoration quality.",
    'Put a trained model in place (README, "Models") and run the demo again.',
]


def banner(what: str) -> str:
    lines = [line.format(what=what) for line in BANNER_LINES]
    width = max(len(line) for line in lines)
    rule = "*" * (width + 6)
    return "\n".join([rule, *[f"*  {line:<{width}}  *" for line in lines], rule])


def to_display(img: np.ndarray, low: float, high: float) -> np.ndarray:
    """uint8 view of ``img`` with the intensity window [low, high]."""
    scaled = (img.astype(np.float64) - low) / max(high - low, 1e-12)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float) -> float:
    mse = np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(data_range**2 / mse)


def random_demo_model(folder: Path) -> Path:
    """Save a small randomly initialised single-channel HINet and return its path."""
    import torch

    from napari_hinet import HINet, save_model

    torch.manual_seed(0)
    model = HINet(in_chn=1, wf=16, depth=3, hin_position_left=0, hin_position_right=2)
    n_params = sum(p.numel() for p in model.parameters())
    print(banner(f"1 channel, wf=16, depth=3, {n_params / 1e6:.2f} M parameters"))
    return save_model(
        model,
        folder / "random-untrained-demo.safetensors",
        name="random-untrained-demo",
        task="denoise",
        channels="gray",
        normalization="percentile",
        patch_size=128,
        description="RANDOM WEIGHTS, untrained: shows the pipeline only",
        licence="MIT",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "demo_output", help="output folder (default: demo_output/)"
    )
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    import tifffile

    from napari_hinet._sample_data import noisy_fluorescence
    from napari_hinet.registry import default_model

    (clean, _, _), (noisy, _, _) = noisy_fluorescence()
    noisy_path, clean_path, restored_path = out / "noisy.tif", out / "clean.tif", out / "restored.tif"
    tifffile.imwrite(noisy_path, noisy)
    tifffile.imwrite(clean_path, clean)
    print(f"sample: noisy fluorescence nuclei {noisy.shape} {noisy.dtype} -> {noisy_path}")

    try:
        name = default_model("denoise")
        model_args = ["--task", "denoise"]
        print(f"model: {name} (the default denoising model)")
        random_weights = False
    except LookupError:
        path = random_demo_model(out)
        model_args = ["--model", str(path)]
        random_weights = True

    cli = Path(sys.executable).with_name("napari-hinet")
    command = [str(cli), "restore", str(noisy_path), "-o", str(restored_path), *model_args, "--overwrite"]
    print("running:", shlex.join(command))
    t0 = time.perf_counter()
    # passive OpenMP waiting: on a busy machine busy-waiting threads made this 3x slower
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    if subprocess.run(command, env=env).returncode != 0:
        print(f"ERROR: the restore command failed (see above); inputs are in {out}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - t0

    restored = tifffile.imread(restored_path)
    if restored.shape != noisy.shape:
        raise SystemExit(f"restored image has shape {restored.shape}, expected {noisy.shape}")
    low, high = np.percentile(clean, [0.5, 99.8])
    gap = np.full((clean.shape[0], 8), 255, np.uint8)
    panel = np.concatenate(
        [
            to_display(noisy, low, high),
            gap,
            to_display(restored, low, high),
            gap,
            to_display(clean, low, high),
        ],
        axis=1,
    )
    png = out / "before_after.png"
    import imageio.v3 as iio

    iio.imwrite(png, panel)

    data_range = float(clean.max() - clean.min())
    print()
    print(f"restore took {seconds:.1f} s (command line, including start-up)")
    print(
        f"PSNR vs clean: noisy {psnr(clean, noisy, data_range):.2f} dB, restored {psnr(clean, restored, data_range):.2f} dB"
    )
    print(f"before/after (left: noisy, middle: restored, right: clean): {png}")
    print(f"restored image: {restored_path}")
    if random_weights:
        print("REMINDER: the model had RANDOM weights; the 'restored' image is not a real result.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
