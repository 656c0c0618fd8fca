#!/usr/bin/env python
"""Pack a compact copy of the training cache to carry to a GPU machine (<= 64 MiB in all).

    python scripts/pack_training_cache.py --cache runs/cache --out gpu_pack/cache --max-mib 28

The device machine of ``scripts/train_gpu.sh`` has no training pool and no
network; it gets this folder instead and trains with
``train_bundled.py --cache``. Rules, applied in this order:

1. The validation files (``natural_val``, ``micro_val``) are copied whole, so
   validation PSNR on the GPU is the number of the CPU runs.
2. The training images are cut into a grid of pieces whose sides are
   ``--tile`` to twice that (default 256: the largest training crop, 192 pixels
   plus 16 of blur context per side, fits in any piece),
   without overlap or remainder; an image smaller than ``--tile`` in either
   side stays whole.
3. The same share of every image's pieces is kept (at least one piece, drawn
   with ``--seed``; the planes of one microscopy file count as one image), so no image is dropped and the mix stays that of the full
   cache; the share is the largest (bisection, 1 %) whose compressed training
   files fit in what is left of ``--max-mib``. The test files are never packed.
4. Files are written with ``numpy.savez_compressed`` under the cache's names,
   so ``load_cache`` reads them unchanged; a ``pack.json`` says what was kept.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_hinet.training.pool import load_cache  # noqa: E402

TRAIN_KEYS = ("natural_train", "micro_train")
VAL_KEYS = ("natural_val", "micro_val")


def tiles(image: np.ndarray, tile: int) -> list[np.ndarray]:
    """The pieces of an (H, W, C) image cut into a grid of ``H // tile`` by ``W // tile``
    equal parts (rule 2): each side between ``tile`` and ``2 * tile - 1`` pixels, no overlap,
    nothing left out. An image smaller than ``tile`` in either side is one piece."""
    h, w = image.shape[:2]
    if h < tile or w < tile:
        return [image]
    ys = np.linspace(0, h, max(1, h // tile) + 1).astype(int)
    xs = np.linspace(0, w, max(1, w // tile) + 1).astype(int)
    rows, cols = zip(ys[:-1], ys[1:], strict=True), list(zip(xs[:-1], xs[1:], strict=True))
    return [image[y0:y1, x0:x1] for y0, y1 in rows for x0, x1 in cols]


def compressed_bytes(arrays: dict[str, np.ndarray]) -> int:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.tell()


def select(images: dict[str, np.ndarray], tile: int, share: float, seed: int) -> dict[str, np.ndarray]:
    """``share`` of each source file's pieces (at least one), drawn at random (rule 3). The
    planes of one microscopy file (``file#0``, ``file#1``...) count as one image."""
    rng = np.random.default_rng(seed)
    by_file: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name, image in images.items():
        pieces = [(f"{name}@{i}", piece) for i, piece in enumerate(tiles(image, tile))]
        by_file.setdefault(name.split("#")[0], []).extend(pieces)
    out: dict[str, np.ndarray] = {}
    for pieces in by_file.values():
        keep = max(1, round(share * len(pieces)))
        for i in sorted(rng.permutation(len(pieces))[:keep]):
            out[pieces[i][0]] = np.ascontiguousarray(pieces[i][1])
    return out


def pack(cache: Path, out: Path, max_mib: float, tile: int = 256, seed: int = 0) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for key in VAL_KEYS:  # rule 1
        shutil.copyfile(cache / f"{key}.npz", out / f"{key}.npz")
    left = max_mib * 2**20 - sum((out / f"{k}.npz").stat().st_size for k in VAL_KEYS)
    train = {key: load_cache(cache, key) for key in TRAIN_KEYS}

    def packed(share: float) -> tuple[dict[str, dict[str, np.ndarray]], int]:
        chosen = {key: select(imgs, tile, share, seed) for key, imgs in train.items()}
        return chosen, sum(compressed_bytes(arrays) for arrays in chosen.values())

    share, (chosen, size) = 1.0, packed(1.0)
    if size > left:  # rule 3: bisection on the share; ``lo`` always fits
        lo, hi = 0.0, 1.0
        while hi - lo > 0.01:
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if packed(mid)[1] <= left else (lo, mid)
        share, (chosen, size) = lo, packed(lo)
    for key, arrays in chosen.items():  # rule 4
        np.savez_compressed(out / f"{key}.npz", **arrays)
    info = {
        "tile": tile,
        "seed": seed,
        "share_kept": round(share, 4),
        "tiles": {key: len(arrays) for key, arrays in chosen.items()},
        "mib": {p.name: round(p.stat().st_size / 2**20, 2) for p in sorted(out.glob("*.npz"))},
    }
    (out / "pack.json").write_text(json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=str(REPO / "runs" / "cache"), help="the full cache (train_bundled.py)")
    p.add_argument("--out", default=str(REPO / "gpu_pack" / "cache"))
    p.add_argument(
        "--max-mib",
        type=float,
        default=28.0,
        help="size of the packed folder, MiB (the working tree travels too: ~29 of 64)",
    )
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(json.dumps(pack(Path(args.cache), Path(args.out), args.max_mib, args.tile, args.seed), indent=2))


if __name__ == "__main__":
    main()
