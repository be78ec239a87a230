"""The fake LLM's answers for the platform benchmarks: one per chat (a prompt names
its chat as ``chat-<id>``), plain prose in paragraphs, with the moment each answer's
first and last token was written; and how a user's screen is compared with them."""

from __future__ import annotations

import random
import re
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, SupportsIndex, overload

from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

MODEL = "bench-model"
_KEY = re.compile(r"\bchat-(-?\d+)\b")

_PROSE = (
    "the quick answer covers every part of the question with care while each step of "
    "the reasoning stays short clear and plain so that a reader can follow along from "
    "start to end without getting lost in detail model text stream message chat user "
    "group limit budget window second minute reply split paragraph sentence"
)
_WORDS = _PROSE.split()


def make_answer(seed: int, chars: int) -> str:
    """About ``chars`` characters of plain prose in paragraphs: no Markdown, so the final
    text is the model's text, and paragraph breaks for the splitter to cut at."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    while total < chars:
        goal = rng.randint(350, 650)
        sentences: list[str] = []
        size = 0
        while size < goal:
            words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 14))]
            sentence = " ".join(words).capitalize() + "."
            sentences.append(sentence)
            size += len(sentence) + 1
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(paragraphs)


def short_answer(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(12)).capitalize() + "."


def squeezed(text: str) -> str:
    """``text`` without whitespace: a platform trims each message, and a split may drop
    the blank line it cut at, so answers are compared modulo whitespace."""
    return "".join(text.split())


def word_for_word(parts: list[str], answer: str) -> bool:
    """Whether ``parts`` (one answer's messages, in order), read one after another, are
    ``answer``'s words in order: a message boundary counts as whitespace, so a split
    that cuts a word in two, or loses or repeats text, is not."""
    return [w for part in parts for w in part.split()] == answer.split()


class _TimedPieces(list[str]):
    """An answer's deltas that note when the fake LLM takes the first and the last one
    to write (it writes each right after reading it), on this process's monotonic clock."""

    def __init__(self, pieces: Iterable[str], key: int, world: TimedAnswers) -> None:
        super().__init__(pieces)
        self._key = key
        self._world = world

    @overload
    def __getitem__(self, index: SupportsIndex) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: SupportsIndex | slice) -> str | list[str]:
        if isinstance(index, slice):
            return list.__getitem__(self, index)
        i = index.__index__()
        if i == 0:
            self._world.first_token.setdefault(self._key, time.monotonic())
        if i == len(self) - 1:
            self._world.last_token[self._key] = time.monotonic()
        return list.__getitem__(self, i)


@dataclass
class TimedAnswers:
    """The fake LLM's answers, one per chat (a prompt names its chat as ``chat-<id>``),
    with the moment each answer's first and last token was written."""

    answers: dict[int, str] = field(default_factory=dict)
    chunk_chars: int = 4
    first_token: dict[int, float] = field(default_factory=dict)
    last_token: dict[int, float] = field(default_factory=dict)
    _by_text: dict[str, int] = field(default_factory=dict)

    def key_of(self, messages: list[dict[str, Any]]) -> int:
        for message in reversed(messages):
            if message.get("role") == "user":
                found = _KEY.search(str(message.get("content")))
                if found:
                    return int(found.group(1))
        raise ValueError("a prompt without its chat-<id>")

    def reply(self, messages: list[dict[str, Any]]) -> str:
        key = self.key_of(messages)
        text = self.answers[key]
        self._by_text[text] = key
        return text

    def chunker(self, text: str) -> list[str]:
        pieces = [text[i : i + self.chunk_chars] for i in range(0, len(text), self.chunk_chars)]
        key = self._by_text.get(text)
        return pieces if key is None else _TimedPieces(pieces, key, self)

    def timings(
        self, key: int, sent: float, seen: float | None, final: float | None, complete: bool
    ) -> dict[str, float | None]:
        """What a chat's user felt, given when they asked (``sent``), when the first text
        arrived (``seen``) and the last message call (``final``): first token → first
        text, question → first text, and last token → last call (complete answers)."""
        token, last = self.first_token.get(key), self.last_token.get(key)
        return {
            "first_visible": None if seen is None or token is None else seen - token,
            "wait": None if seen is None else seen - sent,
            "final_after_last_token": (
                final - last if complete and final is not None and last is not None else None
            ),
        }

    def stream_seconds(self, keys: Iterable[int]) -> float:
        """The median time from an answer's first token to its last."""
        return statistics.median(
            self.last_token[k] - self.first_token[k]
            for k in keys
            if k in self.first_token and k in self.last_token
        )

    def server(self, chunk_delay: float) -> FakeOpenAIServer:
        return FakeOpenAIServer(
            reply=self.reply,
            chunker=self.chunker,
            model=MODEL,
            default=Behaviour(chunk_delay=chunk_delay),
        )
