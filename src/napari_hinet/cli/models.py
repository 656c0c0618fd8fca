"""``napari-hinet models`` (every known model and where to get it) and ``napari-hinet info`` (the setup)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from .. import __version__
from ..settings import TASKS
from .exits import EXIT_OK


def add_models_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``models`` to the subcommands ``sub``; it runs :func:`run_models`."""
    p = sub.add_parser("models", help="list models and whether they are available here")
    p.add_argument("--task", choices=TASKS, help="only the models for this task")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_models)


def add_info_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``info`` to the subcommands ``sub``; it runs :func:`run_info`."""
    p = sub.add_parser("info", help="versions, devices and folders")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_info)


def run_models(args: argparse.Namespace) -> int:
    """``napari-hinet models``: every known model, whether it is here, and where to get it if not."""
    from ..registry import default_model, list_models, user_models_dir, user_models_problem

    models = list_models(args.task)
    defaults = {}
    for task in TASKS:
        try:
            defaults[default_model(task)] = task
        except LookupError:  # no model for that task here: the table shows what is missing
            pass
    if args.json:
        rows = [
            {
                "name": m.name,
                "task": m.task,
                "kind": m.kind,
                "available": m.available,
                "default_for": defaults.get(m.name),
                "channels": m.channels,
                "path": str(m.path) if m.path else None,
                "description": m.description,
                "where_to_get": "" if m.available else m.missing_message(),
                "problem": m.problem,
            }
            for m in models
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    headers = ("name", "task", "kind", "available", "channels", "description")
    rows = [
        (
            m.name + (" *" if m.name in defaults else ""),
            m.task,
            m.kind,
            "yes" if m.available else "no",
            m.channels,
            m.description,
        )
        for m in models
    ]
    _print_table(headers, rows)
    print("\n* default model of its task. User models folder:", user_models_dir(create=False))
    problem = user_models_problem()
    if problem:
        print(f"Warning: {problem}.")
    missing = [m for m in models if not m.available]
    if missing:
        print("\nMissing models and how to get them:")
        for m in missing:
            print(f"  - {m.missing_message()}")
    return EXIT_OK


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    widths[-1] = min(widths[-1], 70)
    for row in (headers, *rows):
        cells = [str(c) for c in row]
        cells[-1] = cells[-1] if len(cells[-1]) <= 70 else cells[-1][:67] + "..."
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip(), file=out)


def collect_info() -> dict[str, Any]:
    """Versions, devices and folders, as a JSON-able dict (what ``napari-hinet info`` prints)."""
    from importlib.metadata import PackageNotFoundError, version

    info: dict[str, Any] = {
        "napari-hinet": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    packages = {}
    for name in (
        "torch",
        "numpy",
        "napari",
        "tifffile",
        "zarr",
        "dask",
        "distributed",
        "imageio",
        "safetensors",
    ):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    info["packages"] = packages
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.version.cuda
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError as exc:
        info["torch_error"] = str(exc)
    try:
        from ..engine.devices import available_devices

        info["devices"] = [str(d) for d in available_devices()]
    except ImportError as exc:
        info["devices"] = f"unknown ({exc})"
    from ..registry import bundled_weights_dir, user_models_dir

    info["user_models_dir"] = str(user_models_dir(create=False))
    info["bundled_weights_dir"] = str(bundled_weights_dir())
    return info


def run_info(args: argparse.Namespace) -> int:
    """``napari-hinet info``: what is installed and which devices can run models."""
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print(f"napari-hinet {info['napari-hinet']}  (Python {info['python']}, {info['platform']})")
    print("packages:", ", ".join(f"{k} {v or 'not installed'}" for k, v in info["packages"].items()))
    devices = info["devices"]
    print("devices:", ", ".join(devices) if isinstance(devices, list) else devices)
    if "torch_threads" in info:
        print(f"CPU: {info['cpu_count']} cores, torch uses {info['torch_threads']} threads")
        print("CUDA:", info["cuda"] or "not in this torch build", *info["cuda_devices"])
    print("user models folder:", info["user_models_dir"])
    print("bundled weights:", info["bundled_weights_dir"])
    return EXIT_OK
