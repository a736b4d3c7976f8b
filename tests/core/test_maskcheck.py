"""The unmasked-frame check (RFC 6455 §5.1, docs/robustness.md item 79), fed bytes."""

from __future__ import annotations

import os
import struct

import pytest

from bullet_py.core.maskcheck import MaskCheck


def frame(payload: bytes, *, mask: bool = True, opcode: int = 1) -> bytes:
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, bit | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, bit | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, bit | 127, size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 300, 65535, 65536, 70_000])
def test_masked_frames_of_every_length_form_pass(size: int) -> None:
    check = MaskCheck()
    stream = frame(b"a" * size) + frame(b"b", opcode=9) + frame(b"")
    assert check.feed(stream)
    assert not check.unmasked


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 13])
def test_a_stream_split_anywhere_reads_the_same(piece: int) -> None:
    stream = frame(b"x" * 200) + frame(b"y" * 70_000) + frame(b"z")
    check = MaskCheck()
    assert all(check.feed(stream[i : i + piece]) for i in range(0, len(stream), piece))
    bad = MaskCheck()
    stream += frame(b"w", mask=False)
    results = [bad.feed(stream[i : i + piece]) for i in range(0, len(stream), piece)]
    assert results[-1] is False and bad.unmasked


def test_an_unmasked_frame_after_masked_ones_is_found_and_stays_found() -> None:
    check = MaskCheck()
    assert check.feed(frame(b"hello"))
    assert not check.feed(frame(b"hello", mask=False))
    assert not check.feed(frame(b"again"))  # failed for good


def test_a_payload_that_looks_like_an_unmasked_header_is_skipped() -> None:
    check = MaskCheck()
    assert check.feed(frame(frame(b"inner", mask=False)))


def test_one_whole_short_frame_per_chunk_passes_and_the_next_header_is_read() -> None:
    check = MaskCheck()
    for size in (0, 1, 50, 125):  # each chunk exactly one frame, as a request-reply client sends
        assert check.feed(frame(b"q" * size))
    assert not check.feed(frame(b"q", mask=False))


@pytest.mark.parametrize("code_size", [126, 127])
def test_a_chunk_as_long_as_a_short_frame_with_an_extended_length_is_not_taken_for_one(
    code_size: int,
) -> None:
    """A chunk of length code + 6 whose header says 126 or 127 is the start of a longer frame."""
    payload = b"p" * (300 if code_size == 126 else 70_000)
    whole = frame(payload)
    first, rest = whole[: code_size + 6], whole[code_size + 6 :]
    hidden = frame(b"x", mask=False)
    check = MaskCheck()
    assert check.feed(first)
    assert check.feed(rest)  # the rest of the payload, skipped by length
    assert not check.feed(hidden)  # and the header after it is read where it is
