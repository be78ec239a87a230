"""core/sse.py against the WHATWG event-stream rules, fuzzed with hypothesis.

The central property: any sequence of events, serialized with any mix of CRLF / CR / LF
line endings, comments and field orders, and cut into chunks at arbitrary byte
boundaries (inside multi-byte characters and CRLF pairs too), parses back to the same
events. A truncated stream yields exactly the events whose closing blank line arrived.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.sse import MAX_LINE, SSEEvent, SSEParser, SSETooLarge, iter_sse, sniff

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Field values: any text without line breaks (surrogates are excluded by default),
# weighted towards multi-byte characters so chunk cuts land inside them.
line_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_characters="\r\n"),
        st.sampled_from(["é", "日", "🎉", "\u2028", " ", ":", "\0", "\ufeff"]),
    ),
    max_size=12,
)


@dataclass(frozen=True)
class Spec:
    data: list[str]
    event: str | None
    id: str | None
    retry: int | None
    comment: str | None
    order: list[str]


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    fields = ["data", "event", "id", "retry", "comment"]
    return Spec(
        data=draw(st.lists(line_text, min_size=1, max_size=3)),
        event=draw(st.none() | line_text),
        id=draw(st.none() | line_text),
        retry=draw(st.none() | st.integers(min_value=0, max_value=10**9)),
        comment=draw(st.none() | line_text),
        order=draw(st.permutations(fields)),
    )


def expected_events(items: list[Spec]) -> list[SSEEvent]:
    """What a conforming parser dispatches: id and retry persist across events."""
    events = []
    last_id: str | None = None
    retry: int | None = None
    for spec in items:
        if spec.id is not None and "\0" not in spec.id:
            last_id = spec.id
        if spec.retry is not None:
            retry = spec.retry
        events.append(
            SSEEvent(
                data="\n".join(spec.data), event=spec.event or "message", id=last_id, retry=retry
            )
        )
    return events


def lines_of(spec: Spec, no_space: list[bool]) -> list[str]:
    lines: list[str] = []
    for name in spec.order:
        if name == "data":
            for value, bare in zip(spec.data, no_space, strict=False):
                # "data:x" and "data: x" mean the same unless the value starts with a space.
                lines.append(
                    f"data:{value}" if bare and not value.startswith(" ") else f"data: {value}"
                )
        elif name == "comment" and spec.comment is not None:
            lines.append(f":{spec.comment}")
        elif name == "retry" and spec.retry is not None:
            lines.append(f"retry: {spec.retry}")
        elif name in ("event", "id") and getattr(spec, name) is not None:
            lines.append(f"{name}: {getattr(spec, name)}")
    return lines


@dataclass(frozen=True)
class Stream:
    items: list[Spec]
    data: bytes
    cuts: list[int]
    ends: list[int]  # byte offset at which each event is complete


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    items = draw(st.lists(specs(), max_size=5))
    text = "\ufeff" if draw(st.booleans()) else ""
    ends: list[int] = []
    previous = ""
    for spec in items:
        no_space = draw(st.lists(st.booleans(), min_size=len(spec.data), max_size=len(spec.data)))
        for line in [*lines_of(spec, no_space), ""]:
            ending = draw(st.sampled_from(["\n", "\r", "\r\n"]))
            if previous == "\r" and line == "" and ending == "\n":
                ending = "\r\n"  # CR then an LF-terminated blank line would read as one CRLF
            if line == "":
                # The blank line counts once its first terminator byte arrived (a final
                # CR ends a line at close()).
                ends.append(len((text + ending[0]).encode()))
            text += line + ending
            previous = ending
    data = text.encode()
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=12))))
    return Stream(items, data, cuts, ends)


def parse(data: bytes, cuts: list[int]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    start = 0
    for cut in [*cuts, len(data)]:
        events.extend(parser.feed(data[start:cut]))
        start = cut
    events.extend(parser.close())
    return events


@FUZZ
@given(streams())
def test_events_survive_any_chunking(stream: Stream) -> None:
    assert parse(stream.data, stream.cuts) == expected_events(stream.items)


@FUZZ
@given(streams(), st.data())
def test_a_truncated_stream_yields_exactly_the_complete_events(
    stream: Stream, choice: st.DataObject
) -> None:
    length = choice.draw(st.integers(0, len(stream.data)), label="length")
    complete = sum(1 for end in stream.ends if end <= length)
    events = parse(stream.data[:length], [c for c in stream.cuts if c <= length])
    assert events == expected_events(stream.items)[:complete]


@FUZZ
@given(streams())
def test_iter_sse_matches_the_parser(stream: Stream) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        start = 0
        for cut in [*stream.cuts, len(stream.data)]:
            yield stream.data[start:cut]
            start = cut

    async def collect() -> list[SSEEvent]:
        return [event async for event in iter_sse(chunks())]

    assert asyncio.run(collect()) == expected_events(stream.items)


def test_has_partial_event_tracks_an_unfinished_event() -> None:
    parser = SSEParser()
    assert not parser.has_partial_event
    assert parser.feed(b"data: a") == []
    assert parser.has_partial_event
    assert parser.feed(b"\n") == []
    assert parser.has_partial_event  # the field line arrived, the blank line did not
    assert parser.feed(b"\n") == [SSEEvent(data="a")]
    assert not parser.has_partial_event
    assert parser.feed(b": keep-alive\n\n") == []
    assert not parser.has_partial_event


def test_a_leading_byte_order_mark_is_dropped_even_when_split() -> None:
    parser = SSEParser()
    events = [e for b in b"\xef\xbb\xbfdata: x\n\n" for e in parser.feed(bytes([b]))]
    assert events == [SSEEvent(data="x")]
    # Only at the start: later it is content.
    assert parser.feed("data: \ufeffy\n\n".encode()) == [SSEEvent(data="\ufeffy")]


def test_openai_style_stream() -> None:
    body = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n: ping\n\ndata: [DONE]\n\n'
    assert [e.data for e in parse(body, [7, 30])] == [
        '{"choices":[{"delta":{"content":"Hi"}}]}',
        "[DONE]",
    ]


def test_fields_without_data_or_with_bad_values_are_ignored() -> None:
    body = b"event: ping\n\nretry: 12x\nid: a\0b\ndata\n\nunknown: 1\ndata:  two\n\n"
    assert parse(body, []) == [
        SSEEvent(data=""),  # a bare "data" line is an empty data field
        SSEEvent(data=" two"),  # only one leading space is stripped
    ]


# -- hostile streams -------------------------------------------------------------------


def test_a_line_without_end_fails_early_with_bounded_memory() -> None:
    chunk = b"x" * 65536
    parser = SSEParser()
    fed = 0
    tracemalloc.start()
    try:
        with pytest.raises(SSETooLarge, match="1 MiB") as caught:
            while fed < 50 * 1024 * 1024:  # 50 MB without a line break
                fed += len(chunk)
                parser.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.what == "line"
    assert fed <= MAX_LINE + len(chunk)  # it stopped at the cap, not at the end
    assert peak < 4 * MAX_LINE


def test_an_event_of_many_lines_is_capped_too() -> None:
    parser = SSEParser()
    line = b"data: " + b"y" * 1000 + b"\n"
    with pytest.raises(SSETooLarge, match="event") as caught:
        for _ in range(2000):  # 2 MB of data lines, no blank line
            parser.feed(line)
    assert caught.value.what == "event"


def test_lines_at_the_cap_pass() -> None:
    parser = SSEParser(max_line=100, max_event=100)
    value = "z" * (100 - len("data:"))
    assert parser.feed(f"data:{value}\n\n".encode()) == [SSEEvent(data=value)]
    with pytest.raises(SSETooLarge):
        parser.feed(f"data:{value}z\n\n".encode())


def _parse_time(data: bytes, piece: int) -> float:
    """Best of three: seconds to parse ``data`` fed ``piece`` bytes at a time."""
    best = float("inf")
    for _ in range(3):
        parser = SSEParser()
        started = time.perf_counter()
        for start in range(0, len(data), piece):
            parser.feed(data[start : start + piece])
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("shape", ["one long line", "many events"])
def test_work_per_byte_is_linear(shape: str) -> None:
    def body(size: int) -> bytes:
        if shape == "one long line":  # a big event trickling in: the buffer must not be rescanned
            return b"data: " + b"a" * size + b"\n\n"
        return b"data: {}\n\n" * (size // 10)  # many small events in each chunk

    small, large = 64 * 1024, 8 * 64 * 1024
    ratio = _parse_time(body(large), 16) / _parse_time(body(small), 16)
    assert ratio < 24, f"8x the input took {ratio:.1f}x the time: not linear"


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"<!DOCTYPE html><html>", "markup"),
        (b"\xef\xbb\xbf\n  <html>", "markup"),
        (b'{"error": {"message": "no"}}', "json"),
        (b"[1, 2]", "json"),
        (b"data: {}\n\n", None),
        (b": ping\n\n", None),
        (b"event: delta\n", None),
        (b"\n\n", None),
    ],
)
def test_sniff(head: bytes, kind: str | None) -> None:
    assert sniff(head) == kind
