"""``napari-hinet export``: write a model as a bioimage.io package, ONNX or TorchScript (docs/sharing.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .exits import EXIT_FAILED, EXIT_OK, UsageError


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` to the subcommands ``sub``; it runs :func:`run_export`."""
    p = sub.add_parser(
        "export", help="write a model as a bioimage.io package, ONNX or TorchScript (docs/sharing.md)"
    )
    p.add_argument("model", metavar="MODEL", help="registry name (`napari-hinet models`) or weights file")
    p.add_argument("-o", "--output", required=True, type=Path, help="file to write (.zip, .onnx, .pt)")
    p.add_argument(
        "--format",
        choices=("bioimageio", "onnx", "torchscript"),
        help="default: from the output suffix (.onnx, .pt), else bioimageio",
    )
    p.add_argument("--name", help="package name (bioimageio)")
    p.add_argument("--description", help="package description (bioimageio)")
    p.add_argument("--author", action="append", help="package author; repeat for several (bioimageio)")
    p.add_argument("--licence", help="SPDX licence id of the weights, e.g. MIT (bioimageio)")
    p.add_argument("--check", action="store_true", help="run bioimageio.core's model test on the package")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """``napari-hinet export``: one model to one file, via :func:`napari_hinet.exchange.export`."""
    from ..exchange import export, format_for

    fmt = args.format or format_for(args.output)
    fields = {"name": args.name, "description": args.description, "authors": args.author}
    fields["licence"] = args.licence
    metadata = {k: v for k, v in fields.items() if v is not None}
    try:
        path = export(args.model, args.output, format=fmt, **metadata)
    except (KeyError, FileNotFoundError, ValueError, ImportError) as exc:
        raise UsageError(exc.args[0] if isinstance(exc, KeyError) else str(exc)) from None
    print(f"wrote {path} ({fmt}, {path.stat().st_size / 1e6:.1f} MB)")
    if args.check and fmt == "bioimageio":
        from bioimageio.core import test_model

        summary = test_model(path)
        print(f"bioimageio.core test: {summary.status}")
        return EXIT_OK if summary.status == "passed" else EXIT_FAILED
    return EXIT_OK
