"""An incremental parser for ``text/event-stream`` (the WHATWG server-sent events format).

Written here rather than taken from a library: the maintained SSE clients either own
the HTTP request (aiohttp-sse-client, httpx-sse) or ship no incremental bytes API, and
both of our streaming backends need to feed raw aiohttp chunks and keep the exact
partial state when a stream is cut. The parser is small and fuzzed by hypothesis.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Feed bytes as they arrive; get back every event completed so far.

    UTF-8 sequences and CRLF pairs split across chunks are reassembled; a leading
    byte order mark is dropped.
    """

    def __init__(self) -> None:
        # utf-8-sig: the spec strips one leading byte order mark (even one split
        # across chunks); a BOM later in the stream is kept as U+FEFF.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._pending_field = False

    @property
    def has_partial_event(self) -> bool:
        """True if bytes of an event have arrived but its closing blank line has not."""
        return bool(self._buffer) or self._pending_field

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return self._feed_text(self._decoder.decode(chunk))

    def close(self) -> list[SSEEvent]:
        """Flush at end of stream; an event without its blank line is not dispatched."""
        events = self._feed_text(self._decoder.decode(b"", final=True))
        if self._buffer.endswith("\r"):
            events.extend(self._feed_text("\n"))
        return events

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if not text:
            return []
        self._buffer += text
        events: list[SSEEvent] = []
        start = 0
        buf = self._buffer
        length = len(buf)
        while start < length:
            cr = buf.find("\r", start)
            lf = buf.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr != -1 and (lf == -1 or cr < lf):
                if cr + 1 == length:
                    break  # a CR at the end may be the first half of CRLF
                end, next_start = cr, cr + 2 if buf[cr + 1] == "\n" else cr + 1
            else:
                end, next_start = lf, lf + 1
            event = self._process_line(buf[start:end])
            if event is not None:
                events.append(event)
            start = next_start
        self._buffer = buf[start:]
        return events

    def _process_line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        self._pending_field = True
        if name == "data":
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
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEEvent(
            data="\n".join(data), event=event or "message", id=self._last_id, retry=self._retry
        )


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
