"""Bad checkpoints: every damaged, crafted or mislabelled weights file gives one of our errors.

Each case builds a file and asserts the exception type and the words of its
message (file name, what is wrong, what to do). Nothing from a file runs: the
crafted pickles would create a marker file if they did.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from napari_hinet.checkpoints import (
    CorruptCheckpointError,
    LayoutError,
    UnsafeCheckpointError,
    load_model,
)

from .conftest import our_metadata, tiny_hinet, write_safetensors


class _Payload:
    """Pickles to a call of ``open(marker, "w")``: proof of execution if the marker appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _copy(tiny_files, key, tmp_path, name):
    target = tmp_path / name
    shutil.copy(tiny_files[key], target)
    return target


def _bytes(data: bytes, name: str = "bad.pth"):
    def build(tmp_path, tiny_files):
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return build


def _truncated(key: str, name: str):
    def build(tmp_path, tiny_files):
        path = _copy(tiny_files, key, tmp_path, name)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path

    return build


def _zip_bomb(tmp_path, tiny_files):
    """A torch zip checkpoint whose data record is deflated: 40 MB of zeros in a few kB."""
    src = zipfile.ZipFile(tiny_files["pth"])
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if "/data/" in info.filename and info.filename.endswith("/0"):
                data = bytes(40_000_000)
            out.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def _legacy_huge(tmp_path, tiny_files):
    """A legacy-format checkpoint whose pickle declares a 4e10-element storage (160 GB)."""
    path = _copy(tiny_files, "legacy_pth", tmp_path, "huge.pth")
    data = path.read_bytes()
    cpu = b"X\x03\x00\x00\x00cpu"  # BINUNICODE 'cpu', then BINPUT n, then BININT1 numel
    i = data.index(cpu) + len(cpu) + 2
    assert data[i : i + 1] == b"K", "layout of the legacy pickle changed"
    data = data[:i] + b"\x8a\x05" + (40_000_000_000).to_bytes(5, "little") + data[i + 2 :]  # LONG1
    path.write_bytes(data)
    return path


def _evil_pickle(protocol: int):
    def build(tmp_path, tiny_files):
        path = tmp_path / f"evil{protocol}.pth"
        path.write_bytes(pickle.dumps({"params": _Payload(tmp_path / "executed")}, protocol=protocol))
        return path

    return build


def _evil_zip(tmp_path, tiny_files):
    import torch

    path = tmp_path / "evil-zip.pth"
    torch.save({"params": _Payload(tmp_path / "executed")}, path)
    return path


def _torch_obj(obj_fn, name="obj.pth"):
    def build(tmp_path, tiny_files):
        import torch

        path = tmp_path / name
        torch.save(obj_fn(), path)
        return path

    return build


def _sd(change=None):
    def make():
        sd = dict(tiny_hinet().state_dict())
        if change is not None:
            change(sd)
        return {"params": sd}

    return make


def _nan_weights(sd):
    import torch

    sd["conv_01.weight"] = torch.full_like(sd["conv_01.weight"], float("nan"))


def _inf_weights(sd):
    import torch

    sd["conv_01.bias"] = torch.full_like(sd["conv_01.bias"], float("inf"))


def _wrong_shape(sd):
    import torch

    sd["conv_01.weight"] = torch.zeros(4, 2, 3, 3)


def _meta(text: str | None, name="meta.safetensors", tensors=None, extra=None):
    def build(tmp_path, tiny_files):
        return write_safetensors(tmp_path / name, text, tensors() if tensors else None, extra)

    return build


def _flipped(remove_sha: bool):
    def build(tmp_path, tiny_files):
        import torch

        sd = {k: v.clone().contiguous() for k, v in tiny_hinet().state_dict().items()}
        sd["conv_01.weight"].view(-1)[0] += 1.0  # one weight changed after the hash was taken
        meta = our_metadata(sha256=None) if remove_sha else our_metadata()
        assert isinstance(sd["conv_01.weight"], torch.Tensor)
        return write_safetensors(tmp_path / "flipped.safetensors", meta, sd)

    return build


def _nan_safetensors(tmp_path, tiny_files):
    import torch

    from napari_hinet.checkpoints import save_model

    model = tiny_hinet()
    with torch.no_grad():
        model.conv_01.weight.fill_(float("nan"))
    return save_model(model, tmp_path / "nan.safetensors", task="denoise")


def _header(n: int, body: bytes):
    return _bytes(struct.pack("<Q", n) + body, "header.safetensors")


def _offsets_beyond(tmp_path, tiny_files):
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}
    ).encode()
    path = tmp_path / "beyond.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    return path


