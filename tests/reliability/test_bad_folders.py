"""Bad folders: walks never loop or leave the input tree; impossible outputs are refused up front."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_hinet import io as imio
from napari_hinet.cli import UsageError, plan_jobs

from .conftest import run_cli


def _tree(root: Path) -> Path:
    """in/a.tif, in/sub/b.tif; returns in/."""
    src = root / "in"
    (src / "sub").mkdir(parents=True)
    tifffile.imwrite(src / "a.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(src / "sub" / "b.tif", np.zeros((8, 8), np.uint8))
    return src


LINKS = {
    "loop-to-self": [("loop", ".")],
    "loop-to-parent": [("up", "..")],
    "both-loops": [("loop", "."), ("up", "..")],
    "deep-loop": [("sub/back", "..")],
    "link-outside": [("outside", "../../elsewhere")],
    "absolute-root": [("root", "/")],
}


@pytest.mark.parametrize("follow", [False, True], ids=["default", "follow-symlinks"])
@pytest.mark.parametrize("links", LINKS.values(), ids=LINKS.keys())
def test_recursive_walk_never_loops_or_leaves_the_tree(tmp_path, links, follow):
    src = _tree(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tifffile.imwrite(elsewhere / "x.tif", np.zeros((8, 8), np.uint8))
    for name, target in links:
        (src / name).symlink_to(target)
    found = imio.list_images(src, recursive=True, follow_symlinks=follow)
    assert sorted(str(p.relative_to(src)) for p in found) == ["a.tif", os.path.join("sub", "b.tif")]
    jobs = plan_jobs([str(src)], str(tmp_path / "out"), recursive=True, follow_symlinks=follow)
    assert len(jobs) == 2


def test_follow_symlinks_takes_a_linked_folder_inside_the_tree(tmp_path):
    src = _tree(tmp_path)
    (src / "again").symlink_to("sub")
    plain = imio.list_images(src, recursive=True)
    followed = imio.list_images(src, recursive=True, follow_symlinks=True)
    assert len(plain) == 2 and len(followed) == 3


def test_dry_run_with_loops_plans_each_file_once(tmp_path):
    src = _tree(tmp_path)
    (src / "loop").symlink_to(".")
    (src / "up").symlink_to("..")
    code, text = run_cli(
        "restore", str(src), "-o", str(tmp_path / "out"), "--task", "denoise", "--recursive", "--dry-run"
    )
    assert code == 0, text
    assert "dry run: 2 to restore" in text and "in/loop/" not in text and "in/up/" not in text


@pytest.mark.parametrize("kind", ["fifo", "dangling-link", "hidden", "folder-named-tif"])
def test_odd_entries_are_not_images(tmp_path, kind):
    src = _tree(tmp_path)
    if kind == "fifo":
        os.mkfifo(src / "pipe.tif")  # reading it would block forever
    elif kind == "dangling-link":
        (src / "gone.tif").symlink_to(tmp_path / "nowhere.tif")
    elif kind == "hidden":
        tifffile.imwrite(src / ".hidden.tif", np.zeros((8, 8), np.uint8))
    else:
        (src / "dir.tif").mkdir()
    found = imio.list_images(src, recursive=False)
    assert [p.name for p in found] == ["a.tif"]


def _single(tmp_path: Path) -> str:
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    return str(path)


PLANS = [
    # id, inputs(tmp) -> list, output(tmp) -> str, message
    ("out-bmp-for-folder", lambda t: [str(_tree(t))], lambda t: str(t / "out.bmp"), r"names a \.bmp file"),
    ("out-bmp-for-file", lambda t: [_single(t)], lambda t: str(t / "out.bmp"), r"names a \.bmp file"),
    ("out-npy", lambda t: [_single(t)], lambda t: str(t / "out.npy"), r"names a \.npy file"),
    ("out-is-input-folder", lambda t: [str(_tree(t))], lambda t: str(t / "in"), "is the input folder"),
    ("out-is-input-file", lambda t: [_single(t)], lambda t: str(t / "one.tif"), "is the input itself"),
    ("missing-input", lambda t: [str(t / "nope")], lambda t: str(t / "o"), "does not exist"),
    ("empty-folder", lambda t: [str(t)], lambda t: str(t / "o"), "holds no supported images"),
    ("unsupported-file", lambda t: [str(t / "x.txt")], lambda t: str(t / "o"), "is not a supported image"),
    (
        "file-name-for-two",
        lambda t: [_single(t), str(_tree(t))],
        lambda t: str(t / "o.tif"),
        "looks like a file",
    ),
    ("output-is-a-file", lambda t: [str(_tree(t))], lambda t: _single(t), "is a file; give a folder"),
    ("same-output-name", lambda t: [_single(t), _single(t)], lambda t: str(t / "o"), "would both be written"),
]


@pytest.mark.parametrize("inputs,output,match", [c[1:] for c in PLANS], ids=[c[0] for c in PLANS])
def test_impossible_plans_are_refused(tmp_path, inputs, output, match):
    (tmp_path / "x.txt").write_text("x")
    ins, out = inputs(tmp_path), output(tmp_path)
    with pytest.raises(UsageError, match=match):
        plan_jobs(ins, out)
    code, text = run_cli("restore", *ins, "-o", out, "--task", "denoise", "--dry-run")
    assert code == 2 and "error:" in text and "Traceback" not in text


def test_output_folder_inside_the_input_is_not_read_back(tmp_path):
    src = _tree(tmp_path)
    tifffile.imwrite(src / "out" / "a.tif", np.zeros((8, 8), np.uint8)) if (
        src / "out"
    ).mkdir() is None else None
    jobs = plan_jobs([str(src)], str(src / "out"), recursive=True)
    assert sorted(j.source.name for j in jobs) == ["a.tif", "b.tif"]
