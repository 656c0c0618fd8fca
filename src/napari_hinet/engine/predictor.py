"""Predictor: a model made ready to run, with one public call, :meth:`Predictor.forward`.

This is the engine's **backend seam**: everything that knows how the network
is executed lives here, and nothing else in :mod:`napari_hinet.engine` does.
The tile loop (:mod:`.runner`), the batch policy (:mod:`.batching`), the
in-memory engine (:mod:`.restore`) and the dask path (:mod:`.lazy`) only call

* ``forward(batch) -> out`` with ``batch`` (B, C, h, w) float32 in network
  units (any h, w >= 1) and ``out`` the same shape, float32: stage-2 output;
* ``probe(batch) -> (out, batch_size or None)``: a forward that also says how
  many tiles of this size fit (CUDA), else ``None``;
* ``device`` (a ``torch.device``), ``info`` (:class:`~napari_hinet.metadata.ModelMetadata`),
  ``in_channels``, ``size_multiple`` and ``describe()``.

Preparing a model, in this order:

1. load it (registry name, path, or a passed-in ``HINet``, which is copied);
2. resolve the device and the precision (:mod:`.devices`);
3. ``precision="auto"`` with bf16/fp16: compare one low-precision forward with
   float32 on a fixed synthetic image; below :data:`PRECISION_MIN_PSNR_DB` fall
   back to fp32 with a warning;
4. prepare the network: eval, no grad, channels_last, in-place LeakyReLU; on a
   bf16 CPU run the conv weights are cast to bf16 once;
5. compile on demand per input shape (``compile="on"``, or ``"auto"`` when a
   run has at least :data:`COMPILE_MIN_FORWARDS` forwards); a failed compile
   falls back to eager with a warning. A compiled predictor pads a smaller
   last batch to its compiled batch, so one shape is kept.

Two choices are made between steps 1 and 2:

* ``stats`` (:data:`~napari_hinet.settings.STATS`): ``"local"`` switches the
  HIN blocks to TLC local statistics (:func:`napari_hinet.model.set_statistics`,
  window = the model's ``patch_size``); ``"auto"`` follows the model's
  ``metadata["statistics"]`` and is ``"global"`` without it;
* ``backend`` (:data:`~napari_hinet.settings.BACKENDS`): ``"openvino"`` runs
  OpenVINO on the CPU (:mod:`.openvino_backend`, which does its own bf16
  self-check, so step 3 is skipped and a torch fallback runs in float32
  unless ``precision="bf16"``); any failure to convert, compile or run falls
  back to torch with a warning, for the rest of the predictor's life.
  ``"auto"`` starts OpenVINO (on the CPU, when installed) for the first run
  large enough to win back its start
  (:func:`.openvino_backend.auto_wants_openvino`), before that run reports
  its first progress (:meth:`Predictor.start_backend`); until then, and for
  small runs, torch runs.

``forward`` holds the predictor's lock, so one Predictor may be shared by the
threads of a dask scheduler (:mod:`.cache` shares one per process).
"""

from __future__ import annotations

import copy
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..metadata import ModelMetadata
from ..model import HINet
from ..model.padding import pad_to_valid, valid_size
from ..model.tlc import get_statistics, set_statistics
from ..settings import BACKENDS, COMPILE_MODES, STATS
from .devices import (
    PRECISION_MIN_PSNR_DB,
    default_threads,
    describe_device,
    free_memory,
    is_out_of_memory,
    precision_name,
    precision_probe_image,
    psnr_db,
    resolve_device,
    resolve_precision,
)
from .openvino_backend import auto_wants_openvino, resolve_backend

#: ``compile="auto"`` compiles on the CPU only for runs with at least this many forwards of one
#: tile shape; ``None`` = never (the current choice). Measured (docs/performance.md): compiling
#: saves ~12 % per forward on an idle machine but costs 10-60 s up front, and its many small
#: OpenMP regions made it ~5x slower than eager while other processes shared the cores.
COMPILE_MIN_FORWARDS: int | None = None
#: A CUDA batch fills at most this share of the free memory (measured from one tile).
CUDA_MEMORY_SHARE = 0.7