def _folder(tmp_path, tiny_files):
    path = tmp_path / "folder.pth"
    path.mkdir()
    return path


CASES = [
    # id, build(tmp_path, tiny_files) -> path, exception type, message regex
    ("empty-pth", _bytes(b""), CorruptCheckpointError, r"empty \(0 bytes\)"),
    ("empty-safetensors", _bytes(b"", "e.safetensors"), CorruptCheckpointError, r"only 0 bytes"),
    (
        "passwd-as-pth",
        _bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 20),
        CorruptCheckpointError,
        "not a PyTorch",
    ),
    ("text-pth", _bytes(b"hello, this is not a checkpoint\n"), CorruptCheckpointError, "not a PyTorch"),
    ("zeros-pth", _bytes(bytes(4096)), CorruptCheckpointError, "not a PyTorch"),
    ("random-pth", _bytes(bytes(range(256)) * 8), CorruptCheckpointError, "not a PyTorch checkpoint"),
    ("zip-not-torch", _bytes(b"PK\x05\x06" + bytes(18)), CorruptCheckpointError, "not a PyTorch checkpoint"),
    ("truncated-zip", _truncated("pth", "t.pth"), CorruptCheckpointError, "truncated or damaged"),
    ("truncated-legacy", _truncated("legacy_pth", "tl.pth"), CorruptCheckpointError, "truncated or damaged"),
    (
        "truncated-safetensors",
        _truncated("safetensors", "t.safetensors"),
        CorruptCheckpointError,
        "truncated",
    ),
    ("zip-bomb", _zip_bomb, CorruptCheckpointError, r"declares 4\d,\d{3},\d{3} bytes"),
    ("legacy-huge-storage", _legacy_huge, CorruptCheckpointError, r"declares .* bytes of contents"),
    (
        "evil-pickle-p2",
        _evil_pickle(2),
        UnsafeCheckpointError,
        r"(io|builtins)\.open.*Nothing from it was executed",
    ),
    ("evil-pickle-p4", _evil_pickle(4), UnsafeCheckpointError, "Nothing from it was executed"),
    ("evil-torch-zip", _evil_zip, UnsafeCheckpointError, r"(io|builtins)\.open"),
    ("non-tensor-dict", _torch_obj(lambda: {"params": {"a": 1}}), LayoutError, "holds no HINet state_dict"),
    ("a-list", _torch_obj(lambda: [1, 2, 3]), LayoutError, "holds no HINet state_dict"),
    (
        "other-network",
        _torch_obj(lambda: {"fc.weight": __import__("torch").zeros(3, 3)}),
        LayoutError,
        "conv_01",
    ),
    ("wrong-shape", _torch_obj(_sd(_wrong_shape)), LayoutError, "shape mismatches"),
    ("nan-weights-pth", _torch_obj(_sd(_nan_weights)), CorruptCheckpointError, r"NaN or infinite.*conv_01"),
    ("inf-weights-pth", _torch_obj(_sd(_inf_weights)), CorruptCheckpointError, "NaN or infinite"),
    ("nan-weights-safetensors", _nan_safetensors, CorruptCheckpointError, "NaN or infinite"),
    ("meta-json-list", _meta("[1, 2]"), CorruptCheckpointError, "JSON list, not an object"),
    ("meta-not-json", _meta("{not json"), CorruptCheckpointError, "metadata is not valid"),
    ("meta-config-str", _meta(our_metadata(config="abc")), CorruptCheckpointError, "'config' is 'abc'"),
    ("meta-config-type", _meta(our_metadata(config={"in_chn": "x"})), CorruptCheckpointError, "'in_chn'"),
    (
        "meta-config-key",
        _meta(our_metadata(config={"in_chn": 1, "colour": 2})),
        CorruptCheckpointError,
        "colour",
    ),
    (
        "meta-config-depth",
        _meta(our_metadata(config={"in_chn": 1, "depth": 99})),
        CorruptCheckpointError,
        "depth",
    ),
    ("meta-patch-str", _meta(our_metadata(patch_size="abc")), CorruptCheckpointError, "patch_size"),
    ("meta-patch-list", _meta(our_metadata(patch_size=[64])), CorruptCheckpointError, "patch_size"),
    ("meta-patch-zero", _meta(our_metadata(patch_size=0)), CorruptCheckpointError, "patch_size"),
    ("meta-metrics-list", _meta(our_metadata(metrics=[1, 2])), CorruptCheckpointError, "'metrics'"),
    ("meta-task", _meta(our_metadata(task="sharpen")), CorruptCheckpointError, "'task'"),
    (
        "meta-normalization",
        _meta(our_metadata(normalization="zscore")),
        CorruptCheckpointError,
        "normalization",
    ),
    ("meta-channels", _meta(our_metadata(channels=3)), CorruptCheckpointError, "'channels'"),
    (
        "sha-missing",
        _meta(our_metadata(sha256=None)),
        CorruptCheckpointError,
        "without the sha256.*verify=False",
    ),
    ("sha-wrong-type", _meta(our_metadata(sha256=123)), CorruptCheckpointError, "sha256"),
    ("byte-flipped", _flipped(False), CorruptCheckpointError, "is corrupted: the sha256"),
    ("byte-flipped-sha-removed", _flipped(True), CorruptCheckpointError, "without the sha256"),
    (
        "format-ours-no-meta",
        _meta(None, extra={"format": "napari-hinet-v1"}),
        CorruptCheckpointError,
        "sha256",
    ),
    ("header-too-long", _header(10**12, b"{}"), CorruptCheckpointError, "announces a"),
    ("header-not-json", _header(5, b"abcde"), CorruptCheckpointError, "not JSON"),
    ("header-not-object", _header(2, b"[]"), CorruptCheckpointError, "not a JSON object"),
    ("offsets-beyond-file", _offsets_beyond, CorruptCheckpointError, "truncated, damaged"),
]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the protocol-4 pickle
@pytest.mark.parametrize("build,error,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_checkpoint_is_refused_with_our_error(tmp_path, tiny_files, build, error, match):
    path = build(tmp_path, tiny_files)
    with pytest.raises(error, match=match) as info:
        load_model(path)
    text = str(info.value)
    assert path.name in text  # the message names the file
    assert "weights_only" not in text  # never torch's advice to unpickle anything
    assert not (tmp_path / "executed").exists()


def test_folder_as_weights_is_a_clear_error(tmp_path, tiny_files):
    with pytest.raises(FileNotFoundError, match="folder, not a weights file"):
        load_model(_folder(tmp_path, tiny_files))


def test_bomb_is_refused_before_allocating(tmp_path, tiny_files):
    """The refusal comes from the declared sizes: the 40 MB record is never decompressed."""
    import resource

    path = _zip_bomb(tmp_path, tiny_files)
    assert path.stat().st_size < 200_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(CorruptCheckpointError):
        load_model(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 30_000  # kB
    assert (soft, hard) == resource.getrlimit(resource.RLIMIT_AS)


# ----------------------------------------------------------------- correct results


@pytest.mark.parametrize("key", ["safetensors", "rgb", "pth", "legacy_pth"])
def test_valid_tiny_files_load(tiny_files, key):
    model = load_model(tiny_files[key])
    assert model.config["wf"] == 4 and model.config["depth"] == 2
    assert len(model.metadata["sha256"]) == 64


def test_verify_false_loads_a_file_without_sha256(tmp_path):
    path = write_safetensors(tmp_path / "nosha.safetensors", our_metadata(sha256=None))
    model = load_model(path, verify=False)
    assert model.config == tiny_hinet().config


# ----------------------------------------------------------------- a path is a path


@pytest.mark.parametrize(
    "source",
    [
        "/nonexistent/dir/HINet-GoPro.pth",
        "nonexistent/tiny.safetensors",
        "./tiny",
        Path("tiny"),
        Path("hinet-denoise-fluo"),
    ],
    ids=["abs-official-name", "rel-user-name", "dot-slash-name", "Path-bare-user", "Path-bare-bundled"],
)
def test_a_path_never_falls_back_to_the_registry(tmp_models_dir, tiny_files, source):
    """Files of those names are in the registry; a path to elsewhere must not load them."""
    import torch

    shutil.copy(tiny_files["safetensors"], tmp_models_dir / "tiny.safetensors")
    torch.save({"params": tiny_hinet(3).state_dict()}, tmp_models_dir / "HINet-GoPro.pth")
    with pytest.raises(FileNotFoundError, match="No weights file at"):
        load_model(source)


def test_bare_name_uses_the_registry(tmp_models_dir, tiny_files):
    shutil.copy(tiny_files["safetensors"], tmp_models_dir / "tiny.safetensors")
    assert load_model("tiny").metadata["registry_kind"] == "user"


@pytest.mark.parametrize("source,error", [("no-such-model", KeyError), (123, TypeError), (None, TypeError)])
def test_bad_sources(source, error):
    with pytest.raises(error):
        load_model(source)


def test_unsafe_file_is_never_executed(tmp_path):
    path = _evil_pickle(2)(tmp_path, None)
    with pytest.raises(UnsafeCheckpointError):
        load_model(path)
    assert not (tmp_path / "executed").exists()
    assert os.path.getsize(path) > 0
