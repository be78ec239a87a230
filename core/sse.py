"""An incremental parser for ``text/event-stream`` (the WHATWG server-sent events format).

Written here rather than taken from a library: the maintained SSE clients either own
the HTTP request (aiohttp-sse-client, httpx-sse) or ship no incremental bytes API, and
both of our streaming backends need to feed raw aiohttp chunks and keep the exact
partial state when a stream is cut. The parser is small and fuzzed by hypothesis.

A server is not trusted to be sane: one line and one event are capped (``MAX_LINE``,
``MAX_EVENT`` bytes; past them ``SSETooLarge``), and each byte is looked at a constant
number of times, however the stream is cut into chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Literal

#: The longest line (field name and value) accepted, in bytes.
MAX_LINE = 1 << 20
#: The most data one event may carry (its data lines together), in bytes.
MAX_EVENT = 1 << 20
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSETooLarge(ValueError):
    """A line or an event passed the parser's cap; ``what`` says which."""

    def __init__(self, what: Literal["line", "event"], limit: int) -> None:
        unit = f"{limit // (1 << 20)} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"
        super().__init__(
            f"a line longer than {unit} without a line break"
            if what == "line"
            else f"an event larger than {unit}"
        )
        self.what = what
        self.limit = limit


class SSEParser:
    """Feed bytes as they arrive; get back every event completed so far.

    Lines are split on the bytes (CR, LF and CRLF are ASCII, never part of a multi-byte
    UTF-8 character), so a character or a CRLF pair split across chunks is reassembled;
    each complete line is then decoded on its own. A leading byte order mark is dropped.
    """

    def __init__(self, *, max_line: int = MAX_LINE, max_event: int = MAX_EVENT) -> None:
        self.max_line = max_line
        self.max_event = max_event
        # The start of the stream until it is known whether it begins with a BOM.
        self._head: bytes | None = b""
        self._line: list[bytes] = []  # the pieces of the unfinished line
        self._line_size = 0
        self._after_cr = False  # the last byte seen was a CR: an LF next is its pair
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._pending_field = False

    @property
    def has_partial_event(self) -> bool:
        """True if bytes of an event have arrived but its closing blank line has not."""
        return bool(self._line) or bool(self._head) or self._pending_field

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._head is not None:
            head = self._head + chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._head = head  # maybe the first bytes of a BOM split across chunks
                return []
            self._head = None
            chunk = head[len(_BOM) :] if head.startswith(_BOM) else head
        if not chunk:
            return []
        if self._after_cr:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        events: list[SSEEvent] = []
        # bytes.splitlines breaks at exactly CR, LF and CRLF, in one C-speed pass.
        for piece in chunk.splitlines(keepends=True):
            if piece.endswith(b"\n"):
                line = piece[:-2] if piece.endswith(b"\r\n") else piece[:-1]
            elif piece.endswith(b"\r"):
                line = piece[:-1]
            else:  # the unfinished last line
                self._line_size += len(piece)
                if self._line_size > self.max_line:
                    raise SSETooLarge("line", self.max_line)
                self._line.append(piece)
                break
            if self._line:
                self._line.append(line)
                line = b"".join(self._line)
                self._line.clear()
                self._line_size = 0
            if len(line) > self.max_line:
                raise SSETooLarge("line", self.max_line)
            event = self._process_line(line)
            if event is not None:
                events.append(event)
        # A CR that ends the chunk may be the first half of a CRLF pair.
        self._after_cr = chunk.endswith(b"\r")
        return events

    def close(self) -> list[SSEEvent]:
        """Flush at end of stream; an event without its blank line is not dispatched.

        A line ended by a final CR was already taken when the CR arrived; an unfinished
        line can complete no event, so there is nothing left to flush.
        """
        self._head = None
        self._line.clear()
        self._line_size = 0
        return []

    def _process_line(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            return self._dispatch()
        if raw.startswith(b":"):
            return None
        line = raw.decode("utf-8", errors="replace")
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        self._pending_field = True
        if name == "data":
            self._data_size += len(raw)
            if self._data_size > self.max_event:
                raise SSETooLarge("event", self.max_event)
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        self._pending_field = False
        data, event = self._data, self._event
        self._data, self._event, self._data_size = [], "", 0
        if not data:
            return None
        return SSEEvent(
            data="\n".join(data), event=event or "message", id=self._last_id, retry=self._retry
        )


def sniff(head: bytes) -> Literal["markup", "json"] | None:
    """What the start of a body obviously is, if not an event stream: ``"markup"``
    (an HTML page: a wrong URL, a login or proxy page), ``"json"`` (a JSON document);
    None if it may well be events (or is only whitespace so far).

    Event streams start with a field (``data:``, ``event:``, ...), a comment (``:``) or
    a blank line; a page or a document never does.
    """
    text = head.removeprefix(_BOM).lstrip()
    if not text:
        return None
    if text.startswith(b"<"):
        return "markup"
    if text[:1] in (b"{", b"["):
        return "json"
    return None


async def iter_sse(
    chunks: AsyncIterable[bytes], parser: SSEParser | None = None
) -> AsyncIterator[SSEEvent]:
    """Events from a byte stream (e.g. ``response.content.iter_any()``)."""
    parser = parser or SSEParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.close():
        yield event
