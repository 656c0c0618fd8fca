"""Export… in the Fine-tune widget (after a run) and in the Denoise widget's model picker."""

from __future__ import annotations

import numpy as np
import pytest

from .test_finetune_widget import tiny_gray_model  # noqa: F401 (fixture: a tiny 1-channel model)

pytestmark = [pytest.mark.slow, pytest.mark.gui]


@pytest.mark.usefixtures("tiny_gray_model")  # "tiny-gray" in the user models folder
def test_export_after_fine_tuning_and_from_the_model_picker(
    make_napari_viewer, stop_workers, tmp_models_dir, tmp_path, qtbot, wait_for
):
    import torch

    from napari_hinet import load_model
    from napari_hinet._widgets._export import EXPORT_MODEL

    viewer = make_napari_viewer()
    denoise = viewer.window.add_plugin_dock_widget("napari-hinet", "Denoise")[1]
    finetune = viewer.window.add_plugin_dock_widget("napari-hinet", "Fine-tune")[1]

    # Fine-tune: Export… is offered once a run has saved a model
    rng = np.random.default_rng(0)
    clean = rng.random((64, 64)).astype(np.float32)
    viewer.add_image(clean, name="clean")
    viewer.add_image(clean + rng.normal(0, 0.1, clean.shape).astype(np.float32), name="noisy")
    finetune.reset_choices()
    finetune.mode.value = "paired"
    finetune.layer_a.value, finetune.layer_b.value = viewer.layers["noisy"], viewer.layers["clean"]
    finetune.base_model.value = "tiny-gray"
    finetune.patch_size.value, finetune.batch_size.value = 16, 2
    finetune.steps.value, finetune.val_every.value = 2, 2
    finetune.save_name.value = "tiny-ft"
    assert not finetune.export_button.enabled
    finetune.start_button.changed.emit(True)
    wait_for(finetune, timeout=240_000)
    assert finetune.export_button.enabled and finetune.saved_path.stem == "tiny-ft"
    package = tmp_path / "tiny-ft.zip"
    finetune.export_model(package, {"format": "bioimageio", "licence": "MIT"})
    qtbot.waitUntil(lambda: "Exported to" in finetune.status.value, timeout=120_000)
    assert load_model(package).metadata["name"] == "tiny-ft"

    # Denoise: "Export…" (before "Load checkpoint…") in the model picker acts on the selected model
    denoise.refresh_models(select="tiny-gray")
    assert [c[1] for c in denoise._model_choices()][-2] == EXPORT_MODEL
    scripted = tmp_path / "tiny.pt"
    denoise.export_model(scripted, {"format": "torchscript"})
    qtbot.waitUntil(lambda: "Exported to" in denoise.status.value, timeout=120_000)
    assert denoise.model.value == "tiny-gray"
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(scripted))(x), load_model("tiny-gray")(x)[1], atol=1e-5)

    # a package in the models folder is listed and loads from the picker like any model
    from napari_hinet.registry import list_models

    package.rename(tmp_models_dir / "tiny-ft-package.zip")
    denoise.refresh_models()
    (info,) = [m for m in list_models("denoise") if m.file_name == "tiny-ft-package.zip"]
    assert info.available and info.name in denoise._model_values()
    assert denoise.add_checkpoint(tmp_models_dir / "tiny-ft-package.zip")  # "Load checkpoint…" takes .zip
