"""Bad parameters: every size and choice is bounded, with an error naming it, before any work."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_hinet.engine import Restorer
from napari_hinet.settings import MAX_TILE, RestoreSettings

from .conftest import run_cli, tiny_hinet

SETTINGS = [
    # id, fields, message regex
    ("tile-0", {"tile": 0}, "tile must be a positive integer"),
    ("tile-negative", {"tile": -64}, "tile must be a positive integer"),
    ("tile-float", {"tile": 64.5}, "tile must be a positive integer"),
    ("tile-huge", {"tile": MAX_TILE + 1}, f"tile must be at most {MAX_TILE}"),
    ("tile-1e9", {"tile": 10**9}, "would not fit in memory"),
    ("overlap-negative", {"overlap": -1}, "overlap must be a non-negative integer"),
    ("overlap-equal-tile", {"tile": 64, "overlap": 64}, r"half the tile \(32 for tile=64\)"),
    ("overlap-63-of-64", {"tile": 64, "overlap": 63}, "multiplies the number of tiles"),
    ("overlap-33-of-64", {"tile": 64, "overlap": 33}, "between 0 and half the tile"),
    ("overlap-float", {"overlap": 8.0}, "overlap must be a non-negative integer"),
    ("batch-0", {"batch_size": 0}, "batch_size must be a positive integer"),
    ("percentiles-reversed", {"percentiles": (99.0, 1.0)}, "percentiles must be"),
    ("percentiles-over-100", {"percentiles": (1.0, 101.0)}, "percentiles must be"),
    ("percentiles-three", {"percentiles": (1.0, 50.0, 99.0)}, "percentiles must be"),
    ("tiling", {"tiling": "grid"}, "tiling='grid' is not valid"),
    ("normalization", {"normalization": "zscore"}, "normalization='zscore' is not valid"),
    ("out-dtype", {"out_dtype": "uint8"}, "out_dtype='uint8' is not valid"),
    ("precision", {"precision": "fp8"}, "precision='fp8' is not valid"),
    ("compile", {"compile": "maybe"}, "compile='maybe' is not valid"),
    ("normalize-per", {"normalize_per": "tile"}, "normalize_per='tile' is not valid"),
    ("task", {"task": "sharpen"}, "task='sharpen' is not valid"),
    ("axes-number", {"axes": 3}, "axes must be a string"),
]


@pytest.mark.parametrize("fields,match", [c[1:] for c in SETTINGS], ids=[c[0] for c in SETTINGS])
def test_bad_setting_names_the_field(fields, match):
    with pytest.raises(ValueError, match=match):
        RestoreSettings(**fields)


@pytest.mark.parametrize("overlap", [0, 8, 16, 32])
def test_overlap_up_to_half_the_tile_is_accepted(overlap):
    assert RestoreSettings(tile=64, overlap=overlap).overlap == overlap


def test_overlap_bound_uses_the_model_tile_when_tile_is_not_given():
    """tile=None means the model's patch size (32 for the tiny model, depth 2): overlap 20 is too much."""
    model = tiny_hinet()
    model.metadata = {"patch_size": 32}
    restorer = Restorer(model, device="cpu", precision="fp32", compile="off")
    with pytest.raises(ValueError, match=r"half the tile \(16 for tile=32\)"):
        restorer.plan((512, 512), overlap=20)
    assert restorer.plan((512, 512), tile=64, overlap=16)["tiles"] == 121


def test_unknown_option_is_a_type_error():
    from napari_hinet import restore

    with pytest.raises(TypeError, match="tiles"):
        restore(np.zeros((8, 8), np.float32), tiny_hinet(), tiles=64, device="cpu")


def _tif(tmp_path, name="in.tif"):
    path = tmp_path / name
    tifffile.imwrite(path, (np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8))
    return str(path)


