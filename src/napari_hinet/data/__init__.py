"""Data helpers: synthetic degradation models used for training and evaluation."""

from .degrade import (
    blur,
    gaussian,
    make_rng,
    motion_blur,
    motion_kernel,
    poisson_gaussian,
    rain,
    rain_layer,
)

__all__ = [
    "blur",
    "gaussian",
    "make_rng",
    "motion_blur",
    "motion_kernel",
    "poisson_gaussian",
    "rain",
    "rain_layer",
]
