"""``napari-hinet restore``: plan the jobs (input -> output), check them, restore each file.

:func:`plan_jobs`, :func:`mark_existing` and :func:`check_outputs` refuse a bad
batch before anything is computed; :func:`restore_files` is the GUI-free loop
that the command and the napari folder mode both run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .. import io as imio
from ..dask_support import is_dask_array
from ..settings import (
    BACKENDS,
    COMPILE_MODES,
    NORMALIZATIONS,
    NORMALIZE_PER,
    PRECISIONS,
    STATS,
    TASKS,
    TILINGS,
)
from .exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, Terminated, UsageError
from .progress import DaskBar, TileBar, open_files_bar, write_line

# --------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def add_restore_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``restore`` to the subcommands ``sub``; it runs :func:`run_restore`."""
    p = sub.add_parser(
        "restore",
        help="restore image files or folders with a HINet model",
        description=(
            "Restore images with a HINet model. INPUT may be files (.tif/.tiff/.ome.tif, .png, .jpg/.jpeg, "
            ".zarr/.ome.zarr) or folders (every supported file in them). A folder in gives a folder out "
            "with the same names; a single file in may be written to a file name of another supported "
            "format (e.g. in.tif -> out.ome.zarr)."
        ),
        epilog="Exit codes: 0 all done, 1 some files failed, 2 bad arguments, 130 interrupted, 143 terminated.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    p.add_argument("-o", "--output", required=True, help="output folder (or a file name for a single input)")
    which = p.add_argument_group("model (one of)")
    which.add_argument("--task", choices=TASKS, help="use the default model of this task")
    which.add_argument("--model", help="registry name (see `napari-hinet models`) or path to a weights file")
    p.add_argument(
        "--axes",
        help="axis letters of the inputs, e.g. YX, YXC, CYX, ZYX, TCZYX (default: from the file, else guessed)",
    )
    eng = p.add_argument_group("engine")
    eng.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, mps")
    eng.add_argument(
        "--precision", default="auto", choices=PRECISIONS, help="autocast precision (default: auto)"
    )
    eng.add_argument(
        "--tile", type=_positive_int, help="tile size in pixels (default: the model's patch size)"
    )
    eng.add_argument(
        "--overlap",
        type=_non_negative_int,
        help="tile overlap in pixels (default: tile // 4 up to 64-pixel tiles, then tile // 8, at least 16)",
    )
    eng.add_argument("--batch-size", type=_positive_int, help="tiles per forward pass (default: automatic)")
    eng.add_argument("--tiling", default="blend", choices=TILINGS, help="tiling scheme (default: blend)")
    eng.add_argument(
        "--normalization",
        default="auto",
        choices=NORMALIZATIONS,
        help="intensity mapping: fixed (dtype range), percentile (microscopy) or auto (default)",
    )
    eng.add_argument(
        "--percentiles",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="low and high percentile for --normalization percentile (default: 1 99.8)",
    )
    eng.add_argument(
        "--normalize-per",
        default="plane",
        choices=NORMALIZE_PER,
        help="percentiles per plane (default) or stack",
    )
    eng.add_argument("--compile", default="auto", choices=COMPILE_MODES, help="torch.compile the model (CPU)")
    eng.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="who runs the network: auto (default: OpenVINO for large CPU runs, else torch), torch, openvino (CPU only)",
    )
    eng.add_argument(
        "--stats",
        default="auto",
        choices=STATS,
        help="instance-norm statistics: auto (default: the model's choice), global (per tile), "
        "local (TLC windows of the training patch, large tiles)",
    )
    eng.add_argument(
        "--ensemble",
        action="store_true",
        help="self-ensemble: restore each tile in 8 orientations (4 flips for derain) and average; "
        "about +0.1-0.3 dB for 4-8x the time",
    )
    eng.add_argument(
        "--out-dtype",
        choices=("same", "float32"),
        default="same",
        help="output pixel type: same as the input (default) or float32 (TIFF/zarr only)",
    )
    run = p.add_argument_group("batch")
    run.add_argument(
        "--recursive", action="store_true", help="also restore images in sub-folders of a folder"
    )
    run.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="with --recursive, also search linked sub-folders that lie inside the input folder",
    )
    run.add_argument("--skip-existing", action="store_true", help="skip inputs whose output exists (resume)")
    run.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    run.add_argument("--dry-run", action="store_true", help="show what would be done; read and write nothing")
    run.add_argument(
        "--lazy",
        action="store_true",
        help="read TIFFs lazily (chunk by chunk, for files larger than memory); zarr is always lazy",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_restore)


