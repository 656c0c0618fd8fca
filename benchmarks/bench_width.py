"""Inference cost of wider bundled models: the committed model widened to ``wf`` 24 and 32.

A wider model (``training/widen.py``) is one way to close the photo sigma-15 and the
textured-fluorescence misses (issue 12); this measures what it costs a user. Each row
is the committed model (``--model``) widened to ``wf`` (the same output: only the
cost is measured here; quality comes from ``benchmarks/quality.py --model`` on a trained
wide model), restored through the engine's default CPU path
(``Restorer(model).restore``, tiles and precision as shipped) on one noisy
``--size`` x ``--size`` RGB photo.

Columns: ``wf``, parameters, the weights file size (float16 safetensors, as bundled),
median / min seconds of ``--repeats`` restores after one warm-up, seconds per
megapixel and the ratio to the committed width; then the training step
(``Trainer.train_step`` of the bundled recipe: batch 8 of 128-px patches, bf16
autocast, channels_last, L1 on both stages, Adam; batch drawing included), median
of ``--repeats`` steps after 2, and its ratio.

Usage:
    python benchmarks/bench_width.py [--model hinet-denoise-photo] [--widths 16,24,32]
        [--size 512] [--repeats 5] [--threads 2] [--json PATH]

Pause training while it runs (the machine has 2 cores).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
from _engine_common import add_noise, build_model, clean_image, load_average, print_table, timed, write_json

from napari_hinet import Restorer
from napari_hinet.checkpoints import save_model
from napari_hinet.training import Degradation, TrainConfig, Trainer
from napari_hinet.training.datasets import SyntheticSource
from napari_hinet.training.widen import widen


def _trainer(model: torch.nn.Module, threads: int) -> Trainer:
    """A Trainer with the bundled photo recipe on one synthetic-noise photo (no files)."""
    image = clean_image((512, 512)).astype(np.float32) / 255.0
    source = SyntheticSource([image], Degradation("gaussian", sigma_255=(0, 50)))
    cfg = TrainConfig(
        steps=10**6,
        batch_size=8,
        patch_size=128,
        loss="l1",
        precision="bf16",
        channels_last=True,
        num_threads=threads,
    )
    return Trainer(copy.deepcopy(model).train(), source, None, cfg, None)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="hinet-denoise-photo", help="registry name or weights file")
    parser.add_argument("--widths", default="16,24,32", help="comma-separated wf values (>= the model's)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="output path (default benchmarks/results/width.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = build_model(args.model)
    noisy = add_noise(clean_image((args.size, args.size)), sigma=25)
    megapixels = args.size * args.size / 1e6
    rows = []
    for wf in (int(w) for w in args.widths.split(",")):
        model = base if wf == base.config["wf"] else widen(base, wf).eval()
        model.metadata = dict(base.metadata)
        with tempfile.TemporaryDirectory() as tmp:
            size_mb = save_model(model, Path(tmp) / "m.safetensors", dtype=torch.float16).stat().st_size / 1e6
        restorer = Restorer(model, device="cpu")
        row = {
            "wf": wf,
            "params": sum(p.numel() for p in model.parameters()),
            "file_mb": round(size_mb, 2),
            "precision": str(restorer.dtype).replace("torch.", ""),
            **timed(lambda r=restorer: r.restore(noisy), args.repeats),
        }
        row["s_per_mpix"] = round(row["median_s"] / megapixels, 3)
        del restorer
        trainer = _trainer(model, args.threads)
        row["train_step_s"] = timed(trainer.train_step, args.repeats, warmup=2)["median_s"]
        rows.append(row)
    for row in rows:
        row["cost_vs_first"] = round(row["median_s"] / rows[0]["median_s"], 2)
        row["train_vs_first"] = round(row["train_step_s"] / rows[0]["train_step_s"], 2)

    print(
        f"\n{args.model} widened, engine default CPU path, {args.size}x{args.size} RGB, "
        f"{torch.get_num_threads()} threads; load now {load_average()}"
    )
    print_table(
        rows,
        [
            "wf",
            "params",
            "file_mb",
            "precision",
            "median_s",
            "min_s",
            "s_per_mpix",
            "cost_vs_first",
            "train_step_s",
            "train_vs_first",
            "load_after",
        ],
    )
    write_json("width", {"model": args.model, "size": args.size, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
