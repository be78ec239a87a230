"""Telegram's text rules in the fake: parse modes, entity checks, fix_formatted_text."""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.telegram_markup import (
    EntityError,
    FormatError,
    ParseError,
    entities_from_json,
    finalize,
    find_entities,
    parse_html,
    parse_markdown,
    parse_markdown_v2,
    utf16_len,
)


def e(kind: str, offset: int, length: int, **extra: object) -> dict[str, object]:
    return {"type": kind, "offset": offset, "length": length, **extra}


def test_utf16_length_counts_astral_characters_twice() -> None:
    assert utf16_len("abc") == 3
    assert utf16_len("😀") == 2
    assert utf16_len("é😀") == 3


@pytest.mark.parametrize(
    ("source", "text", "entities"),
    [
        ("<b>bold <i>both</i></b>", "bold both", [e("bold", 0, 9), e("italic", 5, 4)]),
        (
            '<pre><code class="language-python">x = 1</code></pre>',
            "x = 1",
            [e("pre", 0, 5, language="python")],
        ),
        ('<code class="language-py">x</code>', "x", [e("code", 0, 1)]),
        (
            '<a href="https://example.com">site</a> <a href="tg://user?id=7">Bob</a>',
            "site Bob",
            [
                e("text_link", 0, 4, url="https://example.com/"),
                e("text_mention", 5, 3, user={"id": 7}),
            ],
        ),
        ('<a href="javascript:alert(1)">x</a>', "x", []),  # a bad URL drops the entity
        ("1 &lt; 2 &amp;&amp; &unknown; &#128512;&#x41", "1 < 2 && &unknown; 😀A", []),
        (
            '<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler>',
            "st",
            [e("spoiler", 0, 1), e("spoiler", 1, 1)],
        ),
        ("<blockquote expandable>q</blockquote>", "q", [e("expandable_blockquote", 0, 1)]),
        ("😀<u>x</u>", "😀x", [e("underline", 2, 1)]),
    ],
)
def test_html(source: str, text: str, entities: list[dict[str, object]]) -> None:
    assert parse_html(source) == (text, entities)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("I <3 you", 'Unsupported start tag "3" at byte offset 2'),
        ("é<br>", 'Unsupported start tag "br" at byte offset 2'),  # UTF-8 bytes
        ("x<b", "Unclosed start tag at byte offset 1"),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("</b>", "Unexpected end tag at byte offset 0"),
        ("<b>never closed", "Can't find end tag corresponding to start tag b"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ('<a href="x"y>z</a>', 'Expected equal sign in declaration of an attribute of the tag "a"'),
    ],
)
def test_html_refusals(source: str, error: str) -> None:
    with pytest.raises(ParseError, match=re.escape(error)):
        parse_html(source)


@pytest.mark.parametrize(
    ("source", "text", "entities"),
    [
        ("*bold _both_*", "bold both", [e("bold", 0, 9), e("italic", 5, 4)]),
        (
            "__u__ ~s~ ||sp|| `c.o`",
            "u s sp c.o",
            [e("underline", 0, 1), e("strikethrough", 2, 1), e("spoiler", 4, 2), e("code", 7, 3)],
        ),
        ("```python\nprint(1)\n```", "print(1)\n", [e("pre", 0, 9, language="python")]),
        ("[link](https://x.org/a\\)b)", "link", [e("text_link", 0, 4, url="https://x.org/a)b")]),
        (">quote\n>more\nafter", "quote\nmore\nafter", [e("blockquote", 0, 11)]),
        ("😀 *b*", "😀 b", [e("bold", 3, 1)]),
        (r"1\.5 \- \(x\)\!", "1.5 - (x)!", []),
        ("**", "", []),  # an empty entity is no entity
    ],
)
def test_markdown_v2(source: str, text: str, entities: list[dict[str, object]]) -> None:
    assert parse_markdown_v2(source) == (text, entities)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("Hello.", "Character '.' is reserved and must be escaped with the preceding '\\'"),
        ("a)", "Character ')' is reserved"),
        ("x - y", "Character '-' is reserved"),
        ("*bold", "Can't find end of Bold entity at byte offset 0"),
        ("é _it", "Can't find end of Italic entity at byte offset 3"),
        ("[x](http://a", "Can't find end of a URL at byte offset 4"),
        (">quote *b\nc*", "Can't find end of Bold entity at byte offset 7"),
    ],
)
def test_markdown_v2_refusals(source: str, error: str) -> None:
    with pytest.raises(ParseError, match=re.escape(error)):
        parse_markdown_v2(source)


