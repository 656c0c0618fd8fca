"""Devices and numeric precision: what is available, what "auto" means, threads.

``device="auto"`` picks CUDA, then Apple MPS, then the CPU.

``precision="auto"`` picks, per device:

* CUDA: bf16 autocast where the GPU supports bf16 (Ampere and newer), else fp16;
* CPU: bf16 autocast when the CPU has bf16 matrix instructions (AVX512-BF16 or
  AMX-BF16); measured error on this project's benchmark is far inside the
  45 dB PSNR bound (docs/performance.md); else fp32;
* MPS: fp32.

Explicit ``"fp32"``, ``"bf16"`` and ``"fp16"`` are honoured where the device
supports them (``"fp16"`` on CPU is refused: it is slow and inaccurate there).
"""

from __future__ import annotations

import functools
import math
import os
import platform
from pathlib import Path

import numpy as np
import torch

from ..settings import PRECISIONS

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Device strings usable here, best first, e.g. ``["cuda:0", "cpu"]`` (always includes ``"cpu"``)."""
    devices: list[str] = []
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def describe_device(device: str | torch.device) -> str:
    """Human-readable name, e.g. ``"cuda:0 (NVIDIA H100, 79.1 GiB)"`` or ``"cpu (2 threads)"``."""
    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{device} ({props.name}, {props.total_memory / 2**30:.1f} GiB)"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """A ``torch.device`` for ``device`` (``"auto"``/None, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).

    Raises ``ValueError`` listing the available devices when ``device`` is unknown
    or not present on this machine.
    """
    if device is None or device == "auto":
        return torch.device(available_devices()[0])
    available = available_devices()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"Unknown device {device!r}. Available here: {', '.join(available)} (or 'auto')."
        ) from None
    if resolved.type == "cuda" and resolved.index is None and torch.cuda.is_available():
        resolved = torch.device("cuda", torch.cuda.current_device())
    name = str(resolved)
    if name not in available:
        raise ValueError(
            f"Device {device!r} is not available on this machine. Available: {', '.join(available)}."
        )
    return resolved


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU model name (from /proc/cpuinfo where available), for status lines and records."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has bf16 dot-product/matrix instructions (AVX512-BF16 or AMX-BF16)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    cpu = getattr(torch, "cpu", None)
    for name in checks:
        fn = getattr(cpu, name, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except RuntimeError:
                pass
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text(errors="ignore")
        return " avx512_bf16" in text or " amx_bf16" in text
    return False


def resolve_precision(precision: str, device: torch.device, *, training: bool = False) -> torch.dtype:
    """The compute dtype for ``precision`` on ``device`` (float32 means no autocast).

    The one precision resolver of inference and training. ``training=True``
    changes two rules: ``"auto"`` is fp32 off CUDA (bf16 training on a CPU is
    slower than fp32 there), and ``"fp16"`` needs CUDA (its gradient scaler does).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not valid; choose one of {', '.join(PRECISIONS)}.")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_fast_bf16() and not training:
            return torch.bfloat16
        return torch.float32
    if precision == "fp16" and training and device.type != "cuda":
        raise ValueError("precision 'fp16' (AMP with a gradient scaler) needs CUDA; use 'bf16' on CPU")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision='fp16' is not supported on the CPU; use 'bf16' or 'fp32'.")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("This GPU does not support bf16; use precision='fp16' or 'fp32'.")
    return _DTYPES[precision]


def precision_name(dtype: torch.dtype) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"``."""
    return {v: k for k, v in _DTYPES.items()}[dtype]


def default_threads() -> int:
    """Threads for CPU inference: ``HINET_NUM_THREADS`` if set, else the CPUs this process may use."""
    env = os.environ.get("HINET_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def is_out_of_memory(error: BaseException) -> bool:
    """True for device or host out-of-memory errors raised by torch."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(error, oom_type):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def free_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device (``None`` elsewhere)."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


#: ``precision="auto"`` keeps a low precision only if its self-check is at least this close to float32.
PRECISION_MIN_PSNR_DB = 45.0


def precision_probe_image(channels: int) -> np.ndarray:
    """The fixed synthetic (channels, 64, 64) float32 image in [0, 1] of the low-precision self-checks."""
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    rng = np.random.default_rng(0)
    base = 0.5 + 0.3 * np.sin(x / 5.0) * np.cos(y / 7.0) + 0.1 * (x > 32)
    return np.clip(base[None] + rng.normal(0, 0.08, (channels, 64, 64)), 0, 1).astype(np.float32)


def psnr_db(result: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB (peak 1) of ``result`` against ``reference``; ``inf`` when they are equal."""
    mse = float(np.mean((np.asarray(result, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)
