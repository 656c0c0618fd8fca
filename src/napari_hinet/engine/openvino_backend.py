"""OpenVINO CPU backend: the same HINet, converted once and run by OpenVINO's CPU runtime.

Torch eager is slow on the small-channel convolutions of the bundled models;
OpenVINO runs them several times faster on the same cores (docs/engine.md,
"Backends"). :func:`prepare` turns a float32 :class:`~napari_hinet.HINet`
(global or local statistics, :mod:`napari_hinet.model.tlc`) into a callable
``forward(batch) -> out``, numpy in and out, with the engine's contract:
``batch`` (B, C, h, w) float32 in network units, any h, w >= 1; ``out`` the
stage-2 output of the same shape.

Rules, applied in this order:

1. ``backend="auto"`` runs OpenVINO on the CPU, when the package imports, for
   every run of at least :data:`AUTO_MIN_WORK` (:func:`auto_wants_openvino`),
   and torch otherwise (and always on CUDA and MPS). Measured on a 2-core CPU
   (docs/engine.md, "Backends"): OpenVINO bf16 restores a 1024x1024 image with
   ``hinet-denoise-fluo`` in 0.92 s against 1.26 s for torch's default path
   with the cores to itself, and 1.8 s against 2.1 s while another process keeps
   a core busy; starting it (conversion, cached on disk; self-check; one compile
   per tile shape) costs 1-3 s, which small runs (previews, thumbnails, tests)
   would not win back. ``"openvino"`` runs it for every run on the CPU; on
   another device that is an error, and without the package it falls back to
   torch with a warning (:func:`resolve_backend`);
2. the network is converted from torch directly (``openvino.convert_model``,
   TorchScript tracing) once, with dynamic batch, height and width. It is
   traced at ``example`` pixels, the smallest size whose feature maps exceed
   the local window at every level, so its box filters are fixed-size and it
   is valid for every input at least that large; smaller inputs, and
   ``border="shrink"`` windows, get a graph of their own shape;
3. converted graphs are kept on disk (:func:`cache_dir`) under a key made of
   the SHA-256 of the weights, the statistics, the graph's shape (``dyn`` or
   ``HxW``) and the OpenVINO version; compiled blobs go to the same folder
   through OpenVINO's own model cache (keyed by graph, shape and precision);
4. each input shape is compiled once (static H and W, dynamic batch) with
   ``threads`` inference threads and no core pinning, for batches of one tile
   with one stream (all threads on the tile), and for batches of several tiles
   with OpenVINO's throughput streams (two one-thread streams on 2 threads):
   the batch is split between the streams, which run at once. Measured on
   2 cores with ``hinet-denoise-fluo`` (docs/engine.md, "Backends"): 1.59
   against 1.35 MP/s for 128-pixel tiles, 1.06 against 0.80 MP/s with another
   process on one core; equal for the compute-bound ``wf=64`` (one tile per
   batch, so one stream). A single-tile batch at a shape already compiled for
   streams runs on one of them rather than compiling again;
5. precision: ``"fp32"`` is f32; ``"bf16"`` needs a CPU with bf16 support;
   ``"auto"`` is bf16 where the CPU supports it *and* a bf16 forward of a fixed
   synthetic image is at least :data:`PRECISION_MIN_PSNR_DB` dB from the torch
   float32 forward, else f32 (the result is kept in ``precision_check``);
6. any failure to import, convert or compile raises; the engine then runs
   torch with a warning (:class:`WithFallback`);
7. nothing is sent anywhere: the converter's usage telemetry is switched off
   for our conversions (:func:`_no_telemetry`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..metadata import ModelMetadata
from ..model.padding import pad_to_valid, valid_size
from ..model.tlc import get_statistics
from ..settings import BACKENDS
from .devices import PRECISION_MIN_PSNR_DB, is_out_of_memory, precision_probe_image, psnr_db

#: Environment variable that moves the on-disk cache of converted and compiled models.
CACHE_ENV = "HINET_CACHE_DIR"

Forward = Callable[[np.ndarray], np.ndarray]


def openvino_available() -> bool:
    """True when the ``openvino`` package imports here."""
    try:
        import openvino  # noqa: F401
    except Exception:  # ImportError, or a broken install (missing shared libraries)
        return False
    return True


#: ``backend="auto"`` starts OpenVINO for runs of at least this much work: network input
#: pixels times :attr:`~napari_hinet.metadata.ModelMetadata.work_per_pixel`, i.e.
#: one megapixel for the bundled models (wf=16), 65,536 pixels (one 256x256 tile) for wf=64.
AUTO_MIN_WORK = 1_000_000


def auto_wants_openvino(info: ModelMetadata, pixels: int) -> bool:
    """Whether ``backend="auto"`` runs OpenVINO for a run of ``pixels`` network input pixels (rule 1)."""
    return pixels * info.work_per_pixel >= AUTO_MIN_WORK


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"torch"``, ``"openvino"`` or ``"auto"`` for ``backend`` on ``device`` (rule 1).

    ``"auto"`` comes back only where OpenVINO could run (the CPU, package
    installed): the predictor then decides per run (:func:`auto_wants_openvino`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not valid; choose one of {', '.join(BACKENDS)}.")
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "auto" if device.type == "cpu" and openvino_available() else "torch"
    if device.type != "cpu":
        raise ValueError(
            f"backend='openvino' runs on the CPU only, not on {device}; "
            "use device='cpu' or backend='torch' (or 'auto')."
        )
    if openvino_available():
        return "openvino"
    warnings.warn(
        "backend='openvino' was requested but the openvino package does not import; running torch. "
        "Install it with: pip install openvino (a dependency of napari-hinet since 0.2)",
        stacklevel=3,
    )
    return "torch"


def cache_dir() -> Path:
    """Folder of converted/compiled OpenVINO models: ``$HINET_CACHE_DIR/openvino`` or the user cache."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "openvino"
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-hinet", appauthor=False)) / "openvino"


