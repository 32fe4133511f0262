"""reconcile's pure parts: date ranges and the progress bar."""

import sys
from datetime import date

import pytest

from oddsbatch.reconcile import MAX_DAYS, date_range


def test_progress_bar_uses_the_stream_of_the_moment(capsys):
    """The bar once held the sys.stderr of import time: a closed stream in a later caller."""
    import io

    from oddsbatch.reconcile import _Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    progress = _Progress(2, terminal)
    progress.step("game-lines 2025-01-01")
    progress.step("player-props 2025-01-01")
    assert terminal.getvalue().count("\r") == 2 and terminal.getvalue().endswith("2/2 player-props 2025-01-01\n")
    assert _Progress(2).stream is sys.stderr


def test_date_range_is_inclusive_and_bounded():
    assert date_range(date(2025, 1, 30), date(2025, 2, 1)) == [date(2025, 1, 30), date(2025, 1, 31), date(2025, 2, 1)]
    with pytest.raises(ValueError, match="before"):
        date_range(date(2025, 2, 1), date(2025, 1, 1))
    with pytest.raises(ValueError, match=str(MAX_DAYS)):
        date_range(date(2024, 1, 1), date(2025, 12, 31))
