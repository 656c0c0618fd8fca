"""The ``napari-hinet`` command line: argument checks, models/info, and restoring folders."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_hinet import cli

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Two tiny random models (wf=8, depth=3): RGB and gray, saved as .safetensors."""
    import torch

    from napari_hinet.checkpoints import save_model
    from napari_hinet.model import HINet

    folder = tmp_path_factory.mktemp("tiny-models")
    torch.manual_seed(0)
    common = {"task": "denoise", "patch_size": 64, "description": "tiny random test model"}
    rgb = save_model(
        HINet(in_chn=3, wf=8, depth=3),
        folder / "tiny-rgb.safetensors",
        channels="rgb",
        normalization="fixed",
        **common,
    )
    gray = save_model(
        HINet(in_chn=1, wf=8, depth=3),
        folder / "tiny-gray.safetensors",
        channels="gray",
        normalization="fixed",
        **common,
    )
    return {"rgb": rgb, "gray": gray}


def run_cli(*argv: str) -> tuple[int, str]:
    """Run ``main`` in-process; return (exit code, stdout+stderr)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = cli.main(list(argv))
    return code, buf.getvalue()


# --------------------------------------------------------------------------- arguments


def test_help_and_version():
    code, text = run_cli("--version")
    assert code == 0 and "napari-hinet" in text
    code, text = run_cli("restore", "--help")
    assert code == 0 and "--skip-existing" in text and "Exit codes" in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["restore", "in.tif"], "-o/--output"),  # argparse: missing required option
        (["restore", "x.tif", "-o", "out", "--tile", "0"], "expected a number > 0"),
        (["restore", "x.tif", "-o", "out", "--tiling", "grid"], "invalid choice"),
        (["restore", "x.tif", "-o", "out", "--task", "sharpen"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2(argv, message):
    code, text = run_cli(*argv)
    assert code == 2
    assert message in text


def test_semantic_argument_errors_exit_2(tmp_path, tiny_models):
    img = tmp_path / "a.png"
    iio.imwrite(img, np.zeros((8, 8), np.uint8))
    (tmp_path / "empty").mkdir()
    cases = [
        (["restore", str(img), "-o", str(tmp_path / "o")], "say which model"),
        (["restore", str(tmp_path / "nope.tif"), "-o", "o", "--task", "denoise"], "does not exist"),
        (["restore", str(tmp_path / "empty"), "-o", "o", "--task", "denoise"], "holds no supported images"),
        (["restore", str(img), "-o", str(tmp_path / "o"), "--model", "no-such-model"], "unknown model"),
        (
            ["restore", str(img), "-o", str(tmp_path / "o"), "--model", "HINet-GoPro"],
            "Download HINet-GoPro.pth",
        ),
        (
            ["restore", str(img), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "m.safetensors")],
            "does not exist",
        ),
        (
            [
                "restore",
                str(img),
                "-o",
                str(tmp_path / "o"),
                "--model",
                str(tiny_models["gray"]),
                "--tile",
                "32",
                "--overlap",
                "32",
            ],
            "smaller than --tile",
        ),
        (["restore", str(img), "-o", str(img), "--model", str(tiny_models["gray"])], "is the input itself"),
        (
            [
                "restore",
                str(img),
                "-o",
                str(tmp_path / "o"),
                "--model",
                str(tiny_models["gray"]),
                "--skip-existing",
                "--overwrite",
            ],
            "exclude each other",
        ),
    ]
    for argv, message in cases:
        code, text = run_cli(*argv)
        assert code == 2, (argv, text)
        assert message in text, (argv, text)


def test_existing_outputs_need_skip_or_overwrite(tmp_path, tiny_models):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    iio.imwrite(tmp_path / "in" / "a.png", np.zeros((8, 8), np.uint8))
    iio.imwrite(tmp_path / "out" / "a.png", np.zeros((8, 8), np.uint8))
    code, text = run_cli(
        "restore",
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "out"),
        "--model",
        str(tiny_models["gray"]),
        "--dry-run",
    )
    assert code == 2 and "--skip-existing" in text and "--overwrite" in text


def test_plan_jobs_names_and_clashes(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.tif", "b.png", "sub/c.jpg"):
        (folder / name).write_bytes(b"")
    jobs = cli.plan_jobs([folder], tmp_path / "out")
    assert [(j.source.name, j.target) for j in jobs] == [
        ("a.tif", tmp_path / "out" / "a.tif"),
        ("b.png", tmp_path / "out" / "b.png"),
    ]
    jobs = cli.plan_jobs([folder], tmp_path / "out", recursive=True)
    assert jobs[-1].target == tmp_path / "out" / "sub" / "c.jpg"
    # one file to a file name of another format; several files need a folder
    assert cli.plan_jobs([folder / "a.tif"], tmp_path / "x.ome.zarr")[0].target == tmp_path / "x.ome.zarr"
    with pytest.raises(cli.UsageError, match="looks like a file name"):
        cli.plan_jobs([folder / "a.tif", folder / "b.png"], tmp_path / "x.tif")
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.tif").write_bytes(b"")
    with pytest.raises(cli.UsageError, match="would both be written"):
        cli.plan_jobs([folder / "a.tif", other / "a.tif"], tmp_path / "out")
    with pytest.raises(cli.UsageError, match="not a supported image"):
        (tmp_path / "notes.txt").write_text("x")
        cli.plan_jobs([tmp_path / "notes.txt"], tmp_path / "out")


def test_dry_run_reads_and_writes_nothing(tmp_path, tiny_models):
    folder = tmp_path / "in"
    folder.mkdir()
    iio.imwrite(folder / "a.png", np.zeros((8, 8), np.uint8))
    (folder / "b.tif").write_bytes(b"corrupt, but a dry run does not read it")
    (tmp_path / "out").mkdir()
    iio.imwrite(tmp_path / "out" / "a.png", np.zeros((8, 8), np.uint8))
    code, text = run_cli(
        "restore",
        str(folder),
        "-o",
        str(tmp_path / "out"),
        "--model",
        str(tiny_models["gray"]),
        "--dry-run",
        "--skip-existing",
    )
    assert code == 0
    assert "skip" in text and "a.png" in text and "restore" in text and "b.tif" in text
    assert "1 to restore, 1 to skip" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


# --------------------------------------------------------------------------- models / info


def test_models_lists_availability_and_where_to_get(tiny_models, tmp_models_dir):
    import shutil

    shutil.copy(tiny_models["rgb"], tmp_models_dir / "tiny-rgb.safetensors")
    code, text = run_cli("models")
    assert code == 0
    assert "tiny-rgb" in text and "HINet-GoPro" in text
    assert "Download HINet-GoPro.pth" in text
    code, text = run_cli("models", "--json", "--task", "denoise")
    rows = json.loads(text)
    by_name = {r["name"]: r for r in rows}
    assert by_name["tiny-rgb"]["available"] is True and by_name["tiny-rgb"]["task"] == "denoise"
    assert (
        by_name["HINet-SIDD-1x"]["available"] is False
        and "drive.google.com" in by_name["HINet-SIDD-1x"]["where_to_get"]
    )
    assert all(r["task"] in ("denoise", "unknown") for r in rows)


def test_info_reports_versions_and_folders(tmp_models_dir):
    code, text = run_cli("info", "--json")
    assert code == 0
    info = json.loads(text)
    assert info["packages"]["torch"] and info["packages"]["tifffile"]
    assert info["user_models_dir"] == str(tmp_models_dir)
    code, text = run_cli("info")
    assert code == 0 and "devices:" in text and "napari-hinet" in text
