"""adapters/delivery/splitter.py: where answers are cut, fuzzed with hypothesis.

The properties, for any text and limit:
- no piece measures over the limit (in the platform's units: characters or UTF-16);
- pieces are non-empty, never end with whitespace and never start with a line break;
- every piece has its code fences balanced (the last one only if the text has);
- the text is preserved: taking off the fence lines the splitter added (a closing
  fence at a piece's end, a reopening fence at a piece's start), the text matches
  ``\\s* piece0 \\s* piece1 ... \\s*``;
- streaming is stable: the first piece of a growing text stops changing once the text
  reaches ``LOOKAHEAD`` characters past what fits.

The fence checker here is written from CommonMark, independently of the splitter's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.delivery.splitter import (
    LOOKAHEAD,
    MIN_LIMIT,
    cut,
    split,
    split_first,
    utf16_len,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Measure = Callable[[str], int]

_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")


def open_fence_at_end(text: str) -> str | None:
    """The marker of the code block still open at the end of ``text`` (CommonMark)."""
    marker: str | None = None
    for line in text.split("\n"):
        if marker is None:
            m = _OPEN.fullmatch(line)
            if m and not (m[1][0] == "`" and "`" in m[2]):
                marker = m[1]
        else:
            m = re.fullmatch(r" {0,3}(`+|~+)[ \t]*", line)
            if m and m[1][0] == marker[0] and len(m[1]) >= len(marker):
                marker = None
    return marker


def is_fence_start(line: str) -> bool:
    return bool(re.match(r" *(```|~~~)", line))


def is_fence_line(line: str) -> bool:
    return bool(re.fullmatch(r" *(`{3,}|~{3,})\S*", line))


def preserved(text: str, pieces: list[str]) -> bool:
    """Whether ``text`` is the pieces without their added fence lines, joined by the
    whitespace dropped at the cuts. The fence lines the splitter may have added are a
    piece's last line and (but the first piece's) its first line: try both readings."""

    def cores(i: int) -> list[str]:
        options = [pieces[i]]
        if i > 0 and is_fence_line(pieces[i].partition("\n")[0]):
            options.append(pieces[i].partition("\n")[2])
        for option in list(options):
            head, _, last = option.rpartition("\n")
            if i + 1 < len(pieces) and is_fence_line(last):
                options.append(head)
        return options

    @functools.cache
    def match(i: int, pos: int) -> bool:
        blank = re.compile(r"\s*").match(text, pos).end()  # type: ignore[union-attr]
        if i == len(pieces):
            return blank == len(text)
        return any(
            text.startswith(core, start) and match(i + 1, start + len(core))
            for start in range(pos, blank + 1)  # a piece may start with indentation
            for core in cores(i)
        )

    return match(0, 0)


# --- text generators ---------------------------------------------------------------

words = st.one_of(
    st.text(alphabet="abcdefghij", min_size=1, max_size=12),
    st.sampled_from(
        ["é", "e\u0301", "日本語", "🎉", "👨\u200d👩\u200d👧", "🇫🇷", "ok.", "yes!", "(so?)"]
    ),
    st.text(alphabet="xyz", min_size=40, max_size=160),  # forces hard cuts
    st.text(alphabet="日本語。", min_size=1, max_size=30),
    st.sampled_from(["`x`", "``` inline", "~~", "**bold**", "a.b", "\\"]),
)
separators = st.sampled_from(
    [" ", " ", " ", "  ", "\n", "\n\n", ". ", "! ", ".\n", " \n \n", "\n" + " " * 70, " " * 40]
)


@st.composite
def fenced_block(draw: st.DrawFn) -> str:
    marker = draw(st.sampled_from(["```", "~~~", "````"]))
    indent = draw(st.sampled_from(["", "", " ", "   "]))
    lang = draw(st.sampled_from(["", "python", "js", "c++", "objective-c", "x" * 20]))
    body = draw(
        st.lists(
            st.text(alphabet="abc(){}=;  \t", max_size=50).map(lambda s: "    " + s), max_size=12
        )
    )
    return f"{indent}{marker}{lang}\n" + "\n".join(body) + f"\n{indent}{marker}"


@st.composite
def markdown(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(min_value=1, max_value=60))):
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            parts.append("\n" + draw(fenced_block()) + "\n")
        else:
            parts.append(draw(words))
        parts.append(draw(separators))
    return "".join(parts)


limits = st.integers(min_value=MIN_LIMIT, max_value=300)
measures = st.sampled_from([len, utf16_len])


def check(text: str, limit: int, measure: Measure) -> list[str]:
    pieces = split(text, limit, measure)
    for piece in pieces:
        assert measure(piece) <= limit, (piece, measure(piece))
        assert piece and piece == piece.rstrip() and not piece.startswith("\n"), piece
    for piece in pieces[:-1]:
        assert open_fence_at_end(piece) is None, piece
    assert pieces or not text.strip()
    # A fence line longer than a message must be cut; whether it really opened a
    # block may then only show past the cut (a backtick later in the line).
    long = any(is_fence_start(line) and len(line) > limit // 2 for line in text.split("\n"))
    if pieces and not long:
        assert (open_fence_at_end(pieces[-1]) is None) == (open_fence_at_end(text) is None)
    assert preserved(text, pieces), pieces
    return pieces


FENCES = "\n```\n\n```\n \n```\n\n```\n "


@FUZZ
@given(markdown(), limits, measures)
# What the fuzzing found once: fence-looking lines that are no fence (a backtick later
# in the line, or indented too deep), cut short or turned into line starts by a cut.
@example("``` inline a a a " + "x" * 46 + " `x` ", 64, len)
@example("``` inline a a a a a\n``` inline a " + "x" * 40 + " \n```\n\n```\n ", 64, len)
@example("``` inline\n" + " " * 70 + " a" * 9 + FENCES * 3, 82, len)
@example("x" * 40 + " " * 40 + "``` inline ", 64, len)
@example("a\n" + " " * 70 + "``` inline\n" + " " * 70 + FENCES, 157, len)
@example("x" * 134 + " \n```\n\n```\n\n" + " " * 70 + "``` inline " + FENCES * 2, 162, len)
def test_split_properties(text: str, limit: int, measure: Measure) -> None:
    check(text, limit, measure)


@FUZZ
@given(st.text(max_size=600), limits, measures)
def test_split_properties_on_any_text(text: str, limit: int, measure: Measure) -> None:
    pieces = split(text, limit, measure)
    for piece in pieces:
        assert measure(piece) <= limit
        assert piece and piece == piece.rstrip()
    assert preserved(text, pieces)


@FUZZ
@given(markdown(), limits, measures, st.data())
def test_first_piece_is_stable_while_streaming(
    text: str, limit: int, measure: Measure, data: st.DataObject
) -> None:
    first, rest = split_first(text, limit, measure)
    if not rest:
        return
    # split_first drops the leading whitespace up to its last line break.
    blank = re.match(r"\s*", text).group()  # type: ignore[union-attr]
    indent = len(blank) - blank.rfind("\n") - 1
    lead = blank.rfind("\n") + 1 if "\n" in blank and indent <= MIN_LIMIT // 2 else len(blank)
    body = text[lead:]
    end = max(n for n in range(len(body) + 1) if measure(body[:n]) <= limit)
    settled = lead + end + LOOKAHEAD
    lengths = {*range(settled, min(settled + 24, len(text) + 1)), len(text)}
    if settled <= len(text):
        lengths |= set(data.draw(st.lists(st.integers(settled, len(text)), max_size=8)))
    for n in sorted(lengths):
        piece, more = split_first(text[:n], limit, measure)
        if more:  # a text that still fits is shown whole, not cut
            assert piece == first, n
    # What the sink relies on: a settled cut of a prefix is the cut of the whole text.
    n = data.draw(st.integers(min_value=0, max_value=len(text)))
    c = cut(text[lead:n], limit, measure) if n > lead else None
    if c is not None and c.settled:
        assert c.piece == first


# --- examples ------------------------------------------------------------------------


def test_prefers_paragraph_then_line_then_sentence_then_word() -> None:
    para = "a" * 50 + "\n\n" + "b line\n" + "c" * 30
    assert split(para, 80)[0] == "a" * 50
    line = "a" * 50 + "\n" + "b. c" + " d" * 20
    assert split(line, 80)[0] == "a" * 50
    sentence = "a" * 50 + ". bb cc. dd" + " e" * 20
    assert split(sentence, 80)[0] == "a" * 50 + ". bb cc."
    word = "a" * 50 + " bb cc dd" + "e" * 40
    assert split(word, 80) == ["a" * 50 + " bb cc", "dd" + "e" * 40]


def test_an_early_break_is_not_worth_a_short_message() -> None:
    text = "Hi.\n\n" + "word " * 40
    first = split(text, 100)[0]
    assert len(first) > 50 and first.startswith("Hi.\n\nword")


def test_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "".join(f"    line_{i} = {i}\n" for i in range(20))
    text = f"Look:\n\n```python\n{code}```\nDone."
    pieces = split(text, 120)
    assert len(pieces) > 2
    for piece in pieces[:-1]:
        assert piece.endswith("\n```")
    for piece in pieces[1:]:
        assert piece.startswith("```python\n    line_")
    # Indentation inside the block survives the cut.
    code_lines = [line for p in pieces for line in p.split("\n") if "line_" in line]
    assert code_lines == code.rstrip("\n").split("\n")
    assert pieces[-1].endswith("```\nDone.")


def test_tilde_fences_and_long_markers_close_with_their_own_marker() -> None:
    text = "~~~~sh\n" + "echo hi\n" * 30 + "~~~~"
    pieces = split(text, 90)
    assert pieces[0].endswith("\n~~~~") and pieces[1].startswith("~~~~sh\n")


def test_added_fence_lines_count_against_the_limit() -> None:
    text = "```\n" + "x" * 60 + "\n" + "y" * 60 + "\n```"
    pieces = split(text, 70)
    assert pieces[0] == "```\n" + "x" * 60 + "\n```"
    assert all(len(p) <= 70 for p in pieces)


def test_utf16_counts_astral_characters_twice() -> None:
    assert utf16_len("a🎉é") == 4
    text = "🎉" * 100
    pieces = split(text, 64, utf16_len)
    assert [len(p) for p in pieces] == [32, 32, 32, 4]
    assert len(split(text, 64)) == 2  # by code points


def test_hard_cut_keeps_combining_marks_with_their_letter() -> None:
    text = "e\u0301" * 100  # é as two code points
    for piece in split(text, 65):
        assert not piece.startswith("\u0301")
    family = "👨\u200d👩\u200d👧"
    for piece in split(family * 30, 64, utf16_len):
        assert piece.startswith("👨") and piece.endswith("👧")


def test_text_that_fits_is_one_piece_and_blank_text_none() -> None:
    assert split("  hello  \n", 100) == ["hello"]
    assert split("\n\n    code", 100) == ["    code"]  # indentation after a line break stays
    assert split(" \n\t ", 100) == []
    assert split_first("hello", 100) == ("hello", "")


def test_a_word_looking_like_a_fence_does_not_start_a_piece() -> None:
    text = "a" * 60 + " ```python and more words here to overflow the limit a bit"
    pieces = check(text, 70, len)
    assert not pieces[1].startswith("```")


def test_too_small_a_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        split("x" * 100, MIN_LIMIT - 1)