# --------------------------------------------------------------------------- planning


@dataclass
class Job:
    """One input and where its result goes; ``action`` is "restore", "skip" or "overwrite"."""

    source: Path
    target: Path
    action: str = "restore"


@dataclass
class Outcome:
    """What happened to the jobs of one run."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, result: FileResult) -> None:
        """Count one file's result."""
        if result.status == "restored":
            self.done.append(result.job.source)
        elif result.status == "skipped":
            self.skipped.append(result.job.source)
        else:
            self.failed.append((result.job.source, result.reason))


@dataclass
class FileResult:
    """What :func:`restore_files` did with one job: ``status`` is "restored", "skipped" or "failed"
    (``reason`` says why)."""

    job: Job
    status: str
    reason: str = ""


#: suffixes of image or data files that ``-o`` cannot write (a name with one of them is not a folder name)
_UNWRITABLE_SUFFIXES = (
    ".bmp",
    ".gif",
    ".webp",
    ".jp2",
    ".j2k",
    ".tga",
    ".ppm",
    ".pgm",
    ".pbm",
    ".exr",
    ".hdr",
    ".heic",
    ".npy",
    ".npz",
    ".h5",
    ".hdf5",
    ".n5",
    ".czi",
    ".nd2",
    ".lif",
    ".lsm",
    ".ims",
    ".mrc",
    ".dcm",
    ".nii",
    ".svs",
    ".vsi",
    ".avi",
    ".mp4",
    ".mov",
)


def plan_jobs(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    recursive: bool = False,
    follow_symlinks: bool = False,
) -> list[Job]:
    """Pair each input image with its output path.

    A folder input contributes its images (names kept, sub-folders kept with
    ``recursive``). With exactly one input file, ``output`` may be a file name
    with a supported suffix (the format may differ); otherwise ``output`` is a
    folder and each output has its input's name.

    Raises:
        UsageError: a missing input, an unsupported file named explicitly, a
            folder that cannot be listed, no images found, an output name with
            an image suffix that cannot be written (``out.bmp``), an output folder
            that is an input folder, two inputs with the same output name, or an
            output that would overwrite its input.
    """
    out = Path(output)
    if out.suffix.lower() in _UNWRITABLE_SUFFIXES and not out.is_dir():
        raise UsageError(
            f"output {out} names a {out.suffix} file, which cannot be written; give a folder, or for a "
            f"single input a file name ending in one of {', '.join(imio.SUPPORTED_SUFFIXES)}"
        )
    pairs: list[tuple[Path, Path]] = []  # (file, path relative to the output folder)
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise UsageError(f"input {path} does not exist")
        if imio.is_supported(path) and (path.is_file() or imio.file_format(path) in ("zarr", "ome-zarr")):
            pairs.append((path, Path(path.name)))
        elif path.is_dir():
            inside = out.resolve()
            if inside == path.resolve():
                raise UsageError(
                    f"the output folder {out} is the input folder {path}: the results would replace the "
                    "inputs; choose another output folder"
                )
            try:
                listed = imio.list_images(path, recursive=recursive, follow_symlinks=follow_symlinks)
            except OSError as exc:
                raise UsageError(
                    f"cannot list the folder {exc.filename or path}: {exc.strerror or exc}"
                ) from None
            found = [  # never take earlier outputs (an output folder inside the input folder) as inputs
                f for f in listed if inside not in f.resolve().parents and f.resolve() != inside
            ]
            if not found:
                raise UsageError(
                    f"folder {path} holds no supported images ({', '.join(imio.SUPPORTED_SUFFIXES)})"
                    + ("" if recursive else "; use --recursive to search sub-folders")
                )
            pairs.extend((f, f.relative_to(path)) for f in found)
        else:
            raise UsageError(
                f"input {path} is not a supported image; supported suffixes: {', '.join(imio.SUPPORTED_SUFFIXES)}"
            )
    single_file = len(pairs) == 1 and Path(inputs[0]) == pairs[0][0]
    if single_file and imio.is_supported(out) and not (out.is_dir() and imio.file_format(out) is None):
        jobs = [Job(pairs[0][0], out)]
    else:
        if out.exists() and not out.is_dir():
            raise UsageError(f"output {out} is a file; give a folder for {len(pairs)} inputs")
        if imio.is_supported(out) and imio.file_format(out) not in ("zarr", "ome-zarr") and len(pairs) > 1:
            raise UsageError(
                f"output {out} looks like a file name but there are {len(pairs)} inputs; give a folder"
            )
        jobs = [Job(src, out / rel) for src, rel in pairs]
    seen: dict[Path, Path] = {}
    for job in jobs:
        key = job.target.resolve()
        if key in seen:
            raise UsageError(f"{seen[key]} and {job.source} would both be written to {job.target}")
        if key == job.source.resolve():
            raise UsageError(f"output {job.target} is the input itself; choose another output folder")
        seen[key] = job.source
    return jobs


