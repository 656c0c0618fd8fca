"""GUI-free helpers of the widgets: settings persistence and progress/ETA."""

from __future__ import annotations

import json

import pytest

from napari_hinet._widgets import _common


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(_common.CONFIG_DIR_ENV, str(tmp_path / "cfg"))
    return tmp_path / "cfg"


def test_widget_state_round_trip_and_isolation(config_dir) -> None:
    assert _common.load_widget_state("denoise") == {}
    _common.save_widget_state("denoise", {"settings": {"tile": 256}, "scope": "whole stack"})
    _common.save_widget_state("deblur", {"scope": "current plane"})
    assert _common.load_widget_state("denoise") == {"settings": {"tile": 256}, "scope": "whole stack"}
    assert _common.load_widget_state("deblur") == {"scope": "current plane"}
    on_disk = json.loads((config_dir / "widgets.json").read_text())
    assert set(on_disk) == {"denoise", "deblur"}


def test_damaged_state_file_falls_back_to_defaults(config_dir) -> None:
    config_dir.mkdir(parents=True)
    (config_dir / "widgets.json").write_text("{not json")
    assert _common.load_widget_state("denoise") == {}
    _common.save_widget_state("denoise", {"a": 1})  # repairs the file
    assert _common.load_widget_state("denoise") == {"a": 1}


def test_unserialisable_state_is_ignored_not_raised(config_dir) -> None:
    _common.save_widget_state("denoise", {"a": object()})
    assert _common.load_widget_state("denoise") == {}


def test_progress_clock_eta_is_never_optimistic_early() -> None:
    now = [100.0]
    clock = _common.ProgressClock(clock=lambda: now[0])
    clock.start()
    now[0] = 103.0  # model loading and a slow first batch
    clock.update(1, 10)
    assert clock.eta() is None
    now[0] = 103.5
    clock.update(2, 10)  # the second batch came back fast: 0.5 s/unit would say 4 s left
    assert clock.eta() == pytest.approx(8 * 3.5 / 2)  # the rate since the start is slower: 14 s
    now[0] = 140.0
    clock.update(10 - 1, 10)  # steady at ~5.2 s/unit since the first update: that rate wins
    assert clock.eta() == pytest.approx(37.0 / 8)
    assert clock.fraction == pytest.approx(0.9)
    assert clock.text("tiles") == "9/10 tiles, 0:05 left"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0:00"), (75.2, "1:15"), (3725, "1:02:05"), (float("nan"), "?"), (None, "?")]
)
def test_format_seconds(seconds, text) -> None:
    assert _common.format_seconds(seconds) == text


def test_format_megapixels_rate() -> None:
    assert _common.format_megapixels_rate(2_000_000, 4.0) == "0.50 MP/s"
    assert _common.format_megapixels_rate(1, 0) == "? MP/s"