def test_legacy_markdown() -> None:
    assert parse_markdown("*b* _i_ `c` [l](http://x.com) ```go\nfmt```") == (
        "b i c l fmt",
        [
            e("bold", 0, 1),
            e("italic", 2, 1),
            e("code", 4, 1),
            e("text_link", 6, 1, url="http://x.com/"),
            e("pre", 8, 3, language="go"),
        ],
    )
    assert parse_markdown(r"snake\_case") == ("snake_case", [])
    with pytest.raises(ParseError, match="Can't find end of the entity starting at byte offset 5"):
        parse_markdown("snake_case")


def test_explicit_entities() -> None:
    assert entities_from_json('[{"type": "bold", "offset": 0, "length": 1}]') == [e("bold", 0, 1)]
    # Types Telegram finds itself are dropped (and found again by finalize).
    assert entities_from_json([{"type": "url", "offset": 0, "length": 1}]) == []
    assert entities_from_json("not json") == []
    with pytest.raises(EntityError, match="Unsupported type specified"):
        entities_from_json([{"type": "sparkles", "offset": 0, "length": 1}])
    with pytest.raises(EntityError, match='Field "offset" must be of type Number'):
        entities_from_json([{"type": "bold", "length": 1}])
    with pytest.raises(EntityError, match='Field "url"'):
        entities_from_json([{"type": "text_link", "offset": 0, "length": 1}])


def test_finalize_checks_bounds() -> None:
    with pytest.raises(FormatError, match="ends after the end of the text at UTF-16 offset 4"):
        finalize("abc", [e("bold", 1, 3)], allow_empty=False)
    with pytest.raises(FormatError, match="begins after the end of the text at UTF-16 offset 5"):
        finalize("abc", [e("bold", 5, 1)], allow_empty=False)
    with pytest.raises(FormatError, match="Entity begins in a middle of a UTF-16 symbol"):
        finalize("😀", [e("bold", 1, 1)], allow_empty=False)
    with pytest.raises(FormatError, match="Receive an entity with incorrect offset -1"):
        finalize("abc", [e("bold", -1, 1)], allow_empty=False)
    assert finalize("abc", [e("bold", 9, 0)], allow_empty=False) == ("abc", [])  # empty: dropped


def test_finalize_cleans_and_trims_like_telegram() -> None:
    assert finalize("  hi  \n", [], allow_empty=False) == ("hi", [])
    assert finalize("a\tb\r\nc\u2028", [], allow_empty=False) == ("a b\nc", [])
    assert finalize("  x  y", [e("bold", 2, 4)], allow_empty=False) == ("x  y", [e("bold", 0, 4)])
    # \r goes, then the entity loses its leading newline.
    assert finalize("a \r\nb", [e("bold", 2, 3)], allow_empty=False) == ("a \nb", [e("bold", 3, 1)])
    assert finalize("a   ", [e("bold", 1, 3)], allow_empty=False) == ("a", [])  # blank: gone
    assert finalize(" x", [e("bold", 0, 2)], allow_empty=False) == ("x", [e("bold", 0, 1)])
    assert finalize(" \n ", [], allow_empty=True) == ("", [])
    with pytest.raises(FormatError, match="Message must be non-empty"):
        finalize(" \n ", [], allow_empty=False)


def test_detected_entities() -> None:
    text = "/start@parley_bot hi @bob #tag $USD https://x.org/p. e@x.com"
    assert [x["type"] for x in find_entities(text)] == [
        "bot_command",
        "mention",
        "hashtag",
        "cashtag",
        "url",
        "email",
    ]
    assert find_entities("a/b x@y #1 /start@ab")[0:] == []  # no boundary, no letter, short bot
    # Entities found by Telegram never cut into code or links.
    assert finalize("`/cmd` /cmd", [e("code", 0, 6)], allow_empty=False)[1] == [
        e("code", 0, 6),
        e("bot_command", 7, 4),
    ]


@given(st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc"))))
def test_escaped_text_parses_back_to_itself(text: str) -> None:
    assert parse_html(html.escape(text, quote=False)) == (text, [])
    escaped = re.sub(r"([_*\[\]()~`>#+\-=|{}.!\\])", r"\\\1", text)
    assert parse_markdown_v2(escaped) == (text, [])