def mark_existing(jobs: list[Job], skip_existing: bool, overwrite: bool) -> None:
    """Set the action of jobs whose output exists: "skip" or "overwrite"; raise
    :class:`UsageError` naming them when neither is allowed."""
    clashes = []
    for job in jobs:
        if job.target.exists():
            if skip_existing:
                job.action = "skip"
            elif overwrite:
                job.action = "overwrite"
            else:
                clashes.append(job.target)
    if clashes:
        shown = ", ".join(str(p) for p in clashes[:3]) + (" ..." if len(clashes) > 3 else "")
        raise UsageError(
            f"{len(clashes)} output(s) exist already ({shown}); pass --skip-existing to keep them "
            "(resume a batch) or --overwrite to replace them"
        )


def check_outputs(jobs: Sequence[Job], settings: Any) -> None:
    """Refuse, before anything is computed, outputs that could not be written.

    Rules, in this order: 1. ``out_dtype="float32"`` cannot go to PNG or JPEG;
    2. a PNG or JPEG output must be able to hold its input's dtype and shape
    (:func:`napari_hinet.io.check_writable`; the input's header is read, an
    unreadable input is left to fail on its own); 3. every output folder must be
    a folder (or creatable) and writable, which is tried by creating and
    removing a hidden file in it. Raises :class:`UsageError`.
    """
    import tempfile

    if settings.out_dtype == "float32":
        for job in jobs:
            if job.action != "skip" and imio.file_format(job.target) in ("png", "jpeg"):
                raise UsageError(
                    f"--out-dtype float32 cannot be written as {job.target.suffix} ({job.target}); "
                    "write .tif or .zarr, or drop --out-dtype"
                )
    for job in jobs:
        if job.action == "skip" or imio.file_format(job.target) not in ("png", "jpeg"):
            continue
        try:
            meta = imio.read_image(job.source, lazy=True).meta
        except imio.ImageFormatError:
            continue  # reported when the file's turn comes; the batch goes on
        try:
            imio.check_writable(job.target, settings.out_dtype or meta.dtype, meta.shape)
        except imio.ImageFormatError as exc:
            raise UsageError(f"{exc} (input {job.source}: {meta.dtype}, shape {tuple(meta.shape)})") from None
    for folder in sorted({job.target.parent for job in jobs if job.action != "skip"}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".napari-hinet-write-test-"):
                pass
        except OSError as exc:
            raise UsageError(
                f"cannot write into the output folder {folder} ({exc.strerror or exc}); "
                "choose a folder you can write to"
            ) from None


# --------------------------------------------------------------------------- running


