from __future__ import annotations

import io
import os

import pytest

from adapters.console import ConsoleSink
from core.incoming import ReplyTargetGone


class RecordingStream(io.StringIO):
    """Remembers each write, to see what reached the terminal and when."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


async def test_only_the_new_part_of_each_update_is_printed() -> None:
    out = RecordingStream()
    sink = ConsoleSink(out, prefix="bot> ")
    for partial in ("Hel", "Hello", "Hello, wor", "Hello, world"):
        await sink.update(partial)
    await sink.complete("Hello, world!")
    assert out.getvalue() == "bot> Hello, world!\n"
    assert [w for w in out.writes if w] == ["bot> ", "Hel", "lo", ", wor", "ld", "!", "\n"]


async def test_rewritten_text_starts_a_fresh_line() -> None:
    out = io.StringIO()
    sink = ConsoleSink(out)
    await sink.update("**bold")
    await sink.complete("bold text")
    assert out.getvalue() == "**bold\nbold text\n"


async def test_errors_go_to_stderr_after_a_line_break() -> None:
    out, err = io.StringIO(), io.StringIO()
    sink = ConsoleSink(out, err)
    await sink.update("partial")
    await sink.error("The AI backend took too long to answer. Please try again.")
    assert out.getvalue() == "partial\n"
    assert err.getvalue() == "error: The AI backend took too long to answer. Please try again.\n"


async def test_a_closed_pipe_means_the_reader_is_gone() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    with open(write_fd, "w", encoding="utf-8") as out:  # noqa: ASYNC230 - a pipe, not a disk
        sink = ConsoleSink(out)
        with pytest.raises(ReplyTargetGone):
            await sink.update("x" * 100_000)  # larger than the pipe buffer, so it must fail
