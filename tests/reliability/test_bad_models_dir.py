"""Bad user models folders: one broken file or an unusable folder never breaks the other models.

A broken file is listed as unavailable with its reason; bundled and official
models, default models, ``napari-hinet models`` and loading by name go on working.
"""

from __future__ import annotations

import os
import struct

import pytest

from napari_hinet.checkpoints import CorruptCheckpointError, load_model
from napari_hinet.registry import (
    DEFAULT_MODELS,
    default_model,
    list_models,
    user_models_problem,
)

from .conftest import our_metadata, run_cli, write_safetensors

BAD_FILES = [
    # id, how to write <folder>/broken.safetensors, words of the reason
    ("patch-abc", lambda p: write_safetensors(p, our_metadata(patch_size="abc")), "patch_size"),
    ("patch-list", lambda p: write_safetensors(p, our_metadata(patch_size=[64])), "patch_size"),
    ("metrics-list", lambda p: write_safetensors(p, our_metadata(metrics=[1, 2])), "metrics"),
    ("config-abc", lambda p: write_safetensors(p, our_metadata(config="abc")), "config"),
    ("config-bad-key", lambda p: write_safetensors(p, our_metadata(config={"x": 1})), "config"),
    ("name-number", lambda p: write_safetensors(p, our_metadata(name=5)), "'name'"),
    ("task-other", lambda p: write_safetensors(p, our_metadata(task="colorize")), "'task'"),
    ("meta-list", lambda p: write_safetensors(p, "[1, 2]"), "not a JSON object"),
    ("meta-not-json", lambda p: write_safetensors(p, "{oops"), "not valid JSON"),
    ("empty-file", lambda p: p.write_bytes(b""), "only 0 bytes"),
    ("five-bytes", lambda p: p.write_bytes(b"12345"), "only 5 bytes"),
    ("huge-header", lambda p: p.write_bytes(struct.pack("<Q", 2**40) + b"{}"), "announces a"),
    ("header-garbage", lambda p: p.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe\x00\x01"), "not JSON"),
]


@pytest.mark.parametrize("write,reason", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_broken_user_file_is_listed_unavailable_and_others_work(tmp_models_dir, write, reason):
    write(tmp_models_dir / "broken.safetensors")
    models = {m.name: m for m in list_models()}  # must not raise
    broken = models["broken"]
    assert not broken.available and reason in broken.problem
    assert "broken.safetensors" in broken.missing_message()
    assert default_model("denoise") == DEFAULT_MODELS["denoise"]
    assert all(models[name].available for name in DEFAULT_MODELS.values())
    assert "broken" in {m.name for m in list_models("deblur")}  # task unknown: offered, marked unavailable
    with pytest.raises(CorruptCheckpointError, match="broken.safetensors"):
        load_model("broken")


def test_cli_models_lists_the_broken_file_with_its_reason(tmp_models_dir):
    write_safetensors(tmp_models_dir / "broken.safetensors", our_metadata(patch_size="abc"))
    code, text = run_cli("models")
    assert code == 0, text
    assert "broken" in text and "unavailable: " in text and "hinet-denoise-fluo *" in text


def _special(kind: str, tmp_path):
    """An entry named like a model that is not a regular file."""
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    target = folder / "odd.safetensors"
    if kind == "fifo":
        os.mkfifo(target)  # opening it would block forever
    elif kind == "folder":
        target.mkdir()
    elif kind == "loop-link":
        target.symlink_to(target)
    elif kind == "dangling-link":
        target.symlink_to(folder / "missing.safetensors")
    elif kind == "pth-folder":
        (folder / "HINet-GoPro.pth").mkdir()
    return folder


@pytest.mark.parametrize("kind", ["fifo", "folder", "loop-link", "dangling-link", "pth-folder"])
def test_entries_that_are_not_files_are_skipped(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("HINET_MODELS_DIR", str(_special(kind, tmp_path)))
    names = {m.name: m for m in list_models()}
    assert "odd" not in names
    assert not names["HINET-GoPro".replace("HINET", "HINet")].available
    assert default_model("deblur") == DEFAULT_MODELS["deblur"]


def _models_dir(kind: str, tmp_path):
    if kind == "a-file":
        path = tmp_path / "file"
        path.write_text("not a folder")
        return path
    if kind == "loop-link":
        path = tmp_path / "loop"
        path.symlink_to(path)
        return path
    if kind == "inside-a-file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file" / "models"
    if kind == "proc":
        return "/proc/self/hinet-models"
    if kind == "dangling-link":
        path = tmp_path / "dangling"
        path.symlink_to(tmp_path / "nowhere" / "deeper")
        return path
    raise AssertionError(kind)


MODELS_DIRS = ["a-file", "loop-link", "inside-a-file", "proc", "dangling-link"]


@pytest.mark.parametrize("kind", MODELS_DIRS)
def test_unusable_models_folder_still_lists_bundled_and_official(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("HINET_MODELS_DIR", str(_models_dir(kind, tmp_path)))
    models = list_models()
    kinds = {m.kind for m in models}
    assert {"bundled", "official"} <= kinds and "user" not in kinds
    assert "HINET_MODELS_DIR" in user_models_problem()
    assert default_model("derain") == DEFAULT_MODELS["derain"]


@pytest.mark.parametrize("kind", MODELS_DIRS)
def test_unusable_models_folder_cli_models_warns(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("HINET_MODELS_DIR", str(_models_dir(kind, tmp_path)))
    code, text = run_cli("models")
    assert code == 0, text
    assert "Warning: the user models folder" in text and "hinet-deblur-photo" in text


def test_user_model_shadowing_a_bundled_name_is_renamed(tmp_models_dir):
    write_safetensors(tmp_models_dir / "mine.safetensors", our_metadata(name="hinet-denoise-fluo"))
    names = [m.name for m in list_models()]
    assert names.count("hinet-denoise-fluo") == 1
    assert "hinet-denoise-fluo (mine.safetensors)" in names
    assert load_model("hinet-denoise-fluo").metadata["registry_kind"] == "bundled"


@pytest.mark.parametrize("kind", MODELS_DIRS)
def test_unusable_models_folder_cli_info_still_works(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("HINET_MODELS_DIR", str(_models_dir(kind, tmp_path)))
    code, text = run_cli("info", "--json")
    assert code == 0, text
    assert '"user_models_dir"' in text
