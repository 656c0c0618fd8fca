"""Intensities: which dtypes are accepted, mapping to the network's [0, 1] and back.

Two mappings, each an affine map ``n = (x - low) / (high - low)`` with the exact
inverse ``x = n * (high - low) + low``:

``"fixed"``
    ``low, high`` = the dtype range: 0..255 for uint8, 0..65535 for uint16, the
    full range for other integers; floats are taken to be in [0, 1]. This is
    what the official HINet code does for 8-bit photos.
``"percentile"``
    ``low, high`` = robust percentiles of the data (default 1 and 99.8), per
    2-D plane or for the whole stack. Used for microscopy, where a 12-bit
    camera in a uint16 file uses a small part of the dtype range.

``"auto"`` chooses, in this order:

1. the model's own ``metadata["normalization"]`` when it is ``"percentile"``
   (a model trained on percentile-normalised data expects it);
2. ``"fixed"`` for uint8 data and for RGB(A) data of any integer dtype (photos);
3. ``"fixed"`` for float data whose sampled values all lie in [0, 1];
4. ``"percentile"`` otherwise (uint16/int/float microscopy);
5. but ``"percentile"`` instead of a ``"fixed"`` from rule 2 or 3 when the data's
   1st..99.8th percentiles span less than half of the fixed range
   (:data:`AUTO_MIN_RANGE`: a dim photo, 12-bit data in a uint16 file), where the
   fixed mapping measurably loses quality (see the constant).

Output: integers are rounded and clipped to the dtype range; floats are clipped
to [0, 1] under ``"fixed"`` (as the official code clamps) and left unclipped
under ``"percentile"``. With ``out_dtype="float32"`` the values stay in the
input's units (not [0, 1]), are not rounded, and integer input still clips to
its dtype range.

Rejected: bool (masks), complex, object/string dtypes, and NaN or Inf values
(a clear error; replace them first, e.g. with ``numpy.nan_to_num``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Beyond this magnitude a mapping computes in float64 (float32 overflows at 3.4e38).
_FLOAT32_SAFE = 1e30

#: Most values used to estimate percentiles (a strided subsample beyond that).
MAX_SAMPLES = 4_000_000
#: Default (low, high) percentiles of ``"percentile"``: engine, training and benchmarks.
DEFAULT_PERCENTILES = (1.0, 99.8)


def check_dtype(dtype: Any) -> np.dtype:
    """Return ``dtype`` as a numpy dtype if the engine accepts it, else raise ``TypeError``."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        raise TypeError(
            "Boolean data looks like a mask or labels, not an image; restoration needs intensities. "
            "Convert it with data.astype('uint8') * 255 if it really is an image."
        )
    if dtype.kind == "c":
        raise TypeError(
            "Complex data cannot be restored; pass the magnitude (numpy.abs) or real part instead."
        )
    if dtype.kind not in "uif":
        raise TypeError(
            f"Data of dtype {dtype} is not an image; give a numeric array (uint8, uint16, int or float)."
        )
    return dtype


def check_finite(block: np.ndarray, where: str = "") -> None:
    """Raise ``ValueError`` if a float ``block`` holds NaN or Inf."""
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        n_bad = int(block.size - np.count_nonzero(np.isfinite(block)))
        raise ValueError(
            f"The image contains {n_bad} NaN or Inf value(s){where}; restoration needs finite numbers. "
            "Replace them first, e.g. numpy.nan_to_num(data, nan=0.0)."
        )


