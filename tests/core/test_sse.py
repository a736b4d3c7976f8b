import pytest

from bullet_py.core import sse


def test_single_line():
    assert sse.frame("hello") == b"data: hello\n\n"


def test_lines_split_on_lf():
    assert sse.frame("a\nb\n") == b"data: a\ndata: b\ndata: \n\n"


def test_injection_stays_inside_data():
    framed = sse.frame("x\n\nevent: evil\ndata: y")
    assert framed == b"data: x\ndata: \ndata: event: evil\ndata: data: y\n\n"
    # Exactly one blank line: the terminator.
    assert framed.count(b"\n\n") == 1


@pytest.mark.parametrize("message", ["a\rb", "a\r\nb", "\r", "x\rid: 99", ""])
def test_cr_and_empty_cannot_travel(message):
    assert not sse.can_carry(message)


@pytest.mark.parametrize("message", ["a\nb", "\x00", "\ufeffx", " lead", "é😀"])
def test_everything_else_can(message):
    assert sse.can_carry(message)


def test_leading_space_survives_the_one_space_the_browser_strips():
    assert sse.frame(" x") == b"data:  x\n\n"


def test_utf8():
    assert sse.frame("é😀") == "data: é😀\n\n".encode()
