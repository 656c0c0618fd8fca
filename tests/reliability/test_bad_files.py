"""Bad image files: unreadable inputs and unwritable outputs give ImageFormatError or OutputSpaceError.

Reads name the file and what is wrong with it; writes that cannot succeed
leave nothing behind (no partial file, no stray temporary).
"""

from __future__ import annotations

import gc
import resource
import signal

import numpy as np
import pytest
import tifffile

from napari_hinet import io as imio
from napari_hinet.io import ImageFormatError, OutputSpaceError


def _png_bytes() -> bytes:
    import io

    import imageio.v3 as iio

    buf = io.BytesIO()
    iio.imwrite(buf, np.zeros((8, 8), np.uint8), extension=".png")
    return buf.getvalue()


READS = [
    # id, file name, content (bytes, or None for a folder), message regex
    ("empty-png", "a.png", b"", r"empty \(0 bytes\)"),
    ("empty-tif", "a.tif", b"", r"empty \(0 bytes\)"),
    ("empty-jpg", "a.jpg", b"", r"empty \(0 bytes\)"),
    ("text-png", "a.png", b"not an image\n", r"cannot read it as png"),
    ("text-jpg", "a.jpeg", b"not an image\n", r"cannot read it as jpeg"),
    ("text-tif", "a.tif", b"not an image\n", r"cannot read it as tiff"),
    ("random-tif", "a.tiff", bytes(range(256)) * 4, r"cannot read it as tiff"),
    ("tiff-header-only", "a.tif", b"II*\x00\x08\x00\x00\x00", r"cannot read it as tiff|holds no image"),
    ("truncated-png", "a.png", None, r"cannot read it as png"),
    ("png-named-tif", "a.tif", "png", r"cannot read it as tiff"),
    ("empty-zarr-folder", "a.zarr", "dir", r"cannot read it as zarr"),
    ("zarr-group-no-multiscales", "g.zarr", "group", r"without OME-Zarr 'multiscales'"),
    ("unsupported-suffix", "a.bmp", b"BM", r"unsupported file type"),
]


@pytest.mark.parametrize("name,content,match", [c[1:] for c in READS], ids=[c[0] for c in READS])
def test_unreadable_input_gives_image_format_error(tmp_path, name, content, match):
    path = tmp_path / name
    if content is None:
        path.write_bytes(_png_bytes()[:30])
    elif content == "png":
        path.write_bytes(_png_bytes())
    elif content == "dir":
        path.mkdir()
    elif content == "group":
        import zarr

        zarr.open_group(str(path), mode="w").create_array("x", shape=(4, 4), dtype="u1")
    else:
        path.write_bytes(content)
    with pytest.raises(ImageFormatError, match=match) as info:
        imio.read_image(path)
    assert name in str(info.value)
    assert "pyav" not in str(info.value).lower()  # no advice to install a video plugin


def test_missing_input(tmp_path):
    with pytest.raises(ImageFormatError, match="no such file"):
        imio.read_image(tmp_path / "gone.tif")


@pytest.mark.parametrize(
    "resolution,unit,scale",
    [
        ((3.0, 3.0), "CENTIMETER", 10000 / 3),
        ((300.0, 150.0), "INCH", 25400 / 300),
        ((1.0, 1.0), "NONE", None),
    ],
    ids=["3-px-per-cm", "300-dpi", "no-unit"],
)
def test_tiff_resolution_becomes_the_ome_zarr_scale(tmp_path, resolution, unit, scale):
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, np.zeros((16, 16), np.uint16), resolution=resolution, resolutionunit=unit)
    image = imio.read_image(src)
    imio.write_image(tmp_path / "out.ome.zarr", image.data, image.meta)
    back = imio.read_image(tmp_path / "out.ome.zarr")
    if scale is None:
        assert back.meta.scale.get("X", 1.0) == 1.0
    else:
        assert back.meta.scale["X"] == pytest.approx(scale)
        assert back.meta.units["X"] == "micrometer"


WRITES = [
    ("float-png", "o.png", np.zeros((8, 8), np.float32), r"PNG cannot store float32"),
    ("uint16-jpeg", "o.jpg", np.zeros((8, 8), np.uint16), r"JPEG cannot store uint16"),
    ("5-channel-png", "o.png", np.zeros((8, 8, 5), np.uint8), r"PNG holds one 2-D"),
    ("stack-jpeg", "o.jpg", np.zeros((2, 8, 8), np.uint8), r"JPEG holds one 2-D"),
    ("unsupported-out", "o.bmp", np.zeros((8, 8), np.uint8), r"unsupported output type"),
]


@pytest.mark.parametrize("name,data,match", [c[1:] for c in WRITES], ids=[c[0] for c in WRITES])
def test_unwritable_output_leaves_nothing(tmp_path, name, data, match):
    with pytest.raises(ImageFormatError, match=match):
        imio.write_image(tmp_path / name, data)
    assert list(tmp_path.iterdir()) == []


def test_file_over_an_existing_folder(tmp_path):
    (tmp_path / "o.tif").mkdir()
    with pytest.raises(ImageFormatError, match="cannot replace the folder"):
        imio.write_image(tmp_path / "o.tif", np.zeros((8, 8), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif"]


@pytest.fixture
def file_size_limit():
    """Writes beyond 64 kB fail in this process (EFBIG, or numpy's short write): a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        gc.collect()  # writers dropped by the failed write flush their buffers now, within the limit
        signal.signal(signal.SIGXFSZ, previous)


@pytest.mark.parametrize("name", ["o.tif", "o.ome.tif", "o.png", "o.zarr", "o.ome.zarr"])
def test_full_disk_is_a_clear_error_and_leaves_no_partial_file(tmp_path, file_size_limit, name):
    data = np.random.default_rng(0).integers(0, 65535, (256, 512), dtype=np.uint16)
    with pytest.raises(OutputSpaceError, match=r"not written, .*(space|limit).*partial file was removed"):
        imio.write_image(tmp_path / name, data)
    assert list(tmp_path.iterdir()) == []


def test_stale_partial_of_a_killed_write_is_removed(tmp_path):
    stale = tmp_path / f".o.tif.deadbeef{imio.PARTIAL_SUFFIX}"
    stale.write_bytes(b"half a file")
    imio.write_image(tmp_path / "o.tif", np.ones((8, 8), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif"]


def test_interrupted_write_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), imio.atomic_output(tmp_path / "o.tif") as tmp:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