def dtype_range(dtype: np.dtype) -> tuple[float, float]:
    """(low, high) of the fixed mapping: integer dtype limits, or (0, 1) for floats."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0


@dataclass(frozen=True)
class Mapping:
    """The affine map between data units and the network's [0, 1] range."""

    low: float
    high: float

    @property
    def scale(self) -> float:
        """high - low, never zero (a constant image maps to 0 and back unchanged)."""
        span = self.high - self.low
        return span if span > 0 else 1.0

    @property
    def work_dtype(self) -> type:
        """float32, or float64 when the range is too wide for float32 arithmetic (e.g. data near +-3e38)."""
        wide = max(abs(self.low), abs(self.high), self.scale) > _FLOAT32_SAFE
        return np.float64 if wide else np.float32

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Data -> network units, float32."""
        w = self.work_dtype
        return ((x.astype(w, copy=False) - w(self.low)) / w(self.scale)).astype(np.float32, copy=False)

    def inverse(self, n: np.ndarray) -> np.ndarray:
        """Network units -> data units, float32 (float64 for a wide range; exact inverse of :meth:`forward` up to rounding)."""
        w = self.work_dtype
        return n.astype(w, copy=False) * w(self.scale) + w(self.low)


def subsample(block: np.ndarray, max_values: int = MAX_SAMPLES) -> np.ndarray:
    """A deterministic strided subsample (spatial stride on the last two axes) of at most ~``max_values``."""
    if block.size <= max_values:
        return block
    stride = int(np.ceil(np.sqrt(block.size / max_values)))
    return block[..., ::stride, ::stride]


def fixed_mapping(dtype: Any) -> Mapping:
    """The ``"fixed"`` mapping of ``dtype``: its integer range, or [0, 1] for floats."""
    return Mapping(*dtype_range(dtype))


def percentile_normalize(
    image: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES
) -> np.ndarray:
    """``image`` mapped to network units by its own percentiles (float32, not clipped).

    The one percentile normalisation of inference and training: the same
    :class:`Mapping`, so the same zero-range rule (a constant image maps to 0).
    """
    return percentile_mapping(image, percentiles).forward(image)


def percentile_mapping(sample: np.ndarray, percentiles: tuple[float, float]) -> Mapping:
    """Mapping from the ``percentiles`` (0-100) of ``sample`` (any shape, finite values)."""
    low, high = np.percentile(sample.astype(np.float64, copy=False), percentiles)
    return Mapping(float(low), float(high))


def choose_normalization(
    requested: str, dtype: np.dtype, rgb: bool, model_normalization: str | None, sample: np.ndarray | None
) -> str:
    """Resolve ``"auto"`` to ``"fixed"`` or ``"percentile"`` by the rules in the module docstring."""
    if requested in ("fixed", "percentile"):
        return requested
    if requested != "auto":
        raise ValueError(f"normalization={requested!r} is not valid; choose 'auto', 'fixed' or 'percentile'.")
    if model_normalization == "percentile":
        return "percentile"
    fixed = (dtype.kind in "ui" and (dtype == np.uint8 or rgb)) or (
        dtype.kind == "f"
        and sample is not None
        and sample.size
        and 0.0 <= sample.min()
        and sample.max() <= 1.0
    )
    if fixed and sample is not None and sample.size and used_range(sample, dtype) < AUTO_MIN_RANGE:
        return "percentile"  # rule 5: dim data (measured: benchmarks/results/auto_normalization.json)
    return "fixed" if fixed else "percentile"


#: ``"auto"`` rule 5: data whose 1st..99.8th percentiles span less than this fraction of the fixed
#: range get the percentile mapping. Measured with hinet-denoise-photo on three photos scaled to a
#: fraction of their range (benchmarks/bench_auto_normalization.py): fixed loses 0.1 dB at 1/2,
#: 0.7 dB at 1/4, 2.6 dB at 1/16 (12-bit data in uint16) and 9.3 dB at 1/100; percentile keeps
#: 30.0 dB at every fraction and equals fixed (30.0) on full-range photos.
AUTO_MIN_RANGE = 0.5


def used_range(sample: np.ndarray, dtype: np.dtype) -> float:
    """Fraction of the fixed range (:func:`dtype_range`) spanned by the 1st..99.8th percentiles of ``sample``."""
    low, high = dtype_range(dtype)
    used = percentile_mapping(sample, DEFAULT_PERCENTILES)
    return (used.high - used.low) / (high - low)


def output_clip(dtype: np.dtype, normalization: str) -> tuple[float, float] | None:
    """Clip range for results in data units: the integer dtype range, [0, 1] for fixed floats, else None."""
    if dtype.kind in "ui":
        return dtype_range(dtype)
    if normalization == "fixed":
        return 0.0, 1.0
    return None


def to_output(values: np.ndarray, out_dtype: np.dtype, clip: tuple[float, float] | None) -> np.ndarray:
    """Clip float ``values`` (data units) and convert: round to nearest for integer ``out_dtype``.

    Rules, in this order: 1. non-finite values raise ``FloatingPointError`` (they
    would become 0 or garbage in an integer image); 2. values are clipped to
    ``clip``; 3. float values beyond the range of a narrower float ``out_dtype``
    saturate at its largest finite value; 4. integers are rounded to nearest.
    """
    if not np.isfinite(values).all():
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise FloatingPointError(
            f"The restored values hold {bad} NaN or Inf value(s) although the input is finite: the model "
            "produced them (damaged or diverged weights?). Nothing is returned; try another model, or "
            "precision='fp32' if a low precision was in use."
        )
    if out_dtype.kind == "f" and values.dtype.itemsize > out_dtype.itemsize:
        top = float(np.finfo(out_dtype).max)
        values = np.clip(values, -top, top)
    if out_dtype.kind in "ui" and out_dtype.itemsize >= 4:
        values = values.astype(np.float64)  # float32 cannot hold every int32 limit exactly
    if clip is not None:
        low, high = clip
        if out_dtype.kind in "ui" and out_dtype.itemsize == 8:
            high = np.nextafter(high, 0.0)  # 2**63 - 1 rounds up to 2**63 in float64
        values = np.clip(values, low, high, out=values)
    if out_dtype.kind in "ui":
        values = np.rint(values, out=values)
    return values.astype(out_dtype, copy=False)
