"""Seams: tiled vs whole-image restoration for several overlaps, and a picture.

For a noisy photo (Gaussian sigma 25 on a clean image), restores the whole image
in one forward (``tiling="none"``) and with tiles (``"blend"`` at several
overlaps, and ``"official"``), then reports
  * PSNR(tiled, whole): how far tiling moves the result (inf = identical);
  * PSNR(x, clean) for each, and the loss of each tiled result against the
    whole-image one (``delta_db``; the requirement is <= 0.05 dB for the default).
It also saves a picture (docs/images/engine_seams.png): a crop across tile
borders for the noisy input, the whole-image result, tiles without overlap
(plain cut), the official grids and the default blend, with the differences to
the whole-image result amplified.

Usage:
    python benchmarks/bench_seams.py [--model NAME_OR_PATH] [--image PNG] [--wf 64]
        [--tile T] [--overlaps 0 16 32 64] [--precision fp32] [--no-picture]

``--tile`` defaults to the model's patch size (256 for random weights, 64 for the
bundled models) and ``--overlaps`` to 0, tile/8, tile/4 (the default) and tile/2.

Without ``--model`` the weights are random: the PSNR against the clean image is
then meaningless, only the tiled-vs-whole numbers say something.
"""

from __future__ import annotations

import argparse

import numpy as np
from _engine_common import (
    ROOT,
    add_noise,
    build_model,
    clean_image,
    load_average,
    print_table,
    psnr,
    write_json,
)

