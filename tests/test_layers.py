"""napari commands (denoise/deblur/derain on a layer) and the GUI-free layer plumbing.

No viewer is needed: napari layers are plain Python objects.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from napari.layers import Image, Labels

from napari_hinet import layers
from napari_hinet.layers import (
    Region,
    check_layer,
    current_plane_region,
    field_of_view_region,
    layer_axes,
    output_layer_kwargs,
    whole_region,
)


@pytest.fixture
def tiny_models(tmp_models_dir):
    import torch

    from napari_hinet import HINet, save_model

    for seed, task in enumerate(("denoise", "deblur", "derain")):
        torch.manual_seed(seed)
        save_model(
            HINet(in_chn=3, wf=8, depth=3),
            tmp_models_dir / f"tiny-{task}.safetensors",
            task=task,
            patch_size=64,
        )
    return tmp_models_dir


# ---------------------------------------------------------------- plumbing
def test_layer_axes_follow_napari_layout() -> None:
    assert layer_axes(Image(np.zeros((8, 9)))) == "YX"
    assert layer_axes(Image(np.zeros((8, 9, 3)), rgb=True)) == "YXC"
    assert layer_axes(Image(np.zeros((2, 8, 9)))) == "ZYX"
    assert layer_axes(Image(np.zeros((2, 3, 8, 9)))) == "WZYX"
    assert layer_axes(Image(np.zeros((2, 8, 9, 3)), rgb=True)) == "ZYXC"


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (Image(np.zeros((8, 8), np.int32)), "looks like a label image"),
        (Image(np.zeros((8, 8), np.uint64)), "looks like a label image"),
        (Image(np.zeros((8, 8), bool)), "boolean mask"),
        (Labels(np.zeros((8, 8), np.int32)), "image layers only"),
    ],
)
def test_check_layer_refuses_what_the_model_cannot_use(layer, message) -> None:
    with pytest.raises(ValueError, match=message):
        check_layer(layer)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_check_layer_accepts_intensity_dtypes(dtype) -> None:
    check_layer(Image(np.zeros((8, 8), dtype)))


def test_current_plane_region_maps_world_point_through_scale_and_translate() -> None:
    layer = Image(np.zeros((5, 8, 9)), scale=(2.0, 1.0, 1.0), translate=(10.0, 0.0, 0.0))
    region = current_plane_region(layer, (14.0, 3.0, 3.0))  # world z 14 -> data z 2
    assert region.planes == (slice(2, 3),) and region.scope == "plane"
    assert region.shape(layer.data.shape) == (1, 8, 9)
    assert current_plane_region(layer, (1000.0, 0, 0)).planes == (slice(4, 5),)  # clipped


def test_field_of_view_region_uses_corner_pixels_and_multiscale_level() -> None:
    layer = Image(np.zeros((100, 120)))
    layer.corner_pixels = np.array([[10, 20], [49, 79]])
    region = field_of_view_region(layer, (0.0, 0.0))
    assert (region.rows, region.cols) == (slice(10, 50), slice(20, 80))
    layer.corner_pixels = np.zeros((2, 2), int)  # never drawn: whole plane
    region = field_of_view_region(layer, (0.0, 0.0))
    assert (region.rows, region.cols) == (slice(0, 100), slice(0, 120))

    pyramid = [np.zeros((128, 128)), np.zeros((64, 64))]
    ms = Image(pyramid, multiscale=True)
    ms.corner_pixels = np.array([[4, 8], [19, 31]])
    ms._data_level = 1  # drawn at the coarse level (napari sets this while drawing)
    region = field_of_view_region(ms, (0.0, 0.0))
    assert (region.rows, region.cols) == (slice(8, 40), slice(16, 64))


def test_output_kwargs_place_a_crop_where_it_came_from_even_when_rotated() -> None:
    layer = Image(
        np.zeros((3, 50, 60), np.uint16),
        scale=(4.0, 0.5, 0.25),
        translate=(1.0, 2.0, 3.0),
        rotate=((1, 0, 0), (0, 0, -1), (0, 1, 0)),
        units=("um", "um", "um"),
        axis_labels=("z", "y", "x"),
        colormap="magma",
        contrast_limits=(10, 900),
    )
    region = Region((slice(1, 2),), slice(5, 25), slice(10, 40), "field of view")
    kwargs = output_layer_kwargs(layer, region, "out", {"k": 1})
    out = Image(np.zeros((1, 20, 30), np.float32), **kwargs)
    # pixel (0, 0, 0) of the crop lands on input pixel (1, 5, 10) in world coordinates
    np.testing.assert_allclose(out.data_to_world((0, 0, 0)), layer.data_to_world((1, 5, 10)))
    np.testing.assert_allclose(out.data_to_world((0, 7, 3)), layer.data_to_world((1, 12, 13)))
    assert out.colormap.name == "magma" and tuple(out.contrast_limits) == (10.0, 900.0)
    assert tuple(out.axis_labels) == ("z", "y", "x") and [str(u) for u in out.units] == ["micrometer"] * 3
    assert out.metadata == {"napari_hinet": {"k": 1}}


# ---------------------------------------------------------------- commands
@pytest.mark.parametrize("task", ["denoise", "deblur", "derain"])
def test_command_returns_layer_data_with_geometry_and_provenance(tiny_models, task) -> None:
    data = (np.random.default_rng(0).random((2, 40, 48)) * 1000).astype(np.uint16)
    layer = Image(data, name="stack", scale=(2.0, 0.5, 0.5), translate=(0.0, 5.0, 6.0))
    command = getattr(layers, task)
    out, kwargs, layer_type = command(layer, model=f"tiny-{task}", device="cpu", precision="fp32")
    assert layer_type == "image"
    assert out.shape == data.shape and out.dtype == np.float32
    assert kwargs["name"] == f"stack (HINet {task})"
    np.testing.assert_allclose(kwargs["scale"], layer.scale)
    np.testing.assert_allclose(kwargs["translate"], layer.translate)
    meta = kwargs["metadata"]["napari_hinet"]
    assert meta["model"] == f"tiny-{task}" and meta["task"] == task
    assert meta["device"].startswith("cpu") and meta["precision"] == "fp32"
    assert (meta["tiling"], meta["tile"], meta["overlap"]) == ("blend", 64, 16)
    assert len(meta["weights_sha256"]) == 64 and meta["version"]
    assert layer.data is data  # input untouched


def test_command_on_a_dask_layer_matches_numpy(tiny_models) -> None:
    data = np.random.default_rng(1).random((3, 40, 40), dtype=np.float32)
    eager, _, _ = layers.denoise(Image(data), model="tiny-denoise", device="cpu", precision="fp32")
    lazy_layer = Image(da.from_array(data, chunks=(1, 20, 20)))
    lazy, _, _ = layers.denoise(lazy_layer, model="tiny-denoise", device="cpu", precision="fp32")
    assert isinstance(lazy, np.ndarray)
    np.testing.assert_allclose(lazy, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("task,views", [("denoise", 8), ("derain", 4)])
def test_command_ensemble_averages_the_task_orientations_and_records_them(tiny_models, task, views) -> None:
    data = np.random.default_rng(4).random((40, 48, 3), dtype=np.float32)
    command = getattr(layers, task)
    plain, _, _ = command(Image(data, rgb=True), model=f"tiny-{task}", device="cpu", precision="fp32")
    out, kwargs, _ = command(
        Image(data, rgb=True), model=f"tiny-{task}", device="cpu", precision="fp32", ensemble=True
    )
    assert kwargs["metadata"]["napari_hinet"]["ensemble"] == views
    assert out.shape == data.shape and not np.allclose(out, plain)


def test_command_out_dtype_none_keeps_input_dtype(tiny_models) -> None:
    rgb = (np.random.default_rng(2).random((32, 32, 3)) * 255).astype(np.uint8)
    out, kwargs, _ = layers.deblur(Image(rgb, rgb=True), model="tiny-deblur", device="cpu", out_dtype=None)
    assert out.dtype == np.uint8 and out.shape == rgb.shape and kwargs["rgb"] is True


def test_command_rejects_a_label_like_layer(tiny_models) -> None:
    with pytest.raises(ValueError, match="label image"):
        layers.denoise(Image(np.zeros((16, 16), np.int64)), model="tiny-denoise")


def test_commands_are_in_the_manifest_and_run_through_npe2(tiny_models) -> None:
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-hinet")
    ids = {c.id for c in manifest.contributions.commands}
    assert {"napari-hinet.denoise", "napari-hinet.deblur", "napari-hinet.derain"} <= ids
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert {"Denoise", "Deblur", "Derain", "Fine-tune"} <= widgets
    layer = Image(np.zeros((32, 32), np.float32), name="z")
    out, kwargs, _ = pm.commands.execute(
        "napari-hinet.denoise", args=(layer,), kwargs={"model": "tiny-denoise", "device": "cpu"}
    )
    assert out.shape == (32, 32) and kwargs["name"] == "z (HINet denoise)"


def test_whole_region_scope_names() -> None:
    assert whole_region(Image(np.zeros((4, 4)))).scope == "image"
    assert whole_region(Image(np.zeros((2, 4, 4)))).scope == "stack"


def test_large_lazy_output_goes_to_a_zarr_store_on_disk(tiny_models, tmp_path, monkeypatch) -> None:
    data = np.random.default_rng(3).random((3, 40, 40), dtype=np.float32)
    eager, _, _ = layers.denoise(Image(data), model="tiny-denoise", device="cpu", precision="fp32")
    monkeypatch.setenv(layers.ZARR_OUTPUT_BYTES_ENV, "1")  # everything counts as "large"
    monkeypatch.setenv(layers.OUTPUT_DIR_ENV, str(tmp_path / "outputs"))
    lazy_layer = Image(da.from_array(data, chunks=(1, 20, 20)))
    out, kwargs, _ = layers.denoise(lazy_layer, model="tiny-denoise", device="cpu", precision="fp32")
    assert isinstance(out, da.Array)
    store = kwargs["metadata"]["napari_hinet"]["output_store"]
    assert store.startswith(str(tmp_path / "outputs")) and store.endswith(".zarr")
    np.testing.assert_allclose(out.compute(), eager, rtol=1e-5, atol=1e-6)
    # a numpy input stays in memory whatever its size
    out, kwargs, _ = layers.denoise(Image(data), model="tiny-denoise", device="cpu", precision="fp32")
    assert isinstance(out, np.ndarray) and kwargs["metadata"]["napari_hinet"]["output_store"] is None
