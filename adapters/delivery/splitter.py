"""Cut a Markdown answer into messages of at most ``limit`` units.

Where to cut, in order of preference: a paragraph break, a line break, the end of a
sentence, a space between words; else a hard cut that lands on a character boundary
and keeps combining marks with their base. A break is only taken in the second half of
what fits (a paragraph break after the first three words would waste a message).
Inside a fenced code block only line breaks and spaces count, and the block is closed
at the end of the piece and reopened, with its language, at the start of the next; the
added fence lines count against the limit.

The whitespace at a cut is dropped: pieces never end with whitespace and never start
with a line break (the spaces after the last one stay: they may be code indentation). Precisely, for
``pieces = split(text, ...)``, with the added fences taken off again (see
``tests/adapters/delivery/test_splitter.py``), ``text`` matches
``\\s* piece0 \\s* piece1 ... \\s*`` exactly.

Streaming: where the first piece ends depends only on the first ``limit`` units of the
text plus ``LOOKAHEAD`` characters, so once a growing text is that long its first
piece never changes again (``Cut.settled``) and a finished message stays finished.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

Measure = Callable[[str], int]

LOOKAHEAD = 16
"""Characters past the last one that fits that can still change the first cut."""
MIN_LIMIT = 64
"""Smaller limits leave no room for a fence's closing and reopening lines."""

_MAX_MARKER = 8  # longer fence markers are not balanced
_MAX_LANG = 16  # a longer info word is not repeated when reopening
_MAX_INDENT = MIN_LIMIT // 2  # leading spaces kept at a piece start, so some text fits

_WHITESPACE = re.compile(r"\s+")
_CJK_STOP = re.compile(r"[。！？](?=\S)")  # CJK sentence ends need no space after
# Up to 3 spaces at the top level (CommonMark), more inside list items; deeper is not
# a fence but indented text.
_FENCE_START = re.compile(r" {0,8}(```|~~~)")
_FENCE_LINE = re.compile(r"(?P<indent> {0,8})(?P<marker>`{3,}|~{3,})(?P<info>[^\n]*)")
_SENTENCE_END = ".!?…"
_CLOSING = "\"')]»”’"


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts it."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class _Level(IntEnum):
    PARAGRAPH = 0
    LINE = 1
    SENTENCE = 2
    WORD = 3


@dataclass(frozen=True, slots=True)
class _Fence:
    indent: str
    marker: str
    lang: str
    balanced: bool = True  # closed and reopened at cuts (not for huge markers)

    @property
    def closer(self) -> str:
        return f"\n{self.indent}{self.marker}"

    @property
    def reopener(self) -> str:
        return f"{self.marker}{self.lang}\n"

    def closed_by(self, line: str) -> bool:
        stripped = line.strip()
        return (
            len(stripped) >= len(self.marker)
            and stripped == self.marker[0] * len(stripped)
            and len(line) - len(line.lstrip(" ")) <= 8
        )


@dataclass(frozen=True, slots=True)
class _Line:
    start: int
    before: _Fence | None  # the fence open at the line's start
    after: _Fence | None  # ... and after it


@dataclass(frozen=True, slots=True)
class Cut:
    """Where a text that does not fit is cut (indices into the text given)."""

    piece: str
    """The first piece, with a closing fence line added if a code block is open."""
    rest_start: int
    """Where the rest starts (after the whitespace dropped at the cut)."""
    reopen: str
    """The fence line that must start the rest ("" outside code blocks)."""
    settled: bool
    """Whether the text reaches far enough past the limit that no continuation can
    move this cut (see ``LOOKAHEAD``)."""


def _opener(line: str) -> _Fence | None:
    m = _FENCE_LINE.fullmatch(line)
    if m is None:
        return None
    marker, info = m["marker"], m["info"]
    if marker[0] == "`" and "`" in info:
        return None  # CommonMark: that is inline code, not a fence
    if len(marker) > _MAX_MARKER:
        return _Fence(m["indent"], marker, "", balanced=False)
    words = info.split()
    lang = words[0] if words and len(words[0]) <= _MAX_LANG else ""
    return _Fence(m["indent"], marker, lang)


def _lines(text: str) -> list[_Line]:
    lines = []
    fence: _Fence | None = None
    start = 0
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        before = fence
        if fence is None:
            fence = _opener(line)
        elif fence.closed_by(line):
            fence = None
        lines.append(_Line(start, before, fence))
        start += len(raw) + 1
    return lines


def _balanced(fence: _Fence | None) -> _Fence | None:
    return fence if fence is not None and fence.balanced else None


def skip_separator(text: str, i: int = 0) -> int:
    """Past the whitespace at ``i`` (dropped at a cut), but not past the indentation
    after its last line break (unless that is too long to be indentation)."""
    m = _WHITESPACE.match(text, i)
    if m is None:
        return i
    newline = text.rfind("\n", i, m.end())
    if newline >= 0 and m.end() - newline - 1 <= _MAX_INDENT:
        return newline + 1
    return m.end()


