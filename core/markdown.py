"""Markdown to plain text, for backends asked for ``markdown=False`` and for platforms
that cannot render Markdown.

The text is parsed by markdown-it-py (CommonMark plus tables and strikethrough) and
rebuilt from the token stream: emphasis, links and code markers disappear, link texts,
image alt texts and code stay, list items keep a ``-`` or ``1.`` marker, table rows
become ``a | b`` lines. Streamed text with unclosed markers is fine: what does not parse
as Markdown stays as typed.
"""

from __future__ import annotations

from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token

_PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def to_plain_text(md: str) -> str:
    """The text of ``md`` without Markdown syntax."""
    blocks: list[tuple[str, int | None]] = []  # (text, the list or table it is part of)
    group = 0
    lists: list[int | None] = []  # per open list: the next number, None for bullets
    marker: str | None = None
    row: list[str] | None = None

    def emit(text: str) -> None:
        nonlocal marker
        indent = "  " * max(len(lists) - 1, 0)
        prefix = marker if marker is not None else (indent + "  " if lists else "")
        marker = None
        text = text.replace("\n", "\n" + " " * len(prefix)) if prefix else text
        blocks.append((prefix + text, group if lists or row is not None else None))

    for token in _PARSER.parse(md):
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open", "table_open") and not lists:
            group += 1
        if kind == "bullet_list_open":
            lists.append(None)
        elif kind == "ordered_list_open":
            start = token.attrGet("start")
            lists.append(int(start) if isinstance(start, int | str) else 1)
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            number = lists[-1]
            marker = "  " * (len(lists) - 1) + ("- " if number is None else f"{number}. ")
            if number is not None:
                lists[-1] = number + 1
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close" and row is not None:
            line = " | ".join(row)
            emit(line)
            row = None
        elif kind == "inline":
            text = _inline(token.children or [])
            if row is not None:
                row.append(text.strip())
            else:
                emit(text)
        elif kind in ("fence", "code_block"):
            emit(token.content.rstrip("\n"))
        elif kind == "list_item_close" and marker is not None:
            emit("")  # an empty item still shows its marker

    out: list[str] = []
    previous: int | None = None
    for text, block_group in blocks:
        if out:
            out.append("\n" if block_group is not None and block_group == previous else "\n\n")
        out.append(text)
        previous = block_group
    return "".join(out).strip("\n")


def _inline(children: Sequence[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline", "image"):
            parts.append(child.content)  # an image's content is its alt text
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
    return "".join(parts)
