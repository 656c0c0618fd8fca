#!/usr/bin/env python
"""careamics Noise2Void for ``bench_finetune.py``; runs in careamics' own virtual environment.

careamics pins ``torchvision<=0.26`` (hence torch 2.11), which conflicts with the
project's torch 2.13, so it lives in a separate venv (``--careamics-python`` of
``bench_finetune.py``; set up as described in ``docs/finetuning.md``). That venv
holds torch 2.13.0+cpu and PyPI's torchvision 0.28.0, whose compiled ops need
CUDA torch and do not load; torchvision then fails at import because it
registers fake kernels for two of its ops unconditionally. Defining the two op
schemas first lets it import; careamics' Noise2Void never calls them.

Usage: ``python _careamics_n2v.py NOISY.npy OUT.npy SECONDS THREADS`` with a
``(S, Y, X)`` float32 stack; writes the denoised stack and ``OUT.json``
(wall times, epochs, steps).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

_ops = torch.library.Library("torchvision", "DEF")  # see the module docstring
_ops.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_ops.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def main() -> int:
    noisy_path, out_path, seconds, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    started = time.perf_counter()
    from careamics import CAREamist
    from careamics.config.factories.n2v_factory import create_advanced_n2v_config

    stack = np.load(noisy_path).astype(np.float32)
    total = int(seconds)
    config = create_advanced_n2v_config(
        experiment_name="bench_n2v",
        data_type="array",
        axes="SYX",
        patch_size=[64, 64],
        batch_size=16,
        num_epochs=10_000,  # max_time ends training
        n_val_patches=8,
        num_workers=0,
        trainer_params={
            "max_time": f"00:00:{total // 60:02d}:{total % 60:02d}",
        },
    )
    with tempfile.TemporaryDirectory() as work:
        careamist = CAREamist(config, work_dir=work, enable_progress_bar=False)
        t_train = time.perf_counter()
        careamist.train(train_data=stack)
        train_s = time.perf_counter() - t_train
        trainer = careamist.trainer
        t_pred = time.perf_counter()
        pred, _ = careamist.predict(stack, axes="SYX", data_type="array")
        pred_s = time.perf_counter() - t_pred
    # one array per input source (here one stack), or one per image
    out = np.concatenate([np.asarray(p, np.float32).reshape(-1, *stack.shape[1:]) for p in pred])
    if out.shape != stack.shape:
        raise RuntimeError(f"careamics returned {out.shape} for a {stack.shape} stack")
    np.save(out_path, out)
    Path(out_path).with_suffix(".json").write_text(
        json.dumps(
            {
                "train_s": round(train_s, 1),
                "predict_s": round(pred_s, 1),
                "total_s": round(time.perf_counter() - started, 1),
                "epochs": int(trainer.current_epoch),
                "steps": int(trainer.global_step),
                "torch": torch.__version__,
                "threads": threads,
                "patch_size": 64,
                "batch_size": 16,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
