"""The ``napari-hinet`` command: restore files and folders, train, list models, show the setup.

Subcommands, and the module of each::

    napari-hinet restore INPUT... -o OUTPUT [--task T | --model M] [options]     cli/restore.py
    napari-hinet train ...            (fine-tuning; see ``napari-hinet train -h``)   training/cli.py
    napari-hinet models [--task T] [--json]                                         cli/models.py
    napari-hinet info [--json]                                                      cli/models.py
    napari-hinet export MODEL -o PATH [--format bioimageio|onnx|torchscript]        cli/export.py

``restore`` reads TIFF/OME-TIFF, PNG/JPEG and zarr/OME-Zarr (see
:mod:`napari_hinet.io`), restores each image with one model loaded once, and
writes every output atomically with the input's metadata. A folder in gives a
folder out with the same file names. Zarr inputs are processed lazily with dask
(chunk by chunk), so they may be larger than memory.

This module builds the parser (:func:`build_parser`) and runs the chosen
subcommand (:func:`main`), turning its errors into the exit codes below (the
constants are in :mod:`napari_hinet.cli.exits`); :mod:`napari_hinet.cli.progress`
draws the progress bars. Every public name of the subcommand modules is
importable from here too.

Exit codes, the same for every subcommand (also in ``docs/reliability.md``):

====  ==========================================================================
0     done: every input restored (or skipped), the model trained and saved
1     partly done: some inputs failed (each reported; the others were done),
      or training diverged (the last good state is kept)
2     refused before any work: bad arguments, unknown or unusable model,
      checkpoint or run state, no inputs, unwritable output, invalid data
3     stopped: no space for an output (disk full, quota, size limit); the
      outputs written before are complete, no partial file is left
70    internal error (a bug): the message says what failed; please report it
130   interrupted (Ctrl-C, SIGINT); 143 terminated (SIGTERM); both leave
      no partial output, and training keeps a checkpoint to resume from
====  ==========================================================================
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .. import __version__  # sets a passive OpenMP wait policy before torch is imported
from .. import io as imio
from .exits import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NO_SPACE,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Terminated,
    UsageError,
)
from .export import add_export_parser, run_export
from .models import add_info_parser, add_models_parser, collect_info, run_info, run_models
from .restore import (
    FileResult,
    Job,
    Outcome,
    add_restore_parser,
    check_outputs,
    mark_existing,
    plan_jobs,
    restore_files,
    run_restore,
    settings_from_args,
)

# --------------------------------------------------------------------------- parser


def _add_train_parser(sub: argparse._SubParsersAction, real: bool) -> None:
    """``napari-hinet train`` from :mod:`napari_hinet.training.cli`.

    The training module imports torch (seconds), so it is imported only when
    the command line asks for ``train``; otherwise a light entry lists it.
    """
    if not real:
        p = sub.add_parser("train", help="fine-tune a model on your images (see `napari-hinet train -h`)")
        p.set_defaults(func=lambda args: EXIT_USAGE)  # not reached: main() builds the real parser for train
        return
    try:
        from ..training.cli import add_train_parser, run_train
    except ImportError as exc:
        missing = str(exc)
        p = sub.add_parser("train", help="fine-tune a model (not available in this installation)")
        p.set_defaults(func=lambda args: _unavailable_train(missing))
        return
    p = add_train_parser(sub)
    p.set_defaults(func=run_train)


def _unavailable_train(reason: str) -> int:
    print(f"napari-hinet train is not available here: {reason}", file=sys.stderr)
    return EXIT_USAGE


def build_parser(with_train: bool = True) -> argparse.ArgumentParser:
    """The ``napari-hinet`` argument parser with all subcommands.

    ``with_train=False`` lists ``train`` without importing the training code.
    """
    parser = argparse.ArgumentParser(
        prog="napari-hinet",
        description="HINet image restoration (denoise, deblur, derain) from the command line.",
    )
    parser.add_argument("--version", action="version", version=f"napari-hinet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_restore_parser(sub)
    _add_train_parser(sub, real=with_train)
    add_models_parser(sub)
    add_info_parser(sub)
    add_export_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(with_train=command == "train")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help/--version, 2 for bad arguments
        return int(exc.code or 0)
    previous = _install_sigterm_handler()
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"napari-hinet {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except imio.OutputSpaceError as exc:
        print(f"napari-hinet {args.command}: stopped: {exc}", file=sys.stderr)
        return EXIT_NO_SPACE
    except Terminated:
        print("\nnapari-hinet: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("\nnapari-hinet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line that says what failed, not a traceback
        if imio.space_problem(exc):
            print(f"napari-hinet {args.command}: stopped: {imio.space_problem(exc)}: {exc}", file=sys.stderr)
            return EXIT_NO_SPACE
        print(
            f"napari-hinet {args.command}: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in napari-hinet; please report it with this message and the output of "
            "`napari-hinet info` (set HINET_DEBUG=1 for the full traceback).",
            file=sys.stderr,
        )
        if os.environ.get("HINET_DEBUG"):
            raise
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _install_sigterm_handler() -> Any:
    """Turn SIGTERM into an exception so that partial outputs are cleaned up (main thread only)."""

    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread
        return None


__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_NO_SPACE",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "FileResult",
    "Job",
    "Outcome",
    "Terminated",
    "UsageError",
    "build_parser",
    "check_outputs",
    "collect_info",
    "main",
    "mark_existing",
    "plan_jobs",
    "restore_files",
    "run_export",
    "run_info",
    "run_models",
    "run_restore",
    "settings_from_args",
]
