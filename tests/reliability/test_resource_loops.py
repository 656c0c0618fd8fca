"""Resource loops: nothing the user can pass makes a run loop, recurse or multiply work without bound."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_hinet import io as imio
from napari_hinet.engine import Restorer

from .conftest import tiny_hinet


@pytest.fixture(scope="module")
def restorer():
    return Restorer(tiny_hinet(), device="cpu", precision="fp32", compile="off")


@pytest.mark.parametrize("size", [64, 100, 512, 4096])
@pytest.mark.parametrize("tile", [32, 64, 256])
def test_worst_allowed_overlap_keeps_the_tile_count_bounded(restorer, size, tile):
    """overlap <= tile // 2: at most about 4x the tiles of a grid without overlap (plus one row/column)."""
    worst = restorer.plan((size, size), tile=tile, overlap=tile // 2)["tiles"]
    none = restorer.plan((size, size), tile=tile, overlap=0)["tiles"]
    side = -(-size // (tile // 2))  # tiles per side at the smallest allowed stride
    assert worst <= max(side, 1) ** 2 <= 4 * none + 4 * side + 1


def test_link_chain_in_an_input_folder_is_skipped(tmp_path):
    """A chain of links ending in a loop (ELOOP on open) is not an image and stops nothing."""
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    (tmp_path / "l0.tif").symlink_to(tmp_path / "l1.tif")
    for i in range(1, 60):
        (tmp_path / f"l{i}.tif").symlink_to(tmp_path / f"l{(i + 1) % 60}.tif")
    assert [p.name for p in imio.list_images(tmp_path, recursive=True)] == ["a.tif"]


def test_deep_real_tree_is_walked(tmp_path):
    folder = tmp_path
    for i in range(60):
        folder = folder / f"d{i}"
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / "deep.tif", np.zeros((8, 8), np.uint8))
    found = imio.list_images(tmp_path, recursive=True, follow_symlinks=True)
    assert [p.name for p in found] == ["deep.tif"]


def test_many_links_to_the_same_folder_are_each_walked_once(tmp_path):
    """50 links to one sub-folder with follow_symlinks: each is a separate name, none loops."""
    (tmp_path / "sub").mkdir()
    tifffile.imwrite(tmp_path / "sub" / "x.tif", np.zeros((8, 8), np.uint8))
    for i in range(50):
        (tmp_path / f"link{i:02d}").symlink_to("sub")
        (tmp_path / "sub" / f"back{i:02d}").symlink_to("..")
    found = imio.list_images(tmp_path, recursive=True, follow_symlinks=True)
    assert len(found) == 51  # sub/x.tif and link??/x.tif; the back-links are ancestors: not entered


_CHECK_POLICY = "import os, napari_hinet; print(os.environ.get('OMP_WAIT_POLICY'))"


@pytest.mark.parametrize(
    "user_value,expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE"), ("passive", "passive")]
)
def test_import_sets_a_passive_openmp_wait_unless_the_user_chose(user_value, expected):
    """Busy-waiting OpenMP threads stalled calls for seconds on a loaded machine; a user's choice is kept."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user_value is not None:
        env["OMP_WAIT_POLICY"] = user_value
    out = subprocess.run(
        [sys.executable, "-c", _CHECK_POLICY], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == expected, out.stderr
