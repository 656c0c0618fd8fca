"""ONNX export: dynamic batch/height/width, opset, output equal to torch within ATOL."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_hinet.exchange.onnx import ATOL, OPSET, export_onnx

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def _max_error(model, path, shapes) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for shape in shapes:
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)))
        got = session.run(["output"], {"input": x.numpy()})[0]
        with torch.no_grad():
            expected = model(x)[1].numpy()
        assert got.shape == expected.shape
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def test_onnx_matches_torch_at_other_sizes(tiny_model, tmp_path):
    path = export_onnx(tiny_model, tmp_path / "sub" / "tiny.onnx")
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == OPSET
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "height", "width"]
    # sizes other than the tracing input's (2, 1, 8, 12), including batch 1 and 3
    assert _max_error(tiny_model, path, [(1, 1, 8, 8), (3, 1, 24, 40), (1, 1, 64, 16)]) < ATOL
    assert not list(tmp_path.joinpath("sub").glob(".*")), "no temporary file left behind"


@pytest.mark.slow
def test_every_bundled_model_exports_and_matches(tmp_path):
    """ONNX and TorchScript exports of every bundled model match torch fp32."""
    from napari_hinet import list_models, load_model
    from napari_hinet.exchange.torchscript import ATOL as TS_ATOL
    from napari_hinet.exchange.torchscript import export_torchscript

    bundled = [m.name for m in list_models() if m.kind == "bundled"]
    assert bundled
    for name in bundled:
        model = load_model(name)
        c = model.config["in_chn"]
        shapes = [(2, c, 48, 72)]  # batch 2, sizes other than the tracing input's
        assert _max_error(model, export_onnx(model, tmp_path / f"{name}.onnx"), shapes) < ATOL, name
        scripted = torch.jit.load(str(export_torchscript(model, tmp_path / f"{name}.pt")))
        for shape in shapes:
            x = torch.rand(*shape)
            with torch.no_grad():
                assert float((scripted(x) - model(x)[1]).abs().max()) < TS_ATOL, name