CLI = [
    # id, extra arguments, output name, message words
    ("overlap-over-model-tile", ["--overlap", "100"], "out", "half the tile"),
    ("overlap-over-tile", ["--tile", "32", "--overlap", "20"], "out", "half the tile (16 for tile=32)"),
    (
        "float32-to-png",
        ["--out-dtype", "float32"],
        "out.png",
        "--out-dtype float32 cannot be written as .png",
    ),
    ("float32-to-jpeg", ["--out-dtype", "float32"], "out.jpg", "cannot be written as .jpg"),
    ("tile-huge", ["--tile", "100000"], "out", f"tile must be at most {MAX_TILE}"),
    ("tile-zero", ["--tile", "0"], "out", "expected a number > 0"),
    ("tile-text", ["--tile", "big"], "out", "expected a whole number"),
    ("overlap-negative", ["--overlap", "-4"], "out", "expected a number >= 0"),
    (
        "percentiles-reversed",
        ["--normalization", "percentile", "--percentiles", "99", "1"],
        "out",
        "percentiles",
    ),
    ("skip-and-overwrite", ["--skip-existing", "--overwrite"], "out", "exclude each other"),
    ("device-unknown", ["--device", "tpu:7"], "out", "tpu"),
    ("model-missing-file", ["--model", "nowhere/model.pth"], "out", "does not exist"),
    ("model-unknown-name", ["--model", "no-such-model"], "out", "unknown model 'no-such-model'"),
]


@pytest.mark.parametrize("extra,output,words", [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_cli_refuses_before_computing(tmp_path, tiny_files, extra, output, words):
    model = [] if any(a == "--model" for a in extra) else ["--model", str(tiny_files["safetensors"])]
    code, text = run_cli(
        "restore", _tif(tmp_path), "-o", str(tmp_path / output), *model, *extra, "--no-progress"
    )
    assert code == 2, text
    assert words in text and "Traceback" not in text
    assert (
        not (tmp_path / output).exists()
        or (tmp_path / output).is_dir()
        and not any((tmp_path / output).iterdir())
    )


@pytest.mark.parametrize(
    "output", ["/proc/napari-hinet-out", "{tmp}/in.tif/sub"], ids=["read-only-fs", "inside-a-file"]
)
def test_cli_unwritable_output_folder_is_refused_before_computing(tmp_path, tiny_files, output):
    source = _tif(tmp_path)
    code, text = run_cli(
        "restore",
        source,
        "-o",
        output.format(tmp=tmp_path),
        "--model",
        str(tiny_files["safetensors"]),
        "--no-progress",
    )
    assert code == 2, text
    assert "cannot write into the output folder" in text


def test_cli_without_a_model_choice(tmp_path):
    code, text = run_cli("restore", _tif(tmp_path), "-o", str(tmp_path / "out"))
    assert code == 2 and "say which model to use" in text


INPUTS_FOR_PILLOW = [
    # id, input array, output name, message words
    ("float32-tif-to-png", np.zeros((40, 40), np.float32), "out.png", "PNG cannot store float32"),
    ("uint16-tif-to-jpeg", np.zeros((40, 40), np.uint16), "out.jpg", "JPEG cannot store uint16"),
    ("stack-to-png", np.zeros((3, 40, 40), np.uint8), "out.png", "PNG holds one 2-D"),
]


@pytest.mark.parametrize(
    "data,output,words", [c[1:] for c in INPUTS_FOR_PILLOW], ids=[c[0] for c in INPUTS_FOR_PILLOW]
)
def test_cli_input_a_format_cannot_hold_is_refused_before_computing(
    tmp_path, tiny_files, data, output, words
):
    tifffile.imwrite(tmp_path / "in.tif", data, photometric="minisblack")
    code, text = run_cli(
        "restore",
        str(tmp_path / "in.tif"),
        "-o",
        str(tmp_path / output),
        "--model",
        str(tiny_files["safetensors"]),
        "--no-progress",
    )
    assert code == 2, text
    assert words in text and "restored" not in text and not (tmp_path / output).exists()
