"""Load the training pool once into a compact cache of arrays.

The pool (``get_training_pool.sh``; see ``docs/finetuning.md``) holds JPEG/PNG
photographs and TIFF microscopy. :func:`build_cache` reads every image that
:mod:`~napari_hinet.training.splits` allows, downscales the large wallpapers
2x (Lanczos, via Pillow), and writes one ``.npz`` per split:

* natural photos as uint8 RGB ``(H, W, 3)`` (gray sources are replicated);
* microscopy planes as float32 ``(H, W, 1)`` normalised per plane to the
  1st..99.8th percentile and clipped to [0, 1].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..engine.intensity import percentile_normalize
from ..io import atomic_output, read_array
from . import splits

__all__ = ["build_cache", "load_cache", "load_image", "percentile_normalize"]

PHOTO_EXT = (".png", ".jpg", ".jpeg")


def _lanczos_half(img: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    pil = Image.fromarray(img)
    return np.asarray(pil.resize((w // 2, h // 2), Image.Resampling.LANCZOS))


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read a pool file (npz with key ``data``, TIFF, PNG/JPEG) by the one reader table."""
    return read_array(path)


def _photo_rgb(path: Path, rel: str) -> np.ndarray:
    img = load_image(path)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.dtype != np.uint8:
        raise ValueError(f"{rel}: expected an 8-bit photo, got {img.dtype}")
    if any(rel.startswith(p) for p in splits.DOWNSCALE_2X):
        img = _lanczos_half(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img)


def _microscopy_planes(path: Path) -> list[np.ndarray]:
    img = load_image(path)
    if img.ndim == 3 and img.shape[-1] in (3, 4):  # RGB(A) png such as skimage cell
        img = img[..., :3].mean(axis=-1)
    planes = [img] if img.ndim == 2 else list(img)
    out = []
    for plane in planes:
        norm = percentile_normalize(plane.astype(np.float32))
        out.append(np.clip(norm, 0.0, 1.0)[..., None].astype(np.float32))
    return out


def _natural_files(root: Path) -> list[str]:
    found = []
    for p in sorted((root / "natural").rglob("*")):
        if p.is_file() and p.suffix.lower() in (*PHOTO_EXT, ".npz"):
            found.append(p.relative_to(root).as_posix())
    return found


def build_cache(pool_root: str | os.PathLike, cache_dir: str | os.PathLike) -> dict[str, list[str]]:
    """Write ``natural_{train,val,test}.npz`` and ``micro_{train,val,test}.npz``.

    Returns the file lists per split (pool-relative paths). Existing cache files
    are reused (delete the folder to rebuild).
    """
    root, cache = Path(pool_root), Path(cache_dir)
    if not (root / "natural").is_dir():
        raise FileNotFoundError(
            f"no training pool at {root} (expected {root / 'natural'}); fetch it with "
            "`bash get_training_pool.sh training_pool` (see docs/finetuning.md)"
        )
    cache.mkdir(parents=True, exist_ok=True)
    natural = _natural_files(root)
    lists = {
        "natural_train": splits.natural_training_files(natural),
        "natural_val": list(splits.VAL_NATURAL),
        "natural_test": list(splits.TEST_NATURAL),
        "micro_train": list(splits.TRAIN_MICROSCOPY),
        "micro_val": list(splits.VAL_MICROSCOPY),
        "micro_test": list(splits.TEST_MICROSCOPY),
    }
    for key, files in lists.items():
        target = cache / f"{key}.npz"
        if target.exists():
            continue
        arrays: dict[str, np.ndarray] = {}
        for rel in files:
            if key.startswith("natural"):
                arrays[rel] = _photo_rgb(root / rel, rel)
            else:
                for i, plane in enumerate(_microscopy_planes(root / rel)):
                    arrays[f"{rel}#{i}"] = plane
        with atomic_output(target) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return lists


def load_cache(cache_dir: str | os.PathLike, key: str) -> dict[str, np.ndarray]:
    """The arrays of one cache file (``natural_train``, ``micro_val``, ...), by name."""
    with np.load(Path(cache_dir) / f"{key}.npz") as data:
        return {name: data[name] for name in data.files}
