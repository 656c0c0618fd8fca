"""Batches drawn ahead in worker processes: the same as drawn in place, in any order."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hinet.training.datasets import Degradation, SyntheticSource, make_batch
from napari_hinet.training.prefetch import BatchPrefetcher


def _source() -> SyntheticSource:
    img = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    return SyntheticSource([img], Degradation("gaussian", sigma_255=(5, 50)))


def test_prefetched_batches_are_the_batches_of_their_steps():
    src = _source()
    with BatchPrefetcher(src, seed=7, batch_size=3, patch=16, workers=2, depth=3) as pre:
        # in order, then a jump ahead (skipped steps are dropped), then a step never queued
        for step in (0, 1, 2, 5, 9):
            x, y = pre.get(step)
            ex, ey = make_batch(src, np.random.default_rng([7, step]), 3, 16)
            np.testing.assert_array_equal(x, ex)
            np.testing.assert_array_equal(y, ey)
            assert x.shape == (3, 3, 16, 16) and x.dtype == np.float32
        assert min(pre._queued) > 9  # nothing older than the last step asked for is kept


def test_prefetcher_needs_a_worker():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        BatchPrefetcher(_source(), seed=0, batch_size=1, patch=8, workers=0)
