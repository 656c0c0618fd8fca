"""Training and fine-tuning of HINet models (GUI-free).

* :func:`finetune` / :class:`FinetuneJob` -- the user-facing API (four data modes);
* :mod:`~napari_hinet.training.selfsupervised` -- losses for noisy-only data;
* :class:`Trainer` -- the training loop (checkpoints, resume, NaN guard);
* :class:`BudgetPlanner` -- one warm-up + cosine cycle fitted to a wall-clock budget;
* :class:`Degradation` -- random synthetic degradations for the ``synthetic`` mode;
* :mod:`~napari_hinet.training.splits` -- the held-out images of the bundled models.
"""

from .budget import BudgetPlanner, fit_steps, refit_schedule
from .datasets import Degradation
from .engine import StepEvent, TrainConfig, Trainer, TrainingDiverged, lr_at
from .finetune import FinetuneConfig, FinetuneJob, FinetuneResult, finetune, load_images

__all__ = [
    "BudgetPlanner",
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
