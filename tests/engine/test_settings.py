from __future__ import annotations

import json

import numpy as np
import pytest

from napari_hinet.engine import restore
from napari_hinet.settings import RestoreSettings


def test_round_trip_through_json():
    s = RestoreSettings(
        task="deblur", axes="ZYX", tile=128, overlap=16, percentiles=(2, 99), out_dtype="float32"
    )
    data = json.loads(json.dumps(s.to_dict()))
    assert data["percentiles"] == [2.0, 99.0]
    assert RestoreSettings.from_dict(data) == s


def test_defaults_match_restore_defaults():
    s = RestoreSettings()
    assert (s.device, s.precision, s.tiling, s.normalization, s.normalize_per) == (
        "auto",
        "auto",
        "blend",
        "auto",
        "plane",
    )
    assert s.tile is None and s.overlap is None and s.batch_size is None and s.out_dtype is None


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"tiling": "grid"}, "tiling"),
        ({"precision": "fp8"}, "precision"),
        ({"normalization": "zscore"}, "normalization"),
        ({"normalize_per": "volume"}, "normalize_per"),
        ({"tile": 0}, "tile"),
        ({"tile": 64, "overlap": 64}, "overlap"),
        ({"percentiles": (99, 1)}, "percentiles"),
        ({"out_dtype": "uint8"}, "out_dtype"),
    ],
)
def test_invalid_values_name_the_field(kwargs, word):
    with pytest.raises(ValueError, match=word):
        RestoreSettings(**kwargs)


def test_unknown_key_rejected():
    with pytest.raises(ValueError, match="Unknown restore setting"):
        RestoreSettings.from_dict({"tilesize": 3})


def test_restore_accepts_settings_kwargs(tiny):
    s = RestoreSettings(tile=32, overlap=8, precision="fp32", device="cpu", compile="off")
    kwargs = s.restore_kwargs()
    kwargs.pop("model")
    img = np.zeros((40, 40, 3), np.uint8)
    out = restore(img, tiny, **kwargs)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_settings_are_the_one_declaration_of_the_options(tiny):
    """restore()/Restorer take settings= and options; an unknown option is refused by name."""
    from napari_hinet import Restorer

    s = RestoreSettings(
        tile=32, overlap=8, precision="fp32", device="cpu", compile="off", out_dtype="float32"
    )
    img = np.random.default_rng(0).integers(0, 255, (40, 40, 3)).astype(np.uint8)
    a = restore(img, tiny, settings=s)
    b = Restorer(tiny, **{k: v for k, v in s.model_kwargs().items() if k not in ("model", "task")}).restore(
        img, s
    )
    every = {**s.model_kwargs(), **s.run_kwargs()}
    c = restore(img, tiny, **{k: v for k, v in every.items() if k != "model"})
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert a.dtype == np.float32
    with pytest.raises(TypeError, match="tilesize"):
        restore(img, tiny, tilesize=3)
    with pytest.raises(ValueError, match="tiling"):
        restore(img, tiny, settings=s, tiling="grid")
    assert s.replace(tile=64).tile == 64 and s.tile == 32