def _fit_end(text: str, limit: int, measure: Measure) -> int:
    """The longest prefix length that measures at most ``limit``."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _joins_previous(ch: str) -> bool:
    """Whether ``ch`` belongs to the character before it (a cut must not go between)."""
    code = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Mc", "Me")
        or code == 0x200D  # zero-width joiner
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or 0xE0020 <= code <= 0xE007F  # emoji tags
        or 0xDC00 <= code <= 0xDFFF  # the low half of a surrogate pair
    )


def _char_boundary(text: str, i: int) -> int:
    """``i`` moved back (a little) so the cut does not split a character cluster."""
    for j in range(i, max(i - LOOKAHEAD, 0), -1):
        if j >= len(text) or not (_joins_previous(text[j]) or text[j - 1] == "\u200d"):
            return j
    return i


def cut(text: str, limit: int, measure: Measure = len) -> Cut | None:
    """Where to cut ``text``, or None if it fits in one piece.

    ``text`` is taken to start at a piece start (outside any code block, unless it
    starts with the fence line itself) with its leading separator already skipped.
    """
    if limit < MIN_LIMIT:
        raise ValueError(f"a message limit of {limit} is too small (at least {MIN_LIMIT})")
    if measure(text.rstrip()) <= limit:
        return None
    end = _fit_end(text, limit, measure)
    horizon = end + LOOKAHEAD
    window = text[:horizon]
    lines = _lines(window)
    starts = [line.start for line in lines]

    def spot(i: int, strict: bool = True) -> _Spot | None:
        """The cut right after ``window[:i]``, or None where none may go (``strict``:
        nor where the result would look odd)."""
        k = len(window[:i].rstrip())
        if k == 0:
            return None
        rest = skip_separator(window, i)
        line = lines[bisect.bisect_right(starts, k - 1) - 1]
        if "\n" in window[k:rest]:  # the piece ends with a whole line
            if strict and line.before is None and line.after is not None:
                return None  # right after a fence's opening line: an empty block
            closer = reopen = line.after
        else:
            # The piece's last line is cut short: its own Markdown decides whether the
            # piece leaves a code block open, the whole line whether the rest is in
            # one. Where the two differ (inside a fence's own line, or a line that
            # looks like one when cut short), the cut goes elsewhere, unless the line
            # is a whole piece's first line and longer than a message.
            last = window[line.start : k]
            if line.before is None:
                seen = _opener(last)
            else:
                seen = None if line.before.closed_by(last) else line.before
            closer, reopen = seen, line.after
            differ = line.before is not line.after or seen is not line.before
            if strict and line.start > 0 and differ:
                return None
        # What was no line start (a word like ```, or a line indented too deep to
        # keep) must not become a fence at the start of the rest; nor may what
        # follows the cut lie past what is looked at.
        blank = _WHITESPACE.match(window, k)
        if strict and (
            (blank.end() if blank else k) + 3 > horizon
            or (window[rest - 1] != "\n" and window.startswith(("```", "~~~"), rest))
        ):
            return None
        closer, reopen = _balanced(closer), _balanced(reopen)
        piece = window[:k] + (closer.closer if closer else "")
        reopener = reopen.reopener if reopen else ""
        if measure(piece) > limit or rest <= len(reopener):  # (the rest must be shorter)
            return None
        return _Spot(piece, reopener)

    candidates: list[tuple[_Level, int]] = []
    breaks = [(m.start(), m.group()) for m in _WHITESPACE.finditer(window, 1, end + 1)]
    breaks += [(m.end(), "") for m in _CJK_STOP.finditer(window, 0, end)]
    for i, run in breaks:
        newlines = run.count("\n")
        if newlines >= 2:
            level = _Level.PARAGRAPH
        elif newlines == 1:
            level = _Level.LINE
        elif lines[bisect.bisect_right(starts, i - 1) - 1].before is None and (
            not run
            or window[i - 1] in _SENTENCE_END
            or (window[i - 1] in _CLOSING and i >= 2 and window[i - 2] in _SENTENCE_END)
        ):
            level = _Level.SENTENCE  # (inside code a sentence end is just a space)
        else:
            level = _Level.WORD
        candidates.append((level, i))

    threshold = end // 2
    for _, i in sorted(candidates, key=lambda c: (c[0], -c[1])):
        found = spot(i) if i >= threshold else None
        if found is not None:
            return _make(text, i, found, end)

    # No break in the second half: a hard cut at a character boundary; failing that
    # (a code line too long to follow its fence line, say) anywhere that fits.
    for strict in (True, False):
        for i in range(end, 0, -1):
            j = _char_boundary(window, i)
            found = spot(j, strict)
            if found is not None:
                return _make(text, j, found, end)
    return _make(text, end, _Spot(window[:end], ""), end)  # not reached with MIN_LIMIT


@dataclass(frozen=True, slots=True)
class _Spot:
    piece: str
    reopen: str


def _make(text: str, i: int, spot: _Spot, end: int) -> Cut:
    return Cut(
        piece=spot.piece,
        rest_start=skip_separator(text, i),
        reopen=spot.reopen,
        settled=len(text) >= end + LOOKAHEAD,
    )


def split_first(text: str, limit: int, measure: Measure = len) -> tuple[str, str]:
    """The first piece of ``text`` and the rest (which starts with the reopened fence
    line if the cut fell inside a code block). The rest is "" if ``text`` fits."""
    body = text[skip_separator(text, 0) :]
    c = cut(body, limit, measure)
    if c is None:
        return body.rstrip(), ""
    return c.piece, c.reopen + body[c.rest_start :]


def split(text: str, limit: int, measure: Measure = len) -> list[str]:
    """``text`` in pieces of at most ``limit`` units each (none for blank text)."""
    pieces = []
    rest = text
    while rest.strip():
        before = rest
        piece, rest = split_first(rest, limit, measure)
        assert len(rest) < len(before), f"no progress cutting {before!r}"
        pieces.append(piece)
    return pieces
