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
    assert err.getvalue() == (
        "parley: error: The AI backend took too long to answer. Please try again.\n"
    )


async def test_the_operator_gets_the_detail_redacted() -> None:
    """The terminal's reader is the operator: the detail replaces the chat-user text,
    and the sink says so, so the chat service does not log it a second time."""
    err = io.StringIO()
    sink = ConsoleSink(io.StringIO(), err, redact=lambda t: t.replace("sk-live-1", "********"))
    shown = await sink.error(
        "The AI backend is busy.", detail="backend 'openai': HTTP 503 from h/v1 key sk-live-1"
    )
    assert shown is True
    assert err.getvalue() == "parley: error: backend 'openai': HTTP 503 from h/v1 key ********\n"
    await sink.notice("starting a new conversation")
    assert err.getvalue().endswith("parley: starting a new conversation\n")


async def test_an_unwritable_output_still_gets_its_error_line() -> None:
    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    err = io.StringIO()
    sink = ConsoleSink(FullDisk(), err)
    with pytest.raises(OSError):
        await sink.update("Hello")
    await sink.error("x", detail="could not deliver the answer: [Errno 28] No space left")
    assert (
        err.getvalue() == "parley: error: could not deliver the answer: [Errno 28] No space left\n"
    )


async def test_a_closed_pipe_means_the_reader_is_gone() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    with open(write_fd, "w", encoding="utf-8") as out:  # noqa: ASYNC230 - a pipe, not a disk
        sink = ConsoleSink(out)
        with pytest.raises(ReplyTargetGone):
            await sink.update("x" * 100_000)  # larger than the pipe buffer, so it must fail
