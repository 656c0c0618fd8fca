"""Training and fine-tuning of HINet models (GUI-free).

* :func:`finetune` / :class:`FinetuneJob` -- the user-facing API (four data modes);
* :mod:`~napari_hinet.training.selfsupervised` -- losses for noisy-only data;
* :class:`Trainer` -- the training loop (checkpoints, resume, NaN guard);
* :class:`Degradation` -- random synthetic degradations for the ``synthetic`` mode;
* :mod:`~napari_hinet.training.splits` -- the held-out images of the bundled models.
"""

from .datasets import Degradation
from .engine import StepEvent, TrainConfig, Trainer, TrainingDiverged, lr_at
from .finetune import (
    FinetuneConfig,
    FinetuneJob,
    FinetuneResult,
    finetune,
    fit_steps,
    load_images,
    refit_schedule,
)

__all__ = [
    "Degradation",
    "FinetuneConfig",
    "FinetuneJob",
    "FinetuneResult",
    "StepEvent",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "finetune",
    "fit_steps",
    "load_images",
    "lr_at",
    "refit_schedule",
]
