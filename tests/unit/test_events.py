"""The pause wrapper every core loop gets through its ``should_stop`` poll."""

from __future__ import annotations

from napari_wsss.events import never_stop, pausable


def test_pausable_waits_while_paused_and_then_answers_the_stop_flag() -> None:
    calls = {"n": 0}

    def paused() -> bool:  # paused for the first five polls
        calls["n"] += 1
        return calls["n"] <= 5

    assert pausable(never_stop, paused, poll_s=0)() is False and calls["n"] == 6


def test_a_stop_ends_a_paused_run() -> None:
    assert pausable(lambda: True, lambda: True, poll_s=0)() is True
    assert pausable(never_stop, None) is never_stop
