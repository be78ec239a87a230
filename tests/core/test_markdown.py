"""Markdown to plain text (core/markdown.py)."""

from __future__ import annotations

import pytest

from core.markdown import to_plain_text


@pytest.mark.parametrize(
    ("markdown", "plain"),
    [
        ("", ""),
        ("plain text", "plain text"),
        ("**bold**, *it*, _it_, ~~gone~~", "bold, it, it, gone"),
        ("use `x = 1` here", "use x = 1 here"),
        ("[the docs](https://example.com) and ![a cat](cat.png)", "the docs and a cat"),
        ("# Title\n\nBody", "Title\n\nBody"),
        ("a &amp; b \\*not emphasis\\*", "a & b *not emphasis*"),
        ("line one\nline two", "line one\nline two"),
        ("> quoted", "quoted"),
        ("```python\nprint('**x**')\n```", "print('**x**')"),
        ("Hello **wor", "Hello **wor"),  # an unclosed marker while streaming
        ("one\n\n---\n\ntwo", "one\n\ntwo"),
    ],
)
def test_inline_and_blocks(markdown: str, plain: str) -> None:
    assert to_plain_text(markdown) == plain


def test_lists_keep_their_markers() -> None:
    markdown = "Steps:\n\n1. first\n2. **second**\n   - nested\n\n- other list\n\nafter"
    assert to_plain_text(markdown) == (
        "Steps:\n\n1. first\n2. second\n  - nested\n\n- other list\n\nafter"
    )


def test_ordered_list_start() -> None:
    assert to_plain_text("3. c\n4. d") == "3. c\n4. d"


def test_tables_become_lines() -> None:
    markdown = "| a | **b** |\n|---|---|\n| 1 | 2 |"
    assert to_plain_text(markdown) == "a | b\n1 | 2"