from napari_hinet import Restorer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="registry name or weights file (default: random weights)")
    parser.add_argument("--image", help="clean RGB image (default: the shipped coffee sample)")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=[1024, 1024],
        metavar=("H", "W"),
        help="crop/mirror-extend the image to H W (default 1024 1024)",
    )
    parser.add_argument("--wf", type=int, default=64, help="width of the random model (ignored with --model)")
    parser.add_argument("--tile", type=int, default=None, help="default: the model's patch size")
    parser.add_argument("--overlaps", type=int, nargs="+", default=None)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--no-picture", action="store_true")
    parser.add_argument("--picture", default=str(ROOT / "docs" / "images" / "engine_seams.png"))
    parser.add_argument("--json")
    args = parser.parse_args()

    model = build_model(args.model, wf=args.wf)
    clean = clean_image(
        tuple(args.size), args.image or str(ROOT / "src" / "napari_hinet" / "samples" / "coffee.png")
    )
    noisy = add_noise(clean, args.sigma)
    restorer = Restorer(model, device="cpu", precision=args.precision, compile="off")
    if args.tile is None:
        args.tile = restorer.patch_size
    if args.overlaps is None:
        args.overlaps = [0, args.tile // 8, args.tile // 4, args.tile // 2]
    common = {"normalization": "fixed", "out_dtype": "float32", "tile": args.tile}

    whole = restorer.restore(noisy, tiling="none", **common)
    results = {"whole image": whole}
    grids = {}
    for overlap in args.overlaps:
        name = f"blend, overlap {overlap}" + (" (default)" if overlap == args.tile // 4 else "")
        results[name] = restorer.restore(noisy, tiling="blend", overlap=overlap, **common)
    results["official grids"] = restorer.restore(noisy, tiling="official", **common)

    from napari_hinet.engine.tiling import plan_grid

    for overlap in args.overlaps:
        grids[overlap] = plan_grid(*noisy.shape[:2], "blend", args.tile, overlap)
    grids_by_name = {name: grids[o] for name, o in zip(list(results)[1:], args.overlaps, strict=False)}
    grids_by_name["official grids"] = plan_grid(*noisy.shape[:2], "official", args.tile, 0)
    base = psnr(np.clip(whole, 0, 255), clean)
    rows = [{"method": "noisy input", "psnr_vs_clean_db": round(psnr(noisy, clean), 2)}]
    for name, out in results.items():
        p = psnr(out, clean)
        grid = grids_by_name.get(name)
        rows.append(
            {
                "method": name,
                "tiles": grid.n_tiles if grid else 1,
                "actual_min_overlap": _min_overlap(grid) if grid else "",
                "psnr_vs_whole_db": round(psnr(out, whole), 2),
                "max_abs_diff_vs_whole": round(float(np.abs(out - whole).max()), 3),
                "psnr_vs_clean_db": round(p, 3),
                "delta_db": round(p - base, 3),
            }
        )
    weights = args.model or f"random wf={args.wf} (seed 0)"
    print(
        f"\nSeams: {noisy.shape[1]}x{noisy.shape[0]} RGB, sigma {args.sigma}, tile {args.tile}, "
        f"{args.precision}, weights {weights}; load {load_average()}"
    )
    print_table(
        rows,
        [
            "method",
            "tiles",
            "actual_min_overlap",
            "psnr_vs_whole_db",
            "max_abs_diff_vs_whole",
            "psnr_vs_clean_db",
            "delta_db",
        ],
    )

    picture = None
    if not args.no_picture:
        first = next(n for n in results if n.startswith("blend"))
        shown = ["whole image", "official grids", first] + [
            n for n in results if "(default)" in n and n != first
        ]
        official = grids_by_name["official grids"]
        picture = save_picture(args.picture, noisy, results, shown, official, args.tile, weights)
    write_json(
        "seams",
        {
            "weights": weights,
            "tile": args.tile,
            "sigma": args.sigma,
            "precision": args.precision,
            "image_shape": list(noisy.shape),
            "picture": picture,
            "rows": rows,
        },
        args.json,
    )


def _min_overlap(grid) -> int:
    """Smallest overlap between neighbouring tiles of ``grid`` (0 when there is one tile per axis)."""
    gaps = [b - a for origins in (grid.rows, grid.cols) for a, b in zip(origins, origins[1:], strict=False)]
    sizes = [grid.tile_h] * (len(grid.rows) - 1) + [grid.tile_w] * (len(grid.cols) - 1)
    return min((s - g for s, g in zip(sizes, gaps, strict=True)), default=0)


def save_picture(
    path: str, noisy: np.ndarray, results: dict, names: list[str], grid, tile: int, weights: str
) -> str:
    """Crop across a tile corner of ``grid``: the input, the ``names`` results, amplified differences."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = grid.rows[1] if len(grid.rows) > 1 else noisy.shape[0] // 2
    x = grid.cols[1] if len(grid.cols) > 1 else noisy.shape[1] // 2
    half = 48
    ys = slice(max(0, y - half), y + half)
    xs = slice(max(0, x - half), x + half)
    whole = results["whole image"]
    fig, axes = plt.subplots(2, len(names) + 1, figsize=(3 * (len(names) + 1), 6.4))
    axes[0, 0].imshow(noisy[ys, xs])
    axes[0, 0].set_title("noisy input")
    axes[1, 0].axis("off")
    axes[1, 0].text(
        0.0,
        0.5,
        f"crop {half * 2}x{half * 2} px\nacross a tile corner\n(y={y}, x={x})\n"
        f"tile {tile}\nweights: {weights}\n\nbottom row:\n|result - whole| x 8",
        fontsize=9,
    )
    for k, name in enumerate(names, start=1):
        out = np.clip(results[name], 0, 255)
        axes[0, k].imshow(out[ys, xs].astype(np.uint8))
        axes[0, k].set_title(name, fontsize=10)
        diff = np.abs(results[name] - whole)[ys, xs].mean(-1)
        axes[1, k].imshow(np.clip(diff * 8, 0, 255), cmap="magma", vmin=0, vmax=255)
        axes[1, k].set_title(f"mean |diff| {diff.mean():.2f}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"picture: {path}")
    return str(Path(path).resolve().relative_to(ROOT)) if Path(path).resolve().is_relative_to(ROOT) else path


if __name__ == "__main__":
    main()
