"""Which intensity mapping each (plane, channel group) gets, and the data sample it comes from.

The rules, applied in this order (the mapping itself is in :mod:`.intensity`):

1. ``"fixed"``: every plane and group uses the dtype range (no data read);
2. ``"percentile"`` per ``"stack"``: one mapping per group from a sample of
   up to 64 evenly spaced planes (:func:`stack_planes`);
3. ``"percentile"`` per ``"plane"``: one mapping per plane and group from a
   sample of that plane alone.

A sample is every ``step``-th row and column (:func:`sample_step`), so that
at most :data:`~.intensity.MAX_SAMPLES` values per channel are read, and is
checked for NaN/Inf. The in-memory engine and the dask path
(:mod:`.lazy`) both use these functions, so they sample the same pixels and
get the same mappings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .axes import Layout
from .intensity import MAX_SAMPLES, Mapping, check_finite, dtype_range, percentile_mapping
from .plan import RunPlan

#: Planes sampled at most for a whole-stack mapping.
MAX_SAMPLE_PLANES = 64

#: ``mappings(plane) -> one Mapping per channel group``.
PlaneMappings = Callable[[int], Sequence[Mapping]]


def stack_planes(n_planes: int) -> list[int]:
    """The planes of a whole-stack sample: up to 64, evenly spaced, first and last included."""
    return sorted({int(p) for p in np.linspace(0, n_planes - 1, min(MAX_SAMPLE_PLANES, n_planes))})


def sample_step(height: int, width: int, n_planes: int = 1) -> int:
    """Row/column stride that keeps a sample of ``n_planes`` planes under ``MAX_SAMPLES`` values."""
    return max(1, math.ceil(math.sqrt(height * width * n_planes / MAX_SAMPLES)))


def flatten_sample(parts: Sequence[np.ndarray]) -> np.ndarray:
    """(C, n) sample from (C, h, w) parts; raises ``ValueError`` on NaN/Inf."""
    sample = np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)
    check_finite(sample)
    return sample


def read_sample(image: Any, layout: Layout, planes: Sequence[int], step: int) -> np.ndarray:
    """(C, n) sample: every ``step``-th row and column of ``planes`` of ``image``."""
    return flatten_sample([layout.read(image, p, 0, layout.height, step=step) for p in planes])


def stack_sample(image: Any, layout: Layout) -> np.ndarray:
    """The whole-stack sample of rule 2."""
    planes = stack_planes(layout.n_planes)
    return read_sample(image, layout, planes, sample_step(layout.height, layout.width, len(planes)))


def group_mappings(plan: RunPlan, sample: np.ndarray) -> tuple[Mapping, ...]:
    """One percentile mapping per channel group of ``plan`` from a (C, n) sample."""
    return tuple(percentile_mapping(sample[list(g.channels)], plan.percentiles) for g in plan.groups)


def fixed_mappings(plan: RunPlan) -> tuple[Mapping, ...]:
    """The dtype-range mapping, once per group (rule 1)."""
    return (Mapping(*dtype_range(np.dtype(plan.input_dtype))),) * len(plan.groups)


def plane_mappings(
    plan: RunPlan, image: Any, layout: Layout, stack: np.ndarray | None = None
) -> PlaneMappings:
    """``mappings(plane)`` for an in-memory (numpy/zarr) ``image`` by rules 1-3.

    ``stack``: an already read :func:`stack_sample`, reused for rule 2. Rule 3
    samples a plane when first asked; the caller (:class:`.runner.TileSource`)
    keeps the mappings of the planes it still needs.
    """
    if plan.normalization == "fixed":
        fixed = fixed_mappings(plan)
        return lambda plane: fixed
    if plan.normalize_per == "stack":
        whole = group_mappings(plan, stack if stack is not None else stack_sample(image, layout))
        return lambda plane: whole
    step = sample_step(layout.height, layout.width)
    return lambda plane: group_mappings(plan, read_sample(image, layout, [plane], step))