def settings_from_args(args: argparse.Namespace) -> Any:
    """The one :class:`~napari_hinet.settings.RestoreSettings` object for this run."""
    from ..settings import RestoreSettings

    if not args.task and not args.model:
        raise UsageError("say which model to use: --task denoise|deblur|derain, or --model NAME|PATH")
    if args.tile is not None and args.overlap is not None and args.overlap >= args.tile:
        raise UsageError(f"--overlap ({args.overlap}) must be smaller than --tile ({args.tile})")
    values = {
        "model": args.model,
        "task": args.task,
        "axes": args.axes.upper() if args.axes else None,
        "device": args.device,
        "precision": args.precision,
        "tile": args.tile,
        "overlap": args.overlap,
        "batch_size": args.batch_size,
        "tiling": args.tiling,
        "normalization": args.normalization,
        "normalize_per": args.normalize_per,
        "compile": args.compile,
        "backend": args.backend,
        "stats": args.stats,
        "ensemble": args.ensemble,
        "out_dtype": None if args.out_dtype == "same" else args.out_dtype,
    }
    if args.percentiles is not None:
        values["percentiles"] = tuple(args.percentiles)
    try:
        return RestoreSettings(**values)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from exc


def _check_model_exists(settings: Any) -> None:
    """Fail early (exit 2) for a model name that the registry does not know or lacks."""
    if not settings.model:
        return
    if Path(settings.model).expanduser().exists():
        return
    from ..registry import list_models

    models = {m.name: m for m in list_models()}
    info = models.get(settings.model)
    if info is None:
        looks_like_path = any(sep in settings.model for sep in ("/", "\\")) or Path(settings.model).suffix
        if looks_like_path:
            raise UsageError(f"model file {settings.model} does not exist")
        raise UsageError(
            f"unknown model {settings.model!r}; known models: {', '.join(models)} "
            "(see `napari-hinet models`), or give a path to a weights file"
        )
    if not info.available:
        raise UsageError(info.missing_message())


def restore_files(
    jobs: Sequence[Job],
    settings: Any,
    restorer: Any,
    *,
    lazy: bool = False,
    tiles: Callable[[Job, int, int], None] | None = None,
    cancel: Any = None,
    dask_progress: bool = False,
) -> Iterator[FileResult]:
    """Restore each job's input into its target, in order; what ``napari-hinet restore`` runs.

    Rules, in this order: 1. a job whose action is "skip" is not read; 2. a file
    that fails (unreadable, bad values...) is reported and the batch goes on; 3.
    ``cancel`` (a ``threading.Event`` or a callable returning True) stops inside
    the current file by raising :class:`napari_hinet.engine.Cancelled`, and
    Ctrl-C (``KeyboardInterrupt``) is passed on; a file is written atomically,
    so a stopped file leaves no output.

    Args:
        jobs: from :func:`plan_jobs` (and :func:`mark_existing`).
        settings: the run's :class:`~napari_hinet.settings.RestoreSettings`.
        restorer: the :class:`~napari_hinet.engine.Restorer` for those settings.
        lazy: read inputs lazily (dask) when the format allows it.
        tiles: called as ``tiles(job, done, total)`` after every batch of tiles.
        dask_progress: show a text progress bar for lazy (dask) inputs.

    Yields one :class:`FileResult` per job, after the job.
    """
    for job in jobs:
        if job.action == "skip":
            yield FileResult(job, "skipped")
            continue
        progress = None if tiles is None else (lambda done, total, job=job: tiles(job, done, total))
        try:
            _restore_one(job, restorer, settings, lazy, progress, cancel, dask_progress)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one bad file must not stop the batch
            from ..engine import Cancelled

            if isinstance(exc, (Cancelled, imio.OutputSpaceError)):  # no space: every next file would fail
                raise
            yield FileResult(job, "failed", _reason(job.source, exc))
        else:
            yield FileResult(job, "restored")


def _restore_one(
    job: Job,
    restorer: Any,
    settings: Any,
    lazy: bool,
    progress: Callable[[int, int], None] | None,
    cancel: Any,
    dask_progress: bool,
) -> None:
    import numpy as np

    image = imio.read_image(job.source, lazy=lazy)
    if settings.axes:
        axes = settings.axes
    else:
        axes = image.meta.axes
    if is_dask_array(image.data):
        from ..engine.lazy import restore_dask

        result = restore_dask(image.data, settings=settings, axes=axes)
        with DaskBar(job.source.name, enabled=dask_progress):
            imio.write_image(job.target, result, image.meta)
    else:
        result = restorer.restore(
            np.asarray(image.data), settings, progress=progress, cancel=cancel, axes=axes
        )
        imio.write_image(job.target, result, image.meta)


