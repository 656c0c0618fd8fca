"""The ``napari-hinet`` command line: argument checks, models/info, and restoring folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_hinet import cli
from napari_hinet import io as imio

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
    # an output folder inside the input folder is not searched for inputs
    (folder / "restored").mkdir()
    (folder / "restored" / "a.tif").write_bytes(b"")
    jobs = cli.plan_jobs([folder], folder / "restored", recursive=True)
    assert [j.target.relative_to(folder / "restored").as_posix() for j in jobs] == [
        "a.tif",
        "b.png",
        "sub/c.jpg",
    ]
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


def test_train_is_hooked_in_and_light_commands_do_not_import_torch():
    code, text = run_cli("train", "--help")
    assert code == 0 and "--mode" in text
    probe = (
        "import sys; from napari_hinet import cli; code = cli.main(['models']); "
        "print('TORCH', 'torch' in sys.modules, code)"
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert "TORCH False 0" in result.stdout, result.stdout + result.stderr


def test_info_reports_versions_and_folders(tmp_models_dir):
    code, text = run_cli("info", "--json")
    assert code == 0
    info = json.loads(text)
    assert info["packages"]["torch"] and info["packages"]["tifffile"]
    assert info["user_models_dir"] == str(tmp_models_dir)
    code, text = run_cli("info")
    assert code == 0 and "devices:" in text and "napari-hinet" in text


# --------------------------------------------------------------------------- restoring


def _engine(model_path, image, **kw):
    from napari_hinet.engine import restore

    return restore(image, str(model_path), device="cpu", precision="fp32", compile="off", batch_size=1, **kw)


def _mixed_folder(folder):
    """TIFF (OME, ImageJ, plain RGB) and PNG (gray 8/16-bit, RGB) inputs, plus one corrupt file."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    images = {
        "a.ome.tif": rng.integers(0, 4000, (2, 70, 90), dtype=np.uint16),
        "b.tif": rng.integers(0, 255, (60, 50, 3), dtype=np.uint8),
        "c.png": rng.integers(0, 255, (40, 70), dtype=np.uint8),
        "d.png": rng.integers(0, 65535, (50, 40), dtype=np.uint16),
        "e.tif": rng.random((3, 40, 30), dtype=np.float32),
    }
    tifffile.imwrite(
        folder / "a.ome.tif",
        images["a.ome.tif"],
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.3, "PhysicalSizeXUnit": "µm", "PhysicalSizeZ": 2.0},
    )
    tifffile.imwrite(
        folder / "b.tif", images["b.tif"], photometric="rgb", resolution=(300, 300), resolutionunit="INCH"
    )
    iio.imwrite(folder / "c.png", images["c.png"])
    iio.imwrite(folder / "d.png", images["d.png"])
    tifffile.imwrite(folder / "e.tif", images["e.tif"], imagej=True, metadata={"axes": "ZYX", "spacing": 1.5})
    (folder / "f.tif").write_bytes(b"not a tiff at all")
    return images


def test_restore_mixed_folder_keeps_names_dtypes_shapes_metadata(tmp_path, tiny_models):
    images = _mixed_folder(tmp_path / "in")
    code, text = run_cli(
        "restore",
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "out"),
        "--model",
        str(tiny_models["gray"]),
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--compile",
        "off",
        "--batch-size",
        "1",
        "--no-progress",
    )
    assert code == 1, text  # the corrupt file fails, the others are done
    assert "restored 5, skipped 0 (output exists), failed 1" in text
    assert "f.tif" in text and "cannot read it as tiff" in text
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["a.ome.tif", "b.tif", "c.png", "d.png", "e.tif"]
    for name, data in images.items():
        result = imio.read_image(out / name)
        assert result.data.shape == data.shape and result.data.dtype == data.dtype, name
        axes = imio.read_image(tmp_path / "in" / name).meta.axes
        np.testing.assert_array_equal(
            result.data, _engine(tiny_models["gray"], data, axes=axes), err_msg=name
        )
    with tifffile.TiffFile(out / "a.ome.tif") as tif:
        assert tif.is_ome and tif.series[0].axes == "ZYX" and len(tif.pages) == 2
        assert 'PhysicalSizeX="0.3"' in tif.ome_metadata and 'PhysicalSizeZ="2.0"' in tif.ome_metadata
    with tifffile.TiffFile(out / "b.tif") as tif:
        assert (
            tif.pages[0].resolution == (300.0, 300.0) and tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
        )
    with tifffile.TiffFile(out / "e.tif") as tif:
        assert tif.is_imagej and tif.imagej_metadata["spacing"] == 1.5


def test_ensemble_flag_restores_like_the_engine_with_ensemble(tmp_path, tiny_models):
    img = np.random.default_rng(3).integers(0, 4000, (40, 50), dtype=np.uint16)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", img)
    model = tiny_models["gray"]
    argv = ["--model", str(model), "--device", "cpu", "--precision", "fp32", "--compile", "off"]
    code, text = run_cli(
        "restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *argv, "--batch-size", "1",
        "--no-progress", "--ensemble",
    )  # fmt: skip
    assert code == 0, text
    result = imio.read_image(tmp_path / "out" / "a.tif").data
    np.testing.assert_array_equal(result, _engine(model, img, axes="YX", ensemble=True))
    assert not np.array_equal(result, _engine(model, img, axes="YX"))


