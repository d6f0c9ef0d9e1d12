"""keras_faceset.progress: a stderr bar only on a TTY, never in pipes, logs or with --quiet."""

import io

import pytest

from keras_faceset import progress as progress_module
from keras_faceset.progress import Progress, progress


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def _restore():
    yield
    progress_module.set_enabled(True)


def test_silent_when_the_stream_is_not_a_tty():
    stream = io.StringIO()
    with Progress(10, "embedding", stream) as bar:
        for _ in range(10):
            bar.update()
    assert not bar.active and bar.done == 10 and stream.getvalue() == ""


def test_draws_count_and_percent_on_a_tty_and_ends_the_line(monkeypatch):
    monkeypatch.setattr(progress_module, "REFRESH_SECONDS", 0.0)
    stream = FakeTTY()
    with Progress(4, "aligning", stream) as bar:
        bar.update(3)
        bar.update(1)
    text = stream.getvalue()
    assert text.startswith("\raligning  3/4 (75%)") and "\raligning  4/4 (100%)" in text
    assert text.endswith("\n") and text.count("\n") == 1


@pytest.mark.parametrize("total", [0, 1])
def test_no_bar_for_a_single_step(total):
    stream = FakeTTY()
    with Progress(total, "x", stream) as bar:
        bar.update()
    assert stream.getvalue() == ""


def test_set_enabled_false_silences_even_a_tty():
    progress_module.set_enabled(False)
    stream = FakeTTY()
    with Progress(5, "x", stream) as bar:
        bar.update(5)
    assert stream.getvalue() == ""


def test_progress_yields_every_item_and_counts_weights(monkeypatch, capsys):
    assert list(progress([[1, 2], [3]], 3, "x", weight=len)) == [[1, 2], [3]]
    assert capsys.readouterr().err == ""  # pytest's captured stderr is not a TTY


def test_an_inner_bar_stays_silent_while_an_outer_one_shows():
    outer_stream, inner_stream = FakeTTY(), FakeTTY()
    with Progress(3, "outer", outer_stream) as outer:
        with Progress(5, "inner", inner_stream) as inner:
            inner.update(5)
        outer.update(3)
    assert outer.done == 3 and inner_stream.getvalue() == ""
    assert "outer  3/3" in outer_stream.getvalue()
    with Progress(5, "after", inner_stream):  # the outer bar closed: bars show again
        pass
    assert "after" in inner_stream.getvalue()
