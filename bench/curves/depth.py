"""Prompt-build time at conversation depths 10, 100, 1,000 and 10,000, on each database:
the store's history read plus the backend's prompt assembly within the token budget
(``ChatCompletionsBackend._build_messages``, what every turn of a chat_completions or
local backend runs), and a whole turn through the chat service at that depth. Depth 10
is the baseline; past the budget (about 160 of these messages) both must stay flat."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from bench.answers import short_answer
from bench.curves.databases import Database
from bench.curves.table import markdown, median_ms, number
from bench.harness import ratio
from bench.turns import NullSink, incoming, parley_service
from bots.app import App
from core.backends.chat_completions import ChatCompletionsBackend
from core.chat_service import ChatService, Outcome
from core.types import StoredMessage, Turn
from tests.fakes.openai_server import FakeOpenAIServer

QUESTION = "And what comes next?"
SEEDED = "seeded"  # the platform message id of each seeded chain's last answer


@dataclass(frozen=True)
class Sizes:
    depths: tuple[int, ...]
    builds: int  # prompt builds timed per depth
    turns: int  # whole turns timed per depth
    rounds: int  # the depths are measured in turn, this many times


FULL = Sizes(depths=(10, 100, 1_000, 10_000), builds=10, turns=2, rounds=10)
QUICK = Sizes(depths=(10, 100, 1_000, 10_000), builds=2, turns=1, rounds=1)


@dataclass
class Point:
    database: str
    depth: int
    leaf: str = ""  # the chain's last message
    messages: int = 0  # history messages the prompt carries
    tokens: int = 0  # the prompt's size
    turn_messages: int = 0  # history messages in the last timed turn's request
    seed_seconds: float = 0.0
    builds: list[float] = field(default_factory=list)
    turns: list[float] = field(default_factory=list)


def chain(depth: int, count: ChatCompletionsBackend) -> list[StoredMessage]:
    """One conversation ``depth`` messages deep, user first, each with its real token
    count in ``count``'s tokenizer."""
    conversation = str(uuid.uuid4())
    messages: list[StoredMessage] = []
    parent: str | None = None
    for i in range(depth):
        text = short_answer(i)
        message = StoredMessage(
            id=str(uuid.uuid4()),
            conversation_id=conversation,
            parent_id=parent,
            role="user" if i % 2 == 0 else "assistant",
            text=text,
            token_count=count.count_tokens(text),
        )
        messages.append(message)
        parent = message.id
    return messages


async def seed(app: App, service: ChatService, chat_id: str, depth: int) -> str:
    """A scope of ``service`` whose head is ``depth`` messages deep: all but the last
    turn in one batch (``add_messages``), the last through ``commit_turn``, which moves
    the head and links the answer to the platform message ``SEEDED``, as a turn does.
    Returns the id of that last answer."""
    backend = service.backend
    assert isinstance(backend, ChatCompletionsBackend)
    messages = chain(depth, backend)
    *older, user, assistant = messages
    await app.store.add_messages(older)
    scope_key = service.policy.scope_key(incoming(service, chat_id, QUESTION))
    links = [(chat_id, SEEDED, assistant.id)]
    await app.store.commit_turn(
        Turn(service.policy.name, scope_key, service.policy.backend, user, assistant, links)
    )
    return assistant.id


async def _measure_one(
    service: ChatService, llm: FakeOpenAIServer, point: Point, sizes: Sizes
) -> None:
    backend = service.backend
    assert isinstance(backend, ChatCompletionsBackend)
    call = backend._new_call(None)
    await backend._build_messages(QUESTION, point.leaf, call)  # caches warm
    for _ in range(sizes.builds):
        # The private pieces are the point: the prompt alone, without the HTTP request.
        started = time.perf_counter()
        call = backend._new_call(None)
        prompt = await backend._build_messages(QUESTION, point.leaf, call)
        point.builds.append(time.perf_counter() - started)
        point.messages, point.tokens = prompt.history_messages, prompt.tokens
    # Each turn replies to the seeded answer: a branch from it, so the depth stays put.
    reply = replace(incoming(service, f"depth-{point.depth}", QUESTION), reply_to_message_id=SEEDED)
    for _ in range(sizes.turns):
        started = time.perf_counter()
        outcome = await service.handle(reply, NullSink())
        point.turns.append(time.perf_counter() - started)
        if outcome is not Outcome.ANSWERED:
            raise RuntimeError(f"a turn at depth {point.depth}: {outcome.value}")
        # The request: the system message, the history, the question.
        point.turn_messages = len(llm.chat_requests[-1].messages) - 2


async def measure(found: Sequence[Database], sizes: Sizes) -> list[Point]:
    points: list[Point] = []
    async with FakeOpenAIServer() as server:
        for db in found:
            mine = [Point(db.name, depth) for depth in sizes.depths]
            async with parley_service(db.url, server.base_url, 1) as (app, service):
                for point in mine:
                    started = time.perf_counter()
                    point.leaf = await seed(app, service, f"depth-{point.depth}", point.depth)
                    point.seed_seconds = time.perf_counter() - started
                for _ in range(sizes.rounds):
                    for point in mine:
                        await _measure_one(service, server, point, sizes)
            points.extend(mine)
    return points


def table(points: Sequence[Point]) -> str:
    header = [
        "database",
        "depth",
        "messages in prompt",
        "prompt tokens",
        "prompt build ms",
        "build vs depth 10",
        "turn ms",
        "turn vs depth 10",
        "seeded in s",
    ]
    rows = []
    base: Point | None = None
    for p in points:
        if base is None or base.database != p.database:
            base = p  # the first (shallowest) depth of each database
        rows.append(
            [
                p.database,
                f"{p.depth:,}",
                f"{p.messages:,}",
                f"{p.tokens:,}",
                number(median_ms(p.builds), 2),
                ratio(median_ms(p.builds), median_ms(base.builds)),
                number(median_ms(p.turns), 2),
                ratio(median_ms(p.turns), median_ms(base.turns)),
                number(p.seed_seconds, 2),
            ]
        )
    return "\n".join([markdown(header, rows), *_past_the_budget(points)])


def _past_the_budget(points: Sequence[Point]) -> list[str]:
    """The deepest point against the one before it, per database: 1.00 is flat."""
    lines = []
    for db in dict.fromkeys(p.database for p in points):
        *_, before, deepest = [p for p in points if p.database == db]
        lines.append(
            f"{db}: at depth {deepest.depth:,} against {before.depth:,}, prompt build "
            f"{ratio(median_ms(deepest.builds), median_ms(before.builds))}, turn "
            f"{ratio(median_ms(deepest.turns), median_ms(before.turns))}"
        )
    return lines
