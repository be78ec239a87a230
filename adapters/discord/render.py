"""The model's Markdown as Discord content: Discord renders Markdown itself.

Nothing to convert, so nothing can be refused for its formatting. A text still
streaming may end inside a fenced code block; Discord then shows the raw backticks and
everything after them as text until the model closes the block, so a partial text gets
a closing fence while it fits.
"""

from __future__ import annotations

import re

from adapters.delivery.target import Rendered
from adapters.discord.limits import MAX_CONTENT

# A fence line: up to three spaces, then ``` or ~~~ (the rest of the line is the info).
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.MULTILINE)


def open_fence(markdown: str) -> str | None:
    """The marker of the code block left open at the end of ``markdown``, if any."""
    opened: str | None = None
    for match in _FENCE.finditer(markdown):
        marker = match.group(1)
        if opened is None:
            opened = marker
        elif marker[0] == opened[0] and len(marker) >= len(opened):
            opened = None
    return opened


class DiscordRenderer:
    """Markdown in, ``Rendered`` (plain content, no entities) out; never raises."""

    def __init__(self, max_length: int = MAX_CONTENT) -> None:
        self._max_length = max_length

    def final(self, markdown: str) -> Rendered:
        return Rendered(markdown)

    def partial(self, markdown: str) -> Rendered:
        marker = open_fence(markdown)
        if marker is None:
            return Rendered(markdown)
        closed = markdown.rstrip("\n") + "\n" + marker
        return Rendered(closed if len(closed) <= self._max_length else markdown)

    def plain(self, markdown: str) -> Rendered:
        return Rendered(markdown)
