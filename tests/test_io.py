"""Reading and writing images: metadata kept, dtypes/shapes kept, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_hinet import io


def _ome_tiff(path, data, axes="ZCYX"):
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={
            "axes": axes,
            "PhysicalSizeX": 0.25,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": 0.25,
            "PhysicalSizeYUnit": "µm",
            "PhysicalSizeZ": 1.5,
            "Channel": {"Name": ["dapi", "gfp"]},
        },
        resolution=(4.0, 4.0),
        resolutionunit="CENTIMETER",
    )


def test_ome_tiff_roundtrip_keeps_xml_resolution_and_axes(tmp_path):
    data = np.random.default_rng(0).integers(0, 65535, (3, 2, 16, 20), dtype=np.uint16)
    _ome_tiff(tmp_path / "in.ome.tif", data)
    img = io.read_image(tmp_path / "in.ome.tif")
    assert img.meta.format == "ome-tiff"
    assert img.meta.axes == "ZCYX"
    assert img.meta.scale == {"X": 0.25, "Y": 0.25, "Z": 1.5}
    assert img.meta.units["X"] == "µm"
    np.testing.assert_array_equal(img.data, data)

    io.write_image(tmp_path / "out.ome.tif", img.data[::-1].copy(), img.meta)
    with tifffile.TiffFile(tmp_path / "out.ome.tif") as tif:
        assert tif.is_ome
        assert len(tif.pages) == 6 and tif.pages[0].shape == (16, 20)  # one page per plane, as the input
        assert tif.series[0].axes == "ZCYX"
        assert tif.pages[0].resolution == (4.0, 4.0)
        assert int(tif.pages[0].resolutionunit) == 3
        xml = tif.ome_metadata
        np.testing.assert_array_equal(tif.series[0].asarray(), data[::-1])
    assert 'Name="gfp"' in xml and 'PhysicalSizeZ="1.5"' in xml


def test_ome_tiff_float_output_updates_pixel_type(tmp_path):
    data = np.arange(2 * 2 * 8 * 8, dtype=np.uint16).reshape(2, 2, 8, 8)
    _ome_tiff(tmp_path / "in.ome.tif", data)
    img = io.read_image(tmp_path / "in.ome.tif")
    io.write_image(tmp_path / "out.ome.tif", img.data.astype(np.float32) / 3, img.meta)
    with tifffile.TiffFile(tmp_path / "out.ome.tif") as tif:
        assert tif.is_ome and 'Type="float"' in tif.ome_metadata
        out = tif.series[0].asarray()
    assert out.dtype == np.float32 and out.shape == data.shape


def test_imagej_and_plain_tiff_metadata(tmp_path):
    stack = np.random.default_rng(1).integers(0, 255, (4, 10, 12), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "ij.tif",
        stack,
        imagej=True,
        metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"},
        resolution=(2.0, 2.0),
    )
    img = io.read_image(tmp_path / "ij.tif")
    assert img.meta.format == "imagej-tiff" and img.meta.axes == "ZYX"
    assert img.meta.scale == {"X": 0.5, "Y": 0.5, "Z": 2.0}
    io.write_image(tmp_path / "ij_out.tif", img.data, img.meta)
    with tifffile.TiffFile(tmp_path / "ij_out.tif") as tif:
        assert tif.is_imagej and tif.imagej_metadata["spacing"] == 2.0 and tif.imagej_metadata["unit"] == "um"
        assert tif.series[0].axes == "ZYX" and tif.pages[0].resolution == (2.0, 2.0)

    rgb = np.random.default_rng(2).integers(0, 255, (9, 7, 3), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "rgb.tif",
        rgb,
        photometric="rgb",
        resolution=(300, 300),
        resolutionunit="INCH",
        compression="zlib",
    )
    img = io.read_image(tmp_path / "rgb.tif")
    assert img.meta.axes == "YXC" and img.meta.extra["compressed"]
    io.write_image(tmp_path / "rgb_out.tif", img.data, img.meta)
    with tifffile.TiffFile(tmp_path / "rgb_out.tif") as tif:
        page = tif.pages[0]
        assert page.photometric == tifffile.PHOTOMETRIC.RGB and page.resolution == (300.0, 300.0)
        assert int(page.resolutionunit) == 2 and int(page.compression) != 1
        np.testing.assert_array_equal(tif.asarray(), rgb)


def test_unknown_stack_axis_becomes_planes(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((3, 8, 8), np.float32), photometric="minisblack")
    img = io.read_image(tmp_path / "s.tif")
    assert img.meta.axes in ("TYX", "ZYX")  # tifffile says Q (unknown): one plane after another


@pytest.mark.parametrize(
    "name,shape,dtype",
    [
        ("g8.png", (10, 12), np.uint8),
        ("g16.png", (10, 12), np.uint16),
        ("rgba.png", (10, 12, 4), np.uint8),
        ("rgb.jpg", (16, 16, 3), np.uint8),
    ],
)
def test_png_jpeg_roundtrip(tmp_path, name, shape, dtype):
    import imageio.v3 as iio

    data = np.random.default_rng(3).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    iio.imwrite(tmp_path / name, data)
    img = io.read_image(tmp_path / name)
    assert img.data.shape == shape and img.data.dtype == dtype
    io.write_image(tmp_path / ("out_" + name), img.data, img.meta)
    back = iio.imread(tmp_path / ("out_" + name))
    assert back.shape == shape and back.dtype == dtype
    if name.endswith(".png"):
        np.testing.assert_array_equal(back, img.data)


def test_png_refuses_float_with_a_fix(tmp_path):
    with pytest.raises(io.ImageFormatError, match="cannot store float32.*tif"):
        io.write_image(tmp_path / "x.png", np.zeros((4, 4), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_zarr_plain_and_ome_roundtrip(tmp_path):
    import dask.array as da
    import zarr

    data = np.random.default_rng(4).integers(0, 4000, (3, 40, 50), dtype=np.uint16)
    arr = zarr.create_array(
        str(tmp_path / "plain.zarr"), shape=data.shape, chunks=(1, 20, 25), dtype="uint16"
    )
    arr[...] = data
    arr.attrs["axes"] = "ZYX"
    img = io.read_image(tmp_path / "plain.zarr")
    assert isinstance(img.data, da.Array) and img.meta.axes == "ZYX" and img.meta.format == "zarr"
    io.write_image(tmp_path / "out.zarr", img.data + 1, img.meta)
    out = zarr.open(str(tmp_path / "out.zarr"), mode="r")
    assert out.chunks == (1, 20, 25) and out.attrs["axes"] == "ZYX"
    np.testing.assert_array_equal(out[...], data + 1)

    # TIFF with physical sizes -> OME-Zarr; then OME-Zarr -> OME-Zarr keeps the metadata
    img = io.read_image(tmp_path / "plain.zarr")
    img.meta.scale = {"Z": 2.0, "Y": 0.5, "X": 0.5}
    img.meta.units = {"Z": "µm", "Y": "µm", "X": "µm"}
    io.write_image(tmp_path / "a.ome.zarr", img.data, img.meta)
    ome = io.read_image(tmp_path / "a.ome.zarr")
    assert ome.meta.format == "ome-zarr" and ome.meta.axes == "ZYX"
    assert ome.meta.scale == {"Z": 2.0, "Y": 0.5, "X": 0.5} and ome.meta.units["X"] == "micrometer"
    io.write_image(tmp_path / "b.ome.zarr", ome.data.astype(np.float32), ome.meta)
    again = io.read_image(tmp_path / "b.ome.zarr")
    assert again.meta.scale == ome.meta.scale and again.data.dtype == np.float32
    np.testing.assert_array_equal(again.data.compute(), data.astype(np.float32))


def test_ome_zarr_v05_input(tmp_path):
    import zarr

    group = zarr.open_group(str(tmp_path / "v5.ome.zarr"), mode="w", zarr_format=3)
    arr = group.create_array("s0", shape=(2, 8, 8), chunks=(1, 8, 8), dtype="uint8")
    arr[...] = 7
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": [
                    {"name": "c", "type": "channel"},
                    {"name": "y", "type": "space"},
                    {"name": "x", "type": "space"},
                ],
                "datasets": [
                    {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.3, 0.3]}]}
                ],
            }
        ],
    }
    img = io.read_image(tmp_path / "v5.ome.zarr")
    assert img.meta.axes == "CYX" and img.meta.scale["X"] == 0.3 and int(img.data.sum()) == 7 * 128
    io.write_image(tmp_path / "o.ome.zarr", img.data, img.meta)
    out = zarr.open_group(str(tmp_path / "o.ome.zarr"), mode="r")
    assert out.metadata.zarr_format == 3 and out.attrs["ome"]["version"] == "0.5"
    assert out.attrs["ome"]["multiscales"][0]["datasets"][0]["path"] == "0"


def test_unreadable_inputs_raise_image_format_error(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"this is not a tiff")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    for name in ("bad.tif", "bad.png", "missing.tif", "notes.txt"):
        with pytest.raises(io.ImageFormatError, match=name.split(".")[0]):
            io.read_image(tmp_path / name)


def test_atomic_output_leaves_nothing_on_error_and_cleans_stale_partials(tmp_path):
    target = tmp_path / "out.tif"
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    stale = tmp_path / f".out.tif.dead{io.PARTIAL_SUFFIX}"
    stale.write_bytes(b"left by a killed run")
    io.write_image(target, np.zeros((4, 4), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
    # a zarr folder is replaced as a whole
    io.write_image(tmp_path / "z.zarr", np.ones((4, 4), np.uint8))
    io.write_image(tmp_path / "z.zarr", np.full((4, 4), 2, np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif", "z.zarr"]
    assert int(io.read_image(tmp_path / "z.zarr").data.sum()) == 32


def test_list_images_skips_hidden_and_unsupported(tmp_path):
    for name in ("b.png", "a.tif", ".a.tif.x.napari-hinet-partial", "notes.txt", "c.JPG"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "s.zarr").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.tiff").write_bytes(b"")
    assert [p.name for p in io.list_images(tmp_path)] == ["a.tif", "b.png", "c.JPG", "s.zarr"]
    assert [p.name for p in io.list_images(tmp_path, recursive=True)][-1] == "d.tiff"


def test_lazy_tiff_and_dask_tiff_write(tmp_path):
    import dask.array as da

    data = np.random.default_rng(5).integers(0, 999, (5, 12, 14), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", data, metadata={"axes": "ZYX"})
    img = io.read_image(tmp_path / "s.tif", lazy=True)
    assert isinstance(img.data, da.Array)
    io.write_image(tmp_path / "o.tif", img.data.rechunk((2, 12, 14)) * 2, img.meta)
    with tifffile.TiffFile(tmp_path / "o.tif") as tif:
        assert tif.series[0].axes == "ZYX" and len(tif.pages) == 5
        np.testing.assert_array_equal(tif.asarray(), data * 2)


def test_read_array_is_one_reader_table_for_training_files(tmp_path):
    """read_array: .npy/.npz/.bmp by their readers, everything else through read_image."""
    import imageio.v3 as iio
    import tifffile

    from napari_hinet.io import ARRAY_SUFFIXES, read_array

    img = np.arange(48, dtype=np.uint8).reshape(6, 8)
    np.save(tmp_path / "a.npy", img)
    np.savez(tmp_path / "b.npz", data=img)
    iio.imwrite(tmp_path / "c.bmp", img)
    iio.imwrite(tmp_path / "d.png", img)
    tifffile.imwrite(tmp_path / "e.tif", img)
    for name in ("a.npy", "b.npz", "c.bmp", "d.png", "e.tif"):
        np.testing.assert_array_equal(read_array(tmp_path / name), img)
    assert {".npy", ".npz", ".bmp", ".tif", ".png"} <= set(ARRAY_SUFFIXES)
    np.save(tmp_path / "bad.npy", np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError):  # never unpickled
        read_array(tmp_path / "bad.npy")