def test_restore_zarr_in_zarr_out_and_format_conversion(tmp_path, tiny_models):
    import zarr

    data = np.random.default_rng(1).integers(0, 4000, (2, 150, 140), dtype=np.uint16)
    src = zarr.create_array(str(tmp_path / "s.zarr"), shape=data.shape, chunks=(1, 64, 64), dtype="uint16")
    src[...] = data
    src.attrs["axes"] = "ZYX"
    common = [
        "--model",
        str(tiny_models["gray"]),
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--compile",
        "off",
        "--batch-size",
        "1",
        "--no-progress",
    ]
    code, text = run_cli("restore", str(tmp_path / "s.zarr"), "-o", str(tmp_path / "out"), *common)
    assert code == 0, text
    out = zarr.open(str(tmp_path / "out" / "s.zarr"), mode="r")
    assert out.attrs["axes"] == "ZYX" and out.dtype == np.uint16
    expected = _engine(tiny_models["gray"], data, axes="ZYX")
    np.testing.assert_array_equal(out[...], expected)
    # one TIFF to OME-Zarr, float32 output: physical sizes carried over
    tifffile.imwrite(
        tmp_path / "t.ome.tif",
        data,
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
    )
    code, text = run_cli(
        "restore",
        str(tmp_path / "t.ome.tif"),
        "-o",
        str(tmp_path / "t.ome.zarr"),
        "--out-dtype",
        "float32",
        *common,
    )
    assert code == 0, text
    ome = imio.read_image(tmp_path / "t.ome.zarr")
    assert ome.meta.format == "ome-zarr" and ome.meta.axes == "ZYX" and ome.meta.scale["X"] == 0.5
    assert ome.data.dtype == np.float32 and ome.data.shape == data.shape


def test_per_file_errors_do_not_stop_the_batch(tmp_path, tiny_models):
    folder = tmp_path / "in"
    folder.mkdir()
    iio.imwrite(folder / "a.png", np.zeros((40, 40), np.uint8))
    (folder / "b.png").write_bytes(b"not a png")  # fails when read; a.png is still restored
    code, text = run_cli(
        "restore",
        str(folder),
        "-o",
        str(tmp_path / "out"),
        "--model",
        str(tiny_models["gray"]),
        "--device",
        "cpu",
        "--no-progress",
    )
    assert code == 1
    assert "cannot read it as png" in text and "restored 1" in text and "failed 1" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]
    # --out-dtype float32 to PNG is refused before anything is computed (tests/reliability)


def test_unknown_device_is_a_usage_error(tmp_path, tiny_models):
    iio.imwrite(tmp_path / "a.png", np.zeros((40, 40), np.uint8))
    code, text = run_cli(
        "restore",
        str(tmp_path / "a.png"),
        "-o",
        str(tmp_path / "out"),
        "--model",
        str(tiny_models["gray"]),
        "--device",
        "tpu",
    )
    assert code == 2 and "cpu" in text and "tpu" in text


@pytest.mark.slow
def test_interrupted_batch_resumes_with_skip_existing(tmp_path, tiny_models):
    """Kill -9 (a crash), then Ctrl-C, then --skip-existing: no partial outputs, finished ones kept."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for k in range(10):
        tifffile.imwrite(folder / f"img{k:02d}.tif", rng.integers(0, 4000, (192, 192), dtype=np.uint16))
    out = tmp_path / "out"
    argv = [
        sys.executable,
        "-m",
        "napari_hinet.cli",
        "restore",
        str(folder),
        "-o",
        str(out),
        "--model",
        str(tiny_models["gray"]),
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--compile",
        "off",
        "--no-progress",
    ]
    env = dict(
        os.environ,
        PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        OMP_WAIT_POLICY="PASSIVE",
    )

    def finished():
        return sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.exists() else []

    def run_until(n_done, sig, extra=()):
        proc = subprocess.Popen(
            [*argv, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 300
        while len(finished()) < n_done and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(sig)
        text, _ = proc.communicate(timeout=120)
        return proc.returncode, text

    code, _ = run_until(1, signal.SIGKILL)
    assert code == -signal.SIGKILL
    after_crash = finished()
    assert 1 <= len(after_crash) < 10
    for name in after_crash:  # every visible output is complete
        assert tifffile.imread(out / name).shape == (192, 192)
    stamps = {name: (out / name).stat().st_mtime_ns for name in after_crash}

    code, text = run_until(len(after_crash) + 1, signal.SIGINT, ["--skip-existing"])
    assert code == 130, text
    assert "interrupted" in text and "--skip-existing" in text
    assert not [p for p in out.iterdir() if p.name.endswith(imio.PARTIAL_SUFFIX)]
    after_int = finished()
    assert len(after_int) < 10

    result = subprocess.run([*argv, "--skip-existing"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"skipped {len(after_int)}" in result.stdout
    assert finished() == [f"img{k:02d}.tif" for k in range(10)]
    assert sorted(p.name for p in out.iterdir()) == finished()  # stale partials from the crash are gone
    for name, stamp in stamps.items():
        assert (out / name).stat().st_mtime_ns == stamp  # not rewritten
    for k in range(10):
        assert tifffile.imread(out / f"img{k:02d}.tif").dtype == np.uint16
