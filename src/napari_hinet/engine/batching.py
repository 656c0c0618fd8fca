"""BatchPolicy: how many tiles go into one forward, and what an out-of-memory error changes.

The rules, in order:

1. a requested ``batch_size`` is used as is;
2. otherwise on the CPU (and MPS): enough tiles for :data:`CPU_BATCH_WORK` per
   forward (tile pixels times the model's
   :attr:`~napari_hinet.metadata.ModelMetadata.work_per_pixel`, taken as at
   least 1 so that narrow models do not get larger batches, and memory, than a
   ``wf=16`` one), at most :data:`MAX_BATCH`, and at most an eighth of the run's
   tiles (rounded up), so that progress and Cancel act at least 8 times a run;
   then, when that is more than the CPU threads, rounded down to a multiple of
   them: OpenVINO splits a batch between one-thread streams (rule 4 of
   :mod:`.openvino_backend`), and 7 tiles on two streams run as 4 + 3, the
   second stream idle for a tile's time. Measured on 2 cores with 192-pixel
   tiles (``benchmarks/bench_batch_split.py``): ``hinet-deblur-photo`` on a
   1024x1024 photo 1.20 s with 6 per forward against 1.47 s with 7, and
   ``hinet-denoise-fluo`` on a 2048x2048 plane 4.97 against 5.80 s;
3. otherwise on CUDA: the first forward runs one tile and measures it
   (:meth:`.predictor.Predictor.probe`); the batch is sized from the free memory
   (at most :data:`MAX_BATCH`);
4. an out-of-memory error halves the batch (for this forward and the rest of
   the run) and retries both halves; with one tile per batch it raises
   :class:`TileTooLarge`, and the caller decides whether smaller tiles are
   possible (:meth:`.plan.RunPlan.with_smaller_tiles`).

A policy belongs to one run (or one dask block) and changes only its own
``size``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .devices import is_out_of_memory
from .predictor import Predictor

#: Default CPU batch: enough tiles for about this much work per forward (pixels of a wf=16
#: network; a wf=64 one does 16x the work per pixel). One 256x256 tile of a wf=64 HINet, or 16
#: tiles of 128 pixels of the bundled models: measured on 2 cores, 16 such tiles per forward
#: restored a 2048x2048 image in 5.9-6.1 s against 6.4-6.8 s with 4 (per-call overhead).
CPU_BATCH_WORK = 16 * 128 * 128
#: At most this many tiles per forward on any device.
MAX_BATCH = 64


class TileTooLarge(Exception):  # noqa: N818 (a condition, not an error for the user)
    """One tile does not fit the device memory (rule 4); the caller may retry with smaller tiles."""


class BatchPolicy:
    """Batch size of one run by rules 1-4.

    Args:
        predictor: the predictor the batches go to.
        requested: ``batch_size`` of the settings (``None``: rules 2-3).
        tile_pixels: pixels of one tile (rule 2).
        total: tiles in the run (rule 2; also the forwards estimate for compiling).
        probe: allow rule 3 (the dask path passes False: its blocks run one tile per forward on CUDA).

    Attributes:
        size: the current batch size (rules 1-4 change it; nothing else does).
    """

    def __init__(
        self, predictor: Predictor, requested: int | None, tile_pixels: int, total: int, *, probe: bool = True
    ) -> None:
        self.predictor = predictor
        cuda = predictor.device.type == "cuda"
        if requested is not None:
            self.size = requested
        elif cuda:
            self.size = 1
        else:
            work = max(1, tile_pixels) * max(1.0, predictor.info.work_per_pixel)
            size = max(1, min(MAX_BATCH, int(CPU_BATCH_WORK // work), -(-total // 8)))
            threads = torch.get_num_threads()
            self.size = size - size % threads if size > threads else size
        self._probe = cuda and requested is None and probe
        self.expected_forwards = total // max(1, self.size)

    @property
    def next_size(self) -> int:
        """Tiles the next batch should hold (1 while rule 3 is still to be applied)."""
        return 1 if self._probe else self.size

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Forward ``batch`` (B, C, h, w) float32 by rules 3-4; returns (B, C, h, w) float32."""
        if self._probe:
            self._probe = False
            result, fits = self.predictor.probe(batch, expected_forwards=self.expected_forwards)
            if fits is not None:
                self.size = max(1, min(MAX_BATCH, fits))
            return result
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.predictor.forward(batch, expected_forwards=self.expected_forwards)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            n = batch.shape[0]
            if n == 1:
                raise TileTooLarge from error
            half = max(1, n // 2)
            self.size = min(self.size, half)
            warnings.warn(
                f"Out of memory with {n} tiles per batch on {self.predictor.device}; retrying with {half}.",
                stacklevel=4,
            )
            return np.concatenate([self._run(batch[:half]), self._run(batch[half:])])
