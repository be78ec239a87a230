"""The answer text as it streams in, shared by every backend.

What a broken or hostile server must not do is handled here once:

- grow an answer without end: ``TextBuilder`` stops at its ``limit``
  (``AnswerTooLong``), which ``answer_limit`` derives from ``max_response_tokens``;
- make each received byte cost work in proportion to the answer so far: the text is
  built in amortised constant time per character (``io.StringIO``, not ``str +=``,
  which copies the whole text once its string is shared with a partial answer), and a
  ``Pacer`` decides when a partial answer — a full copy of the text so far, maybe
  rendered — is handed out. It is handed out when the text grew by an eighth since the
  last one (so all those copies together cost a constant times the answer) or when a
  short interval passed (a bounded rate; stretched when rendering is slow, so rendering
  never takes more than a fifth of the time).
"""

from __future__ import annotations

import io
import itertools

#: Answer-size cap: ``max_response_tokens`` times this many characters per token (a
#: token is rarely more than 16 characters) times this slack (for servers that ignore
#: ``max_tokens``), and never below ``MIN_ANSWER_CHARS``.
CHARS_PER_TOKEN = 16
TOKEN_SLACK = 4
MIN_ANSWER_CHARS = 1 << 16
#: The cap for backends without ``max_response_tokens`` (the ChatGPT web app).
DEFAULT_ANSWER_CHARS = 1 << 18
#: Partial answers are handed out at most this often (seconds) unless the text grew by
#: more than 1/GROWTH since the last one.
PARTIAL_INTERVAL = 0.05
GROWTH = 8
#: A slow renderer gets this many times its last rendering time between partials.
RENDER_SHARE = 4

_versions = itertools.count(1)


def answer_limit(max_response_tokens: int | None) -> int:
    """The most characters an answer may have, given the backend's token limit."""
    if max_response_tokens is None:
        return DEFAULT_ANSWER_CHARS
    return max(MIN_ANSWER_CHARS, max_response_tokens * CHARS_PER_TOKEN * TOKEN_SLACK)


class AnswerTooLong(Exception):
    """The answer passed its cap: the server does not stop (or ignores ``max_tokens``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer passed {limit} characters, its cap")
        self.limit = limit


class TextBuilder:
    """A growing text: append, replace and truncate in time proportional to the
    characters they add, ``text`` materialised only when asked for (and cached).

    ``version`` changes with every change, and no two builders share a version.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.version = next(_versions)
        self._buffer = io.StringIO()
        self._length = 0
        self._text: str | None = ""

    def __len__(self) -> int:
        return self._length

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self._buffer.getvalue()
        return self._text

    def append(self, text: str) -> None:
        if not text:
            return
        if self._length + len(text) > self.limit:
            raise AnswerTooLong(self.limit)
        self._buffer.write(text)
        self._length += len(text)
        self._changed(None)

    def replace(self, text: str) -> None:
        """The whole text is now ``text`` (the ChatGPT web app's classic events)."""
        if len(text) > self.limit:
            raise AnswerTooLong(self.limit)
        self._buffer = io.StringIO()
        self._buffer.write(text)
        self._length = len(text)
        self._changed(text)

    def truncate(self, size: int) -> None:
        if 0 <= size < self._length:
            self._buffer.truncate(size)
            self._buffer.seek(size)
            self._length = size
            self._changed(None)

    def _changed(self, text: str | None) -> None:
        self._text = text
        self.version = next(_versions)


class Pacer:
    """When to hand out the next partial answer (see the module docstring)."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = PARTIAL_INTERVAL if interval is None else interval
        self._version = 0  # of the text last handed out; 0: none yet
        self._length = 0
        self._at = 0.0
        self._cost = 0.0

    def due(self, text: TextBuilder, now: float) -> bool:
        """Whether a partial of ``text`` should be handed out now."""
        if text.version == self._version:
            return False
        if self._version == 0 or abs(len(text) - self._length) * GROWTH >= self._length:
            return True
        return now >= self._next()

    def flush_at(self, text: TextBuilder) -> float | None:
        """The latest time (loop clock) by which a partial of ``text`` is due if no more
        arrives; None if the last partial already showed it."""
        if text.version == self._version:
            return None
        return self._next()

    def shown(self, text: TextBuilder, now: float, cost: float = 0.0) -> None:
        """A partial of ``text`` was handed out at ``now``; making it took ``cost`` s."""
        self._version = text.version
        self._length = len(text)
        self._at = now
        self._cost = cost

    def _next(self) -> float:
        return self._at + max(self.interval, RENDER_SHARE * self._cost)
