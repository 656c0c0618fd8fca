"""Export trained weights in the package format (safetensors + metadata header)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..engine.devices import cpu_name

__all__ = ["export_model", "hardware_summary"]


def hardware_summary(cfg) -> str:
    """One line: device, CPU/GPU name, threads, torch version."""
    if str(cfg.device).startswith("cuda") and torch.cuda.is_available():
        dev = torch.cuda.get_device_name(torch.device(cfg.device))
    else:
        dev = f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}"
    return f"{cfg.device}: {dev}; torch {torch.__version__}"


def export_model(
    trainer,
    path: str | os.PathLike,
    *,
    name: str,
    task: str,
    channels: str,
    normalization: str,
    data: dict,
    split: dict | None = None,
    recipe: dict | None = None,
    extra_metrics: dict | None = None,
    extra_training: dict | None = None,
    statistics: str | None = None,
    licence: str = "MIT (weights); training images under their own licences, see docs/models.md",
    half: bool = True,
) -> Path:
    """Save ``trainer``'s best-by-validation model with full metadata via ``save_model``.

    ``half=True`` stores fp16 tensors (the loader casts back to float32).
    ``statistics``: the HIN statistics the engine should use with ``stats="auto"``
    (``"global"`` or ``"local"``, :mod:`napari_hinet.model.tlc`); ``None`` leaves
    it out (global).
    """
    from napari_hinet import __version__
    from napari_hinet.checkpoints import save_model

    model = trainer.best_model()
    cfg = trainer.cfg
    training = {
        "data": data,
        "split": split or {},
        "recipe": recipe or {},
        "steps": trainer.step,
        "steps_planned": cfg.steps,
        "seed": cfg.seed,
        "wall_time_s": round(trainer.wall_time_s, 1),
        "hardware": hardware_summary(cfg),
        "precision": trainer.precision,
        "package_version": __version__,
        **(extra_training or {}),
    }
    metrics = {
        "val_psnr": trainer.best_psnr,
        "val_psnr_start": trainer.start_psnr,
        **(extra_metrics or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(
        model,
        path,
        name=name,
        task=task,
        config=dict(model.config),
        patch_size=cfg.patch_size,
        input_range=[0.0, 1.0],
        normalization=normalization,
        channels=channels,
        training=training,
        metrics=metrics,
        licence=licence,
        dtype=torch.float16 if half else None,
        **({"statistics": statistics} if statistics else {}),
    )
    return path