@contextlib.contextmanager
def _no_telemetry() -> Iterator[None]:
    """Convert without OpenVINO's usage telemetry.

    ``openvino.convert_model`` reports usage (to Google Analytics) unless the user
    opted out with OpenVINO's ``opt_in_out`` tool; a restoration plugin must not
    send anything. During the conversion the converter's telemetry module is
    replaced by OpenVINO's own no-op stub (what it uses when ``openvino-telemetry``
    is not installed).
    """
    try:
        from openvino.tools.ovc import convert_impl, telemetry_stub, telemetry_utils
    except ImportError:  # another layout: nothing to replace
        yield
        return
    saved = convert_impl.tm, telemetry_utils.tm
    convert_impl.tm = telemetry_utils.tm = telemetry_stub
    try:
        yield
    finally:
        convert_impl.tm, telemetry_utils.tm = saved


class Stage2(torch.nn.Module):
    """The network with one output (stage 2), as converted (and as `benchmarks/bench_int8.py` quantises it)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[-1]


class OpenVINOModel:
    """A HINet run by OpenVINO on the CPU (rules 2-5 of the module docstring); call it like a function.

    Args:
        net: a float32 HINet on the CPU (copied; global or local statistics).
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``.
        threads: inference threads (``None``: torch's current thread count).
        use_cache: keep converted and compiled models on disk (:func:`cache_dir`).

    Attributes:
        precision: ``"fp32"`` or ``"bf16"``, as run.
        precision_check: ``{"precision", "psnr_db", "passed"}`` of rule 5, or ``None``.
        threads: inference threads.
        key: cache key (weights SHA-256, statistics, OpenVINO version).
    """

    name = "openvino"

    def __init__(
        self,
        net: torch.nn.Module,
        precision: str = "auto",
        threads: int | None = None,
        *,
        use_cache: bool = True,
    ) -> None:
        import openvino as ov

        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(
                f"precision={precision!r} is not valid for OpenVINO; choose 'auto', 'fp32' or 'bf16'."
            )
        self._ov = ov
        self.net = Stage2(copy.deepcopy(net).float().eval().requires_grad_(False).cpu())
        self.net.net.to(memory_format=torch.contiguous_format)
        self.channels = int(net.config["in_chn"])
        self.multiple = 2 ** (int(net.config["depth"]) - 1)
        self.statistics = get_statistics(net)
        self.threads = int(threads or torch.get_num_threads())
        self.core = ov.Core()
        self.folder = cache_dir() if use_cache else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.core.set_property({"CACHE_DIR": str(self.folder)})
        state = self.net.net.state_dict()
        digest = hashlib.sha256()
        from ..checkpoints import weights_sha256

        digest.update(weights_sha256(state).encode())
        digest.update(json.dumps([net.config, self.statistics, ov.__version__], sort_keys=True).encode())
        self.key = digest.hexdigest()[:24]
        #: traced size (rule 2): inputs at least this large share the dynamic graph
        self.example = self._example_size()
        self._dynamic_ok = self.statistics.get("border", "clamp") == "clamp"
        self._graphs: dict[str, Any] = {}
        self._compiled: dict[tuple[int, int, bool], tuple[Any, list[Any]]] = {}
        self._lock = threading.Lock()
        bf16_ok = "BF16" in self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "bf16" and not bf16_ok:
            raise ValueError("This CPU has no bf16 support in OpenVINO; use precision='fp32' or 'auto'.")
        self.precision = "bf16" if precision in ("auto", "bf16") and bf16_ok else "fp32"
        self.precision_check: dict[str, Any] | None = None
        if precision == "auto" and self.precision == "bf16":
            self.precision_check = self._check_precision()
            if not self.precision_check["passed"]:
                warnings.warn(
                    f"OpenVINO bf16 is only {self.precision_check['psnr_db']:.1f} dB from float32 for this "
                    f"model (needs >= {PRECISION_MIN_PSNR_DB} dB); using fp32.",
                    stacklevel=3,
                )
                self.precision = "fp32"
                self._compiled.clear()

    def _example_size(self) -> int:
        """Smallest valid size whose feature map exceeds the local window at every level (rule 2)."""
        stats = self.statistics
        size = 2 * self.multiple
        if stats["stats"] == "local":
            for level, window in zip(stats["levels"], stats["windows"], strict=True):
                size = max(size, (window + 1) * 2**level)
        return valid_size(size, self.multiple, 2 * self.multiple)

    # ------------------------------------------------------------ rules 2-4
    def _graph(self, h: int, w: int) -> Any:
        """The converted graph valid for an (h, w) input (read from disk when cached)."""
        dynamic = self._dynamic_ok and h >= self.example and w >= self.example
        tag = "dyn" if dynamic else f"{h}x{w}"
        if tag in self._graphs:
            return self._graphs[tag]
        ov = self._ov
        path = self.folder / f"{self.key}-{tag}.xml" if self.folder is not None else None
        if path is not None and path.is_file() and path.with_suffix(".bin").is_file():
            graph = self.core.read_model(str(path))
        else:
            size = (self.example, self.example) if dynamic else (h, w)
            example = torch.zeros(1, self.channels, *size)
            shape = [-1, self.channels, -1, -1] if dynamic else [-1, self.channels, h, w]
            with torch.no_grad(), warnings.catch_warnings(), _no_telemetry():
                warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
                graph = ov.convert_model(self.net, example_input=example, input=[ov.PartialShape(shape)])
            if path is not None:
                tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.xml")
                ov.save_model(graph, str(tmp), compress_to_fp16=False)
                tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
                tmp.replace(path)
        self._graphs[tag] = graph
        return graph

    def _compile(self, h: int, w: int, tiles: int) -> tuple[Any, list[Any]]:
        """(compiled model, its infer requests) for a batch of ``tiles`` (h, w) tiles (rule 4)."""
        streams = tiles > 1 and self.threads > 1
        if not streams and (h, w, True) in self._compiled and (h, w, False) not in self._compiled:
            streams = True  # one tile at a shape compiled for streams: run it on one of them
        found = self._compiled.get((h, w, streams))
        if found is None:
            graph = self._graph(h, w).clone()
            graph.reshape([-1, self.channels, h, w])
            config = {
                "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
                "INFERENCE_NUM_THREADS": self.threads,
                "PERFORMANCE_HINT": "THROUGHPUT" if streams else "LATENCY",
                "ENABLE_CPU_PINNING": False,
            }
            if not streams:
                config["NUM_STREAMS"] = 1
            compiled = self.core.compile_model(graph, "CPU", config)
            count = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) if streams else 1
            found = (compiled, [compiled.create_infer_request() for _ in range(max(1, count))])
            self._compiled[(h, w, streams)] = found
        return found

    def _check_precision(self) -> dict[str, Any]:
        """Rule 5: bf16 against torch float32 on the fixed probe image, padded to the traced size."""
        image = torch.from_numpy(precision_probe_image(self.channels))[None]
        x, _ = pad_to_valid(image, self.multiple, minimum=self.example)
        with torch.inference_mode():
            reference = self.net(x).numpy()
        result = self(x.numpy())
        psnr = psnr_db(result, reference)
        return {"precision": "bf16", "psnr_db": round(psnr, 2), "passed": psnr >= PRECISION_MIN_PSNR_DB}

    # ------------------------------------------------------------ forward
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(B, C, h, w) float32 -> (B, C, h, w) float32 stage-2 output, any h, w >= 1."""
        x, size = pad_to_valid(torch.from_numpy(np.ascontiguousarray(batch, np.float32)), self.multiple)
        x = x.numpy()
        with self._lock:
            _, requests = self._compile(int(x.shape[-2]), int(x.shape[-1]), len(x))
            parts = np.array_split(np.arange(len(x)), min(len(requests), len(x)))
            for request, part in zip(requests, parts, strict=False):
                request.start_async({0: x[part[0] : part[-1] + 1]})
            out = np.empty(x.shape, np.float32)
            for request, part in zip(requests, parts, strict=False):
                request.wait()
                out[part[0] : part[-1] + 1] = request.get_output_tensor(0).data
        return np.ascontiguousarray(out[..., : size[0], : size[1]])

    def describe(self) -> str:
        return f"openvino {self.precision} ({self.threads} threads)"


def prepare(net: torch.nn.Module, precision: str = "auto", threads: int | None = None) -> OpenVINOModel:
    """``forward(batch) -> out`` through OpenVINO for a float32 HINet (see :class:`OpenVINOModel`).

    Raises ``ImportError`` without the ``openvino`` package and the OpenVINO
    error when converting fails; callers fall back to torch (:class:`WithFallback`).
    """
    return OpenVINOModel(net, precision, threads)


class WithFallback:
    """``forward`` through ``primary`` until it fails once; then warn and use ``fallback`` for good (rule 6).

    Out-of-memory errors are not failures of the backend and are raised as they are.
    """

    def __init__(self, primary: Forward, fallback: Forward, what: str = "OpenVINO") -> None:
        self.primary: Forward | None = primary
        self.fallback = fallback
        self.what = what
        self.error: str | None = None

    @property
    def active(self) -> str:
        """``"primary"`` or ``"fallback"``."""
        return "primary" if self.primary is not None else "fallback"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.primary is not None:
            try:
                return self.primary(batch)
            except Exception as error:  # conversion/compile/inference failure of the backend
                if isinstance(error, MemoryError) or is_out_of_memory(error):
                    raise  # the caller's out-of-memory back-off handles it
                self.error = f"{type(error).__name__}: {error}"[:300]
                warnings.warn(f"{self.what} failed ({self.error}); running torch instead.", stacklevel=2)
                self.primary = None
        return self.fallback(batch)