def load_network(model: str | HINet | None, task: str | None) -> tuple[HINet, bool]:
    """Step 1: ``(network, owned)``; ``owned`` is False for a passed-in module (copy before changing it)."""
    if isinstance(model, HINet):
        return model, False
    if isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a HINet, a registry name or a path; got {type(model).__name__}.")
    from ..checkpoints import load_model

    if model is None:
        from ..registry import default_model

        model = default_model(task or "denoise")
    return load_model(model), True


class Predictor:
    """A model loaded on a device, ready for :meth:`forward` (steps 1-5 of the module docstring).

    Args:
        model: registry name, file path or a :class:`~napari_hinet.HINet` (copied);
            ``None``: the default model of ``task``.
        task: ``"denoise"`` (default), ``"deblur"`` or ``"derain"``; used when ``model`` is None.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"``.
        compile: ``"auto"``, ``"on"``, ``"off"`` (step 5).
        backend: ``"auto"``, ``"torch"``, ``"openvino"`` (see the module docstring).
        stats: ``"auto"``, ``"global"``, ``"local"`` (see the module docstring).

    Attributes:
        device: the ``torch.device`` in use.
        dtype: compute dtype (``torch.float32`` means no autocast).
        metadata: the model's metadata dict; ``info`` is the same, typed.
        config: HINet constructor arguments.
        precision_check: ``{"precision", "psnr_db", "passed"}`` of step 3, or ``None``.
        net: the prepared ``torch.nn.Module`` (the torch path; also the OpenVINO fallback).
        stats: ``"global"`` or ``"local"``, as run; ``statistics`` the details
            (:func:`napari_hinet.model.get_statistics`: levels, windows, border).
    """

    def __init__(
        self,
        model: str | HINet | None = None,
        task: str | None = None,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        compile: str = "auto",  # noqa: A002 (mirrors torch.compile)
        backend: str = "auto",
        stats: str = "auto",
    ) -> None:
        if compile not in COMPILE_MODES:
            raise ValueError(f"compile={compile!r} is not valid; choose 'auto', 'on' or 'off'.")
        if stats not in STATS:
            raise ValueError(f"stats={stats!r} is not valid; choose one of {', '.join(map(repr, STATS))}.")
        if backend not in BACKENDS:
            raise ValueError(
                f"backend={backend!r} is not valid; choose one of {', '.join(map(repr, BACKENDS))}."
            )
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.compile_mode = compile
        if self.device.type == "cpu" and torch.get_num_threads() > default_threads():
            torch.set_num_threads(default_threads())
        source, owned = load_network(model, task)
        self.metadata: dict[str, Any] = dict(getattr(source, "metadata", {}) or {})
        self.config: dict[str, Any] = dict(source.config)
        info = ModelMetadata.from_dict(self.metadata)
        if stats == "auto":
            stats = "local" if info.statistics == "local" else "global"
        if stats == "local":
            patch = info.patch_size
            source = set_statistics(source if owned else copy.deepcopy(source), "local", patch)
            owned = True
        self.stats = stats
        self.statistics = get_statistics(source)
        self.info = ModelMetadata.from_dict({**self.metadata, "config": self.config, "statistics": stats})
        self._openvino: Any = None  # a WithFallback(OpenVINO, torch) runner while OpenVINO is used
        self._pending: tuple[HINet, str] | None = None  # "auto": what OpenVINO starts from, for a large run
        choice = resolve_backend(backend, self.device)
        if choice == "openvino":
            self._openvino = self._start_openvino(source, precision)
            if self._openvino is not None and precision == "auto":
                self.dtype = torch.float32  # the torch fallback: no second self-check
        elif choice == "auto":
            self._pending = (copy.deepcopy(source).float(), precision)
        self.precision_check: dict[str, Any] | None = None
        if self._openvino is not None:
            self.precision_check = self._openvino.primary.precision_check
        elif precision == "auto" and self.dtype != torch.float32:
            self.precision_check = self._check_precision(source)
            if not self.precision_check["passed"]:
                warnings.warn(
                    f"{precision_name(self.dtype)} on {self.device} is only "
                    f"{self.precision_check['psnr_db']:.1f} dB from float32 for this model "
                    f"(needs >= {PRECISION_MIN_PSNR_DB} dB); using fp32.",
                    stacklevel=3,
                )
                self.dtype = torch.float32
        self.net = self._prepare(source, owned)
        self._compiled: dict[tuple[int, ...], Callable[[torch.Tensor], torch.Tensor]] = {}
        self._compile_failed = False
        self._lock = threading.RLock()

    def _start_openvino(self, source: HINet, precision: str) -> Any:
        """OpenVINO with a torch fallback, or ``None`` (with a warning) when it cannot start."""
        from .openvino_backend import WithFallback, prepare

        try:
            model = prepare(source, precision, torch.get_num_threads())
        except Exception as error:
            warnings.warn(
                f"OpenVINO could not start ({type(error).__name__}: {str(error)[:200]}); running torch.",
                stacklevel=4,
            )
            return None
        return WithFallback(model, self._torch_run)

    @property
    def backend(self) -> str:
        """``"openvino"`` or ``"torch"``: what runs the network now (after a fallback: torch)."""
        if self._openvino is not None and self._openvino.active == "primary":
            return "openvino"
        return "torch"

    # ------------------------------------------------------------ facts
    @property
    def in_channels(self) -> int:
        """Channels the network takes (3 for RGB models, 1 for grey)."""
        return self.info.in_channels

    @property
    def size_multiple(self) -> int:
        """Network input H and W are padded to multiples of this."""
        return self.info.size_multiple

    @property
    def patch_size(self) -> int:
        """Training patch size = default tile (256 unless the metadata says otherwise)."""
        return self.info.patch_size

    @property
    def precision(self) -> str:
        """``"fp32"``, ``"bf16"`` or ``"fp16"``: the compute precision actually used."""
        if self.backend == "openvino":
            return self._openvino.primary.precision
        return precision_name(self.dtype)

    @property
    def compile_status(self) -> str:
        """``"eager"`` (nothing compiled yet), ``"compiled"`` or ``"failed"`` (fell back to eager)."""
        if self._compile_failed:
            return "failed"
        return "compiled" if self._compiled else "eager"

    def describe(self) -> str:
        """One line: model name, device, precision, backend and local statistics (logs, widget)."""
        local = ", local statistics" if self.stats == "local" else ""
        return f"{self.info.name} on {describe_device(self.device)}, {self.precision}, {self.backend}{local}"

    def describe_device(self) -> str:
        """E.g. ``"cpu (2 threads)"`` or ``"cuda:0 (NVIDIA H100, 79.1 GiB)"``."""
        return describe_device(self.device)

    # ------------------------------------------------------------ steps 3-4
    def _prepare(self, source: HINet, owned: bool) -> HINet:
        net = source if owned else copy.deepcopy(source)
        net = net.eval().requires_grad_(False).to(self.device)
        net = net.to(memory_format=torch.channels_last)
        for module in net.modules():
            if isinstance(module, torch.nn.LeakyReLU):
                module.inplace = True  # safe: every activation input is a fresh tensor
            if self.device.type == "cpu" and self.dtype == torch.bfloat16:
                # Pre-cast conv weights once (autocast would cast them on every call);
                # norms stay float32 and autocast runs them in float32 as before.
                if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                    module.to(torch.bfloat16)
        return net

    def _check_precision(self, source: HINet) -> dict[str, Any]:
        image = precision_probe_image(int(source.config["in_chn"]))
        tensor, _ = pad_to_valid(torch.from_numpy(image)[None].to(self.device), self.size_multiple)
        low = self.dtype
        probe = copy.deepcopy(source).eval().requires_grad_(False).to(self.device)
        with torch.inference_mode():
            reference = probe(tensor)[-1].float()
            self.net = self._prepare(probe, True)  # the low-precision network, as it will run
            result = self._eager(tensor.contiguous(memory_format=torch.channels_last)).float()
        del self.net
        psnr = psnr_db(result.cpu().numpy(), reference.cpu().numpy())
        return {
            "precision": precision_name(low),
            "psnr_db": round(psnr, 2),
            "passed": psnr >= PRECISION_MIN_PSNR_DB,
        }

    # ------------------------------------------------------------ step 5 and the forward
    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        if self.dtype == torch.float32:
            return self.net(x)[-1]
        with torch.autocast(self.device.type, dtype=self.dtype):
            return self.net(x)[-1]

    def _function(
        self, shape: tuple[int, ...], expected_forwards: int
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        if shape in self._compiled:
            return self._compiled[shape]
        wanted = self.compile_mode == "on" or (
            self.compile_mode == "auto"
            and self.device.type == "cpu"
            and COMPILE_MIN_FORWARDS is not None
            and expected_forwards >= COMPILE_MIN_FORWARDS
        )
        if not wanted or self._compile_failed:
            return self._eager
        compiled = torch.compile(self._eager, dynamic=False, options={"freezing": True})
        self._compiled[shape] = compiled
        return compiled

    def _compiled_batch(self, batch: np.ndarray) -> int:
        """The batch size a smaller batch is padded to: the smallest compiled one of its tile shape."""
        n, c, h, w = batch.shape
        m = self.size_multiple
        tail = (c, valid_size(h, m, 2 * m), valid_size(w, m, 2 * m))
        sizes = [s[0] for s in self._compiled if tuple(s[1:]) == tail and s[0] > n]
        return min(sizes, default=n)

    def start_backend(self, pixels: int) -> None:
        """Start what a run of ``pixels`` network input pixels runs on, before its first batch.

        With ``backend="auto"`` that is OpenVINO for a large run (rule 1 of
        :mod:`.openvino_backend`; converting and compiling take seconds). The engine
        calls this before it reports ``done=0``, so that a progress display is not
        stuck at its first batch meanwhile; a forward does it too, for callers that
        do not. Acts at most once per predictor.
        """
        with self._lock:
            if self._pending is None or not auto_wants_openvino(self.info, pixels):
                return
            source, precision = self._pending
            self._pending = None  # one try: a failed start warns once and torch runs from then on
            self._openvino = self._start_openvino(source, precision)
            if self._openvino is not None:
                self.precision_check = self._openvino.primary.precision_check

    def _run(self, batch: np.ndarray, expected_forwards: int) -> np.ndarray:
        self.start_backend(batch.shape[0] * batch.shape[2] * batch.shape[3] * max(1, expected_forwards))
        if self._openvino is not None:
            return self._openvino(batch)
        return self._torch_run(batch, expected_forwards)

    def _torch_run(self, batch: np.ndarray, expected_forwards: int = 1) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device)
        x, size = pad_to_valid(x, self.size_multiple)
        x = x.contiguous(memory_format=torch.channels_last)
        fn = self._function(tuple(x.shape), expected_forwards)
        with torch.inference_mode():
            try:
                y = fn(x)
            except Exception as error:
                if fn is self._eager or is_out_of_memory(error):
                    raise
                warnings.warn(f"torch.compile failed ({error!r:.200}); running without it.", stacklevel=4)
                self._compile_failed = True
                self._compiled.clear()
                y = self._eager(x)
            y = y[..., : size[0], : size[1]].float()
        return y.cpu().numpy()

    def forward(self, batch: np.ndarray, *, expected_forwards: int = 1) -> np.ndarray:
        """(B, C, h, w) float32 in network units -> (B, C, h, w) float32 (stage-2 output), any h, w.

        ``expected_forwards``: forwards of this shape the caller plans (decides
        whether ``compile="auto"`` compiles). Out-of-memory errors are raised
        (as torch raises them) after the device cache is emptied; the caller
        (:class:`.batching.BatchPolicy`) decides what to retry.
        """
        with self._lock:
            n = batch.shape[0]
            target = self._compiled_batch(batch) if self._compiled else n
            if target > n:  # keep one compiled shape
                batch = np.concatenate([batch, np.repeat(batch[-1:], target - n, axis=0)])
            try:
                return self._run(batch, expected_forwards)[:n]
            except Exception as error:
                if is_out_of_memory(error) and self.device.type == "cuda":
                    torch.cuda.empty_cache()
                raise

    def probe(self, batch: np.ndarray, *, expected_forwards: int = 1) -> tuple[np.ndarray, int | None]:
        """:meth:`forward` that also returns how many such tiles fit per batch (CUDA), else ``None``.

        CUDA: the peak memory of this forward is measured, and the batch is
        the share :data:`CUDA_MEMORY_SHARE` of the free memory divided by it.
        """
        if self.device.type != "cuda":
            return self.forward(batch, expected_forwards=expected_forwards), None
        with self._lock:  # re-entrant: no other thread runs between the reset and the reading
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            result = self.forward(batch, expected_forwards=expected_forwards)
            per_tile = max(
                1, (torch.cuda.max_memory_allocated(self.device) - before) // max(1, batch.shape[0])
            )
            free = free_memory(self.device) or 0
        return result, int(max(1, CUDA_MEMORY_SHARE * free // per_tile))
