"""scripts/train_bundled.py: warm starts from the committed weights (as they are, or widened)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import train_bundled  # noqa: E402

from napari_hinet.checkpoints import save_model  # noqa: E402
from napari_hinet.model import HINet  # noqa: E402


@pytest.fixture
def committed(tmp_path) -> tuple[HINet, Path]:
    torch.manual_seed(0)
    model = HINet(3, wf=8, depth=3)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    return model.eval(), save_model(model, tmp_path / "m.safetensors", name="m", task="denoise")


def _outputs(model: HINet) -> torch.Tensor:
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model.eval()(x)[1]


def test_warm_start_copies_the_same_architecture(committed):
    narrow, path = committed
    model = HINet(3, wf=8, depth=3)
    assert "widened" not in train_bundled.warm_start(model, path)
    torch.testing.assert_close(_outputs(model), _outputs(narrow))


def test_warm_start_widens_to_a_wider_config(committed):
    narrow, path = committed
    model = HINet(3, wf=12, depth=3)
    assert "widened from wf 8 to 12" in train_bundled.warm_start(model, path)
    torch.testing.assert_close(_outputs(model), _outputs(narrow), rtol=1e-4, atol=1e-5)


def test_warm_start_refuses_another_architecture(committed):
    _, path = committed
    for other in (HINet(3, wf=8, depth=4), HINet(3, wf=6, depth=3)):
        with pytest.raises(SystemExit, match="the config asks for"):
            train_bundled.warm_start(other, path)


@pytest.mark.parametrize(
    "config", sorted((ROOT / "configs" / "bundled").glob("*.yaml")), ids=lambda p: p.stem
)
def test_bundled_configs_pin_their_validation_crops(config: Path) -> None:
    """A warm start changes the training seed (new patches) and sometimes the texture
    filter; unpinned, the validation crops would follow them and the phases' validation
    PSNRs, which decide what ships, would no longer be comparable."""
    import yaml

    cfg = yaml.safe_load(config.read_text())
    block = cfg.get("validation") or {}
    assert {"seed", "min_texture"} <= set(block), (
        f"{config.name}: pin validation.seed and validation.min_texture"
    )
    settings = train_bundled.validation_settings(cfg)
    for key, value in {"train": {"seed": 12345}, "data": {"min_texture": 0.5}}.items():
        changed = {**cfg, key: {**cfg[key], **value}}
        assert train_bundled.validation_settings(changed) == settings, f"{config.name}: {key} moves the crops"
