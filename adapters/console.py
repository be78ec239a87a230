"""The terminal as a chat platform: stdin lines in, streamed answers out."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from core.chat_service import ChatService, Outcome
from core.incoming import IncomingMessage, ReplyTargetGone

PLATFORM = "console"
# /help at the terminal: no groups, mentions or replies here.
CONSOLE_HELP = (
    "Type a message and press Enter; the answer appears here as it is written.\n"
    "The conversation is kept between runs: `parley chat --new` starts a fresh one.\n"
    "Commands:\n"
    "/help - this message\n"
    "/reset - start a fresh conversation\n"
    "Ctrl-D or Ctrl-C quits.\n"
)
ERROR_PREFIX = "parley: error: "


def _unchanged(text: str) -> str:
    return text


class ConsoleSink:
    """Prints the answer as it grows; only the new part of each update is written.

    Its reader is the operator, so a failure is shown as the operator's one line
    (``detail``, see core/incoming.py) on stderr, passed through ``redact`` (the
    config's secrets masked) as a net under the backends' own redaction.
    """

    def __init__(
        self,
        out: TextIO,
        err: TextIO | None = None,
        prefix: str = "",
        *,
        redact: Callable[[str], str] = _unchanged,
    ) -> None:
        self._out = out
        self._err = err or out
        self._prefix = prefix
        self._redact = redact
        self._printed = ""
        self._started = False
        self._mid_line = False  # an answer is on the current line: errors start a new one
        self.output_failed = False

    def _write(self, text: str) -> None:
        try:
            if not self._started:
                self._started = True
                self._out.write(self._prefix)
            if text.startswith(self._printed):
                self._out.write(text[len(self._printed) :])
            else:  # the backend rewrote earlier text (rare): start a fresh line
                self._out.write("\n" + text)
            self._printed = text
            self._mid_line = True
            self._out.flush()
        except BrokenPipeError:
            # `parley ask ... | head`: the reader left. Point the descriptor at
            # /dev/null so the interpreter's final flush does not fail again.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self._out.fileno())
            raise ReplyTargetGone("the terminal output was closed") from None
        except OSError:
            # A full disk behind `> file`: the chat service reports the answer as not
            # delivered; the chat ends, since every later answer would fail the same way.
            self.output_failed = True
            raise

    async def update(self, text: str) -> None:
        self._write(text)

    async def complete(self, text: str) -> list[str]:
        self._write(text)
        self._out.write("\n")
        self._mid_line = False
        self._out.flush()
        return []

    async def error(self, text: str, *, detail: str | None = None) -> bool:
        if self._mid_line:
            self._mid_line = False
            with contextlib.suppress(OSError, ValueError):  # the output may be what failed
                self._out.write("\n")
                self._out.flush()
        self._err.write(f"{ERROR_PREFIX}{self._redact(detail or text)}\n")
        self._err.flush()
        return True

    async def notice(self, text: str) -> None:
        self._err.write(f"parley: {self._redact(text)}\n")
        self._err.flush()


def console_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "local"


def console_message(bot: str, text: str, chat_id: str = "terminal") -> IncomingMessage:
    return IncomingMessage(
        platform=PLATFORM,
        bot=bot,
        chat_id=chat_id,
        user_id=console_user(),
        text=text,
        is_direct=True,
    )


class _LineReader:
    """stdin lines delivered to the event loop from a daemon thread.

    A daemon thread (not the loop's executor) because a thread blocked in
    ``readline`` must not hold up interpreter exit after Ctrl-C.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._run, name="parley-stdin", daemon=True).start()

    def _run(self) -> None:
        try:
            while True:
                line = self._stream.readline()
                if not line:
                    break
                self._loop.call_soon_threadsafe(self._queue.put_nowait, line)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._queue.put_nowait, None)

    async def readline(self) -> str | None:
        return await self._queue.get()


class ConsoleAdapter:
    """An interactive terminal chat through the shared chat service."""

    def __init__(
        self,
        service: ChatService,
        *,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        interactive: bool | None = None,
        new_conversation: bool = False,
        redact: Callable[[str], str] = _unchanged,
    ) -> None:
        """``new_conversation``: the first message starts a fresh conversation, and
        the old one stays the scope's head until that first answer succeeds."""
        self.service = service
        self._in = stdin or sys.stdin
        self._out = stdout or sys.stdout
        self._err = stderr or sys.stderr
        self._interactive = self._in.isatty() if interactive is None else interactive
        self._new = new_conversation
        self._redact = redact
        self.output_failed = False  # the terminal's output could not be written

    def _say(self, text: str) -> None:
        if self._interactive:
            self._out.write(text)
            self._out.flush()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Chat until end of input (Ctrl-D) or until ``stop`` is set."""
        reader = _LineReader(self._in)
        self._say(
            f"parley: chatting with backend '{self.service.policy.backend}'. "
            "/help for commands, Ctrl-D to quit.\n"
        )
        stop = stop or asyncio.Event()
        stopping = asyncio.ensure_future(stop.wait())
        pending: set[asyncio.Future[Any]] = set()

        async def until_stopped(work: asyncio.Future[Any]) -> bool:
            """Wait for ``work`` or a stop; on a stop, cancel it. True if it finished."""
            pending.add(work)
            await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(work)
            if work.done():
                return True
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            return False

        try:
            while not stop.is_set():
                self._say("you> ")
                reading = asyncio.ensure_future(reader.readline())
                if not await until_stopped(reading):
                    break
                line = reading.result()
                if line is None:
                    self._say("\n")
                    break
                if not line.strip():
                    continue
                msg = console_message(self.service.policy.name, line.rstrip("\n"))
                prefix = "bot> " if self._interactive else ""
                sink = ConsoleSink(self._out, self._err, prefix=prefix, redact=self._redact)
                # Ctrl-C mid-answer stops at once; the cancelled turn commits nothing.
                answering = asyncio.ensure_future(
                    self.service.handle(
                        msg, sink, new_conversation=self._new, help_text=CONSOLE_HELP
                    )
                )
                if not await until_stopped(answering):
                    self._out.write("\n")
                    break
                if answering.result() is Outcome.ANSWERED:
                    self._new = False
                if sink.output_failed:
                    self.output_failed = True
                    break
        finally:
            # Also when this task itself is cancelled: nothing may outlive the adapter.
            stopping.cancel()
            for work in pending:
                work.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
