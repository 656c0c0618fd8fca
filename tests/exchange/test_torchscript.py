"""TorchScript export: runs in a fresh Python process without napari_hinet, equal to torch."""

from __future__ import annotations

import subprocess
import sys

import torch

from napari_hinet.exchange.torchscript import ATOL, export_torchscript


def test_torchscript_runs_in_a_fresh_process_without_napari_hinet(tiny_model, tmp_path):
    path = export_torchscript(tiny_model, tmp_path / "tiny.pt")
    x = torch.rand(3, 1, 24, 40)  # not the tracing shape
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import sys, torch\n"
        "net = torch.jit.load(sys.argv[1])\n"
        "with torch.no_grad(): torch.save(net(torch.load(sys.argv[2])), sys.argv[3])\n"
        "assert not any(m.startswith('napari_hinet') for m in sys.modules), 'napari_hinet was imported'\n"
    )
    cmd = [sys.executable, "-c", code, str(path), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")]
    subprocess.run(cmd, check=True, timeout=120)
    with torch.no_grad():
        expected = tiny_model(x)[1]
    assert float((torch.load(tmp_path / "y.pt") - expected).abs().max()) < ATOL