def _load_restorer(settings: Any) -> Any:
    from ..engine import get_restorer

    try:
        # the per-process model cache, shared with the dask path: zarr inputs reuse this very model
        return get_restorer(**settings.model_kwargs())
    except (ValueError, TypeError, LookupError, FileNotFoundError, RuntimeError) as exc:
        raise UsageError(f"cannot load the model: {exc}") from exc


def run_restore(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """``napari-hinet restore``: plan, then restore each input; returns the exit code."""
    out = out or sys.stdout
    settings = settings_from_args(args)
    if args.skip_existing and args.overwrite:
        raise UsageError("--skip-existing and --overwrite exclude each other")
    jobs = plan_jobs(args.inputs, args.output, recursive=args.recursive, follow_symlinks=args.follow_symlinks)
    mark_existing(jobs, args.skip_existing, args.overwrite)
    _check_model_exists(settings)
    if args.dry_run:
        for job in jobs:
            print(f"{job.action:9s} {job.source} -> {job.target}", file=out)
        todo = sum(job.action != "skip" for job in jobs)
        print(
            f"dry run: {todo} to restore, {len(jobs) - todo} to skip; nothing was read or written", file=out
        )
        return EXIT_OK
    check_outputs(jobs, settings)
    restorer = _load_restorer(settings)
    try:  # tile and overlap against this model's patch size, before any file is computed
        restorer.plan((1024, 1024), settings, axes=None, rgb=None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    progress = not args.no_progress
    outcome = Outcome()
    start = time.perf_counter()
    interrupted: KeyboardInterrupt | None = None
    files_bar = open_files_bar(len(jobs), progress)
    bars: dict[Path, TileBar] = {}

    def tiles(job: Job, done: int, total: int) -> None:
        bars.setdefault(job.source, TileBar(job.source.name, progress))(done, total)

    try:
        for result in restore_files(
            jobs, settings, restorer, lazy=args.lazy, tiles=tiles, dask_progress=progress
        ):
            bar = bars.pop(result.job.source, None)
            if bar is not None:
                bar.close()
            if result.status == "failed":
                write_line(f"FAILED {result.job.source}: {result.reason}", progress, out)
            outcome.add(result)
            files_bar.update(1)
    except KeyboardInterrupt as exc:
        interrupted = exc
    except imio.OutputSpaceError:
        _print_summary(outcome, len(jobs), time.perf_counter() - start, None, out)
        raise
    finally:
        for bar in bars.values():
            bar.close()
        files_bar.close()
    _print_summary(outcome, len(jobs), time.perf_counter() - start, interrupted, out)
    if isinstance(interrupted, Terminated):
        return EXIT_TERMINATED
    if interrupted is not None:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if outcome.failed else EXIT_OK


def _reason(source: Path, exc: Exception) -> str:
    """The error message without a repeated file name; the exception type for unexpected errors."""
    text = str(exc)
    prefix = f"{source}: "
    if text.startswith(prefix):
        text = text[len(prefix) :]
    if isinstance(exc, (imio.ImageFormatError, ValueError, TypeError, MemoryError)):
        return text
    return f"{type(exc).__name__}: {text}"


def _print_summary(
    outcome: Outcome, total: int, seconds: float, interrupted: BaseException | None, out: TextIO
) -> None:
    left = total - len(outcome.done) - len(outcome.skipped) - len(outcome.failed)
    line = (
        f"restored {len(outcome.done)}, skipped {len(outcome.skipped)} (output exists), "
        f"failed {len(outcome.failed)}"
    )
    if interrupted is not None:
        line += f", not done {left} (interrupted; rerun with --skip-existing to resume)"
    print(f"{line} in {seconds:.1f} s", file=out)
    for path, reason in outcome.failed:
        print(f"  failed: {path}: {reason}", file=out)
