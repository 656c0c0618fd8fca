"""The held-out split of the bundled models: disjoint, whole images, partners kept together."""

from __future__ import annotations

from napari_hinet.training import splits

PAIRS = [
    ("aloeL", "aloeR"),
    ("left", "right"),
    ("motorcycle_left", "motorcycle_right"),
    ("basketball1", "basketball2"),
    ("rubberwhale1", "rubberwhale2"),
    ("leuvenA", "leuvenB"),
]


def test_sets_are_disjoint():
    sets = [
        splits.TEST_NATURAL,
        splits.VAL_NATURAL,
        splits.TEST_MICROSCOPY,
        splits.VAL_MICROSCOPY,
        splits.TRAIN_MICROSCOPY,
    ]
    flat = [p for s in sets for p in s]
    assert len(flat) == len(set(flat))


def test_training_list_excludes_held_out_and_excluded_files():
    pool = [
        *splits.TEST_NATURAL,
        *splits.VAL_NATURAL,
        "natural/opencv/baboon.jpg",
        "natural/opencv/real_blur_no_gt/text_motion.jpg",
    ]
    assert splits.natural_training_files(pool) == ["natural/opencv/baboon.jpg"]


def test_stereo_partners_are_not_split_across_sets():
    held = " ".join(splits.HELD_OUT)
    for a, b in PAIRS:
        assert (a in held) == (b in held), (a, b)


def test_as_dict_is_plain_lists():
    d = splits.as_dict()
    assert d["test_natural"] == list(splits.TEST_NATURAL)
    assert "microscopy/stardist/img2d.tif" in d["test_microscopy"]
