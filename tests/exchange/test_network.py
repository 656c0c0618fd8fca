"""The single-output network and the one-file architecture source."""

from __future__ import annotations

import subprocess
import sys

import torch

from napari_hinet.exchange.network import HINetImage, architecture_source, image_network


def test_image_network_returns_out_2_with_the_same_weights(tiny_model):
    net = image_network(tiny_model)
    assert isinstance(net, HINetImage) and list(net.state_dict()) == list(tiny_model.state_dict())
    x = torch.rand(1, 1, 16, 24)
    with torch.no_grad():
        assert torch.equal(net(x), tiny_model(x)[1])


def test_architecture_source_runs_without_napari_hinet(tiny_model, tmp_path):
    """The bioimage.io architecture file imports with torch alone and gives our output."""
    (tmp_path / "hinet.py").write_text(architecture_source())
    torch.save(tiny_model.state_dict(), tmp_path / "weights.pt")
    x = torch.rand(2, 1, 16, 24)
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); import hinet\n"
        f"net = hinet.HINetImage(**{tiny_model.config!r}).eval()\n"
        "net.load_state_dict(torch.load(sys.argv[1] + '/weights.pt', weights_only=True))\n"
        "with torch.no_grad(): y = net(torch.load(sys.argv[1] + '/x.pt'))\n"
        "torch.save(y, sys.argv[1] + '/y.pt')\n"
        "assert not any(m.startswith('napari_hinet') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    with torch.no_grad():
        expected = tiny_model(x)[1]
    # another process may use another number of threads: float32 sums then differ in the last bits
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), expected, rtol=1e-5, atol=1e-6)
