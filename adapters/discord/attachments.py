"""Text attachments (.txt, .md, source files) read as part of the user's message.

Only files that are text by name or content type are read, and only for a message the
bot will look at; the chat service's ``max_input_chars`` then applies to the whole, so
an oversized file gets its usual "too long" answer. A file whose size alone rules it
out is not downloaded at all.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import PurePosixPath

import aiohttp
import discord

log = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset(
    [
        ".txt",
        ".md",
        ".markdown",
        ".rst",
        ".csv",
        ".tsv",
        ".log",
        ".json",
        ".jsonl",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".conf",
        ".xml",
        ".html",
        ".css",
        ".py",
        ".pyi",
        ".js",
        ".mjs",
        ".ts",
        ".tsx",
        ".jsx",
        ".java",
        ".kt",
        ".kts",
        ".scala",
        ".go",
        ".rs",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".hpp",
        ".cs",
        ".rb",
        ".php",
        ".pl",
        ".lua",
        ".swift",
        ".m",
        ".sh",
        ".bash",
        ".zsh",
        ".ps1",
        ".sql",
        ".r",
        ".dart",
        ".ex",
        ".exs",
        ".erl",
        ".hs",
        ".ml",
        ".clj",
        ".vue",
        ".svelte",
        ".tf",
        ".proto",
        ".gradle",
        ".diff",
        ".patch",
    ]
)
TEXT_NAMES = frozenset({"dockerfile", "makefile", "readme", "license"})
TEXT_TYPES = frozenset({"application/json", "application/xml", "application/x-yaml"})
UTF8_MAX_BYTES = 4  # a character is at most 4 bytes: a larger file cannot fit


class TooLong(Exception):
    """The attachments cannot fit in ``max_input_chars``, judged from their sizes."""


def is_text(attachment: discord.Attachment) -> bool:
    path = PurePosixPath(attachment.filename.lower())
    if path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES:
        return True
    # A known binary name (photo.png) is not text, whatever type the upload claimed.
    guessed = mimetypes.guess_type(path.name)[0]
    kind = guessed or (attachment.content_type or "").split(";")[0].strip()
    return kind.startswith("text/") or kind in TEXT_TYPES


async def with_attachments(text: str, files: list[discord.Attachment], limit: int) -> str:
    """``text`` followed by each file's content under its name."""
    if sum(f.size for f in files) > (limit - len(text)) * UTF8_MAX_BYTES:
        raise TooLong
    parts = [text] if text else []
    for attachment in files:
        try:
            data = await attachment.read()
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            log.warning("could not download attachment %s: %s", attachment.filename, exc)
            parts.append(f"[attached file {attachment.filename} could not be read]")
            continue
        content = data.decode("utf-8", errors="replace").strip()
        parts.append(f"[attached file {attachment.filename}]\n{content}")
    return "\n\n".join(parts)
