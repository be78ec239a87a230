"""What a Discord user feels when many channels stream long answers at once, parley
against the way popular Discord GPT bots stream and against a bare bot, and parley's
throughput against both.

1. Flood: 24 channels each ask at the same moment; the fake LLM streams a
   ~6,000-character plain answer (8-character deltas, ~8 s) to every one; the fake
   Discord enforces Discord's limits (5 message creates/edits per 5 s per channel, 50
   requests per second overall) and answers 429 beyond them, with ``Via``, so discord.py
   waits it out and retries. In the same run, parley and the two baselines of
   bench/discord_baselines.py (a naive streaming bot editing every second, and a bare
   bot that sends the whole answer at the end): 429s received, answers complete and
   word for word, REST calls per answer, and the time from the model's first token to
   the first text the user sees.
2. Throughput: 24 channels × 4 turns, each channel asking again when its answer has
   arrived, short answers, no limits at the fake: turns per second end to end and
   peak RSS, against the same baselines, and the ratios.

Each bot runs in its own child process (so its peak RSS is its own) with its own fakes
in that process, over loopback. Run: ``python -m bench.discord_flood [--quick]``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from adapters.delivery.target import PlatformLimits
from adapters.discord.limits import DISCORD_LIMITS
from bench.answers import MODEL, TimedAnswers, make_answer, short_answer, squeezed, word_for_word
from bench.discord_baselines import BareBot, NaiveStreamingBot
from bench.discord_world import (
    BOT,
    EDIT,
    SEND,
    TOKEN,
    TYPING,
    DiscordRunner,
    ParleyBot,
    add_channels,
    first_visible,
    last_shown,
    message_calls,
    prompt,
    shown_parts,
)
from bench.harness import (
    Bench,
    Sizes,
    ask_all,
    chat_row,
    fake_llm,
    flood_result,
    median_max,
    ms,
    percentile,
    print_throughput,
    ratio,
    rss_mib,
    settle,
    started,
    stopped,
    throughput_result,
    timed_turns,
)
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.openai_server import FakeOpenAIServer

ROUTES = {"send": SEND, "edit": EDIT, "typing": TYPING}
FLOOD_BOTS = ("parley", "naive-1s", "bare")
THROUGHPUT_BOTS = ("parley", "parley-dc", "naive-1s", "bare")
# Discord's limits with the budgets lifted: the fake does not enforce them in the
# throughput run, so parley's own overhead shows instead of Discord's 5 message
# operations per 5 s per channel and 50 requests a second (the "parley-dc" row keeps them).
UNLIMITED = replace(DISCORD_LIMITS, chat_ops=1_000, global_ops=100_000, edit_interval=0.05)


@dataclass(frozen=True, kw_only=True)
class DiscordSizes(Sizes):
    channels: int


FULL = DiscordSizes(
    channels=24,
    answer_chars=6_000,
    chunk_chars=8,
    chunk_delay=0.01,
    chats=24,
    turns=4,
    rounds=3,
)
QUICK = DiscordSizes(
    channels=6,
    answer_chars=3_000,
    chunk_chars=8,
    chunk_delay=0.01,
    chats=6,
    turns=2,
    rounds=1,
)


def _bot(
    kind: str,
    dc: FakeDiscord,
    llm: FakeOpenAIServer,
    folder: Path,
    slots: int,
    *,
    limits: PlatformLimits = DISCORD_LIMITS,
) -> DiscordRunner:
    args = (TOKEN, dc.api_base_url, dc.gateway_url, llm.base_url, MODEL)
    if kind == "parley":
        return ParleyBot(dc, llm, folder, slots, limits)
    if kind == "parley-dc":
        return ParleyBot(dc, llm, folder, slots, DISCORD_LIMITS)
    if kind == "naive-1s":
        return NaiveStreamingBot(*args)
    if kind == "bare":
        return BareBot(*args)
    raise ValueError(f"unknown bot {kind!r}")


async def _warmed(
    dc: FakeDiscord, bot: DiscordRunner, stop: asyncio.Event, warm: tuple[int, int]
) -> asyncio.Task[None]:
    """``bot`` started, and one exchange done, so what is measured meets a bot that has
    answered before (connections open, tokenizer loaded), as a bot in service has."""
    task = await started(bot, stop, dc.wait_for, bot.ready)
    channel, user = warm
    dc.send_message(channel, user, prompt(channel))
    await dc.wait_bot_messages(channel, 1, timeout=30)
    return task


async def flood(kind: str, sizes: DiscordSizes) -> dict[str, Any]:
    answers = TimedAnswers(chunk_chars=sizes.chunk_chars)
    async with (
        FakeDiscord(token=TOKEN, bot_id=BOT, flood=True) as dc,
        fake_llm(answers, sizes.chunk_delay) as (llm, folder),
    ):
        chats = add_channels(dc, sizes.channels + 1)
        warm, chats = chats[0], chats[1:]
        answers.answers[warm[0]] = short_answer(warm[0])
        for channel, _ in chats:
            answers.answers[channel] = make_answer(channel, sizes.answer_chars)
        bot = _bot(kind, dc, llm, folder, len(chats))
        stop = asyncio.Event()
        task = await _warmed(dc, bot, stop, warm)
        # Quiet for longer than Discord's 1 s global window: login, the command
        # sync and the warm-up are out of it when the flood starts.
        await settle(lambda: len(dc.calls), bot, quiet=1.2, timeout=30)
        first_call, first_429 = len(dc.calls), dc.count_429
        users = dict(chats)
        sent = await ask_all(
            list(users), lambda c: dc.send_message(c, users[c], prompt(c)), llm, dc.wait_for
        )
        settled = await settle(lambda: message_calls(dc), bot, quiet=1.5, timeout=90)
        await stopped(stop, task)
        calls = dc.calls[first_call:]
        per_chat: list[dict[str, Any]] = []
        for channel, _ in chats:
            mine = [c for c in calls if c.channel_id == channel]
            parts = shown_parts(dc, channel)
            answer = answers.answers[channel]
            complete = squeezed("".join(parts)) == squeezed(answer)
            times = first_visible(mine), last_shown(mine)
            per_chat.append(
                chat_row(
                    answers,
                    channel,
                    sent[channel],
                    mine,
                    times,
                    complete,
                    correct=complete and word_for_word(parts, answer),
                    messages=len(parts),
                    calls=dict(Counter(c.route for c in mine)),
                )
            )
        return flood_result(
            kind, per_chat, answers, sent, refused=dc.count_429 - first_429, settled=settled
        )


async def throughput(kind: str, sizes: DiscordSizes) -> dict[str, Any]:
    answers = TimedAnswers(chunk_chars=1_000_000)  # short answers, in one delta
    async with (
        FakeDiscord(token=TOKEN, bot_id=BOT) as dc,
        fake_llm(answers, 0.0) as (llm, folder),
    ):
        chats = add_channels(dc, sizes.chats + 1)
        for channel, _ in chats:
            answers.answers[channel] = short_answer(channel)
        warm, chats = chats[0], chats[1:]
        users = dict(chats)
        rss_before = rss_mib()  # the fakes up, the bot not yet started
        bot = _bot(kind, dc, llm, folder, sizes.chats, limits=UNLIMITED)
        stop = asyncio.Event()
        task = await _warmed(dc, bot, stop, warm)

        latencies, wall = await timed_turns(
            list(users),
            sizes.turns,
            lambda c, turn: dc.send_message(c, users[c], prompt(c, turn)),
            lambda c, n: dc.wait_bot_messages(c, n, timeout=60),
            bot,
        )
        await stopped(stop, task)
        right = sum(
            1
            for channel in users
            for part in shown_parts(dc, channel)
            if part == answers.answers[channel]
        )
        return throughput_result(kind, latencies, wall, right, rss_before)


# --- the parent: one child process per bot, then the tables --------------------------


def _p50_p95(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    known = [v for v in values if v is not None]
    if not known:
        return None, None
    return percentile(known, 50), percentile(known, 95)


def _calls_per_answer(chats: list[dict[str, Any]]) -> dict[str, float]:
    calls: Counter[str] = Counter()
    for chat in chats:
        calls.update(chat["calls"])
    n = len(chats)
    per = {name: calls[route] / n for name, route in ROUTES.items()}
    per["rest"] = sum(calls.values()) / n
    return per


def _flood_row(result: dict[str, Any]) -> str:
    chats = result["chats"]
    n = len(chats)
    per = _calls_per_answer(chats)
    p50, p95 = _p50_p95([c["first_visible"] for c in chats])
    wait50, _ = _p50_p95([c["wait"] for c in chats])
    final_med, final_max = median_max([c["final_after_last_token"] for c in chats])
    complete = sum(1 for c in chats if c["complete"])
    correct = sum(1 for c in chats if c["correct"])
    messages = sum(c["messages"] for c in chats) / n
    counts = f"{complete}/{n}", f"{correct}/{n}"
    return (
        f"{result['bot']:<9} {result['count_429']:>5} {counts[0]:>8} {counts[1]:>8} "
        f"{messages:>4.1f} {per['send']:>5.1f} {per['edit']:>5.1f} {per['typing']:>6.1f} "
        f"{per['rest']:>5.1f} {ms(p50):>6} {ms(p95):>6} {ms(wait50):>6} "
        f"{final_med:>6} {final_max:>6} {result['rss_mib']:>7.1f}"
    )


def _print_flood(results: list[dict[str, Any]], sizes: DiscordSizes) -> None:
    streams = ", ".join(f"{r['bot']} {r['stream_seconds']:.1f} s" for r in results)
    print(
        f"Flood: {sizes.channels} channels at once, ~{sizes.answer_chars:,}-char answers in "
        f"{sizes.chunk_chars}-char deltas, fake Discord enforcing Discord's rate limits"
    )
    print(f"first to last token, median: {streams}")
    print(
        f"{'':<9} {'':>5} {'answers':^17} {'msgs':>4} {'REST calls per answer':^24} "
        f"{'first text':^13} {'wait':>6} {'final':^13} {'peak'}"
    )
    print(
        f"{'bot':<9} {'429s':>5} {'complete':>8} {'correct':>8} {'/ans':>4} "
        f"{'send':>5} {'edit':>5} {'typing':>6} {'all':>5} {'p50 ms':>6} {'p95 ms':>6} "
        f"{'p50 ms':>6} {'med ms':>6} {'max ms':>6} {'RSS MiB':>7}"
    )
    for result in results:
        print(_flood_row(result))
        if not result["settled"]:
            print(f"{'':<9} (still sending when the benchmark stopped waiting)")
    by_bot = {r["bot"]: r for r in results}
    first = {bot: _p50_p95([c["first_visible"] for c in r["chats"]]) for bot, r in by_bot.items()}
    rest = {bot: _calls_per_answer(r["chats"])["rest"] for bot, r in by_bot.items()}
    for base in (b for b in by_bot if b != "parley"):
        print(
            f"parley/{base}: REST calls per answer {ratio(rest['parley'], rest[base])}, "
            f"first text p50 {ratio(first['parley'][0], first[base][0])}, "
            f"p95 {ratio(first['parley'][1], first[base][1])}, "
            f"peak RSS {ratio(by_bot['parley']['rss_mib'], by_bot[base]['rss_mib'])}"
        )
    print(
        "429s: every 429 the fake sent during the flood (discord.py waits each out and "
        "retries); complete: every character of the answer is on screen (the channel's "
        "messages joined, whitespace aside); correct: also word for word (a message "
        "boundary counts as a space, so a word cut in two is wrong); first text: model's "
        "first token → first text the user sees; wait: user's message → first text; "
        "final: model's last token → last message call, complete answers only; peak RSS: "
        "the whole process, both fakes included."
    )


def _print_throughput(runs: list[dict[str, Any]], sizes: DiscordSizes) -> None:
    rounds = len(runs) // len(THROUGHPUT_BOTS)
    print(
        f"Throughput: {sizes.chats} channels × {sizes.turns} turns, short answers, fake "
        f"Discord without rate limits; {rounds} run(s) per bot, interleaved"
    )
    print_throughput(
        runs,
        THROUGHPUT_BOTS,
        [("parley", "bare"), ("parley", "naive-1s"), ("parley-dc", "bare")],
    )
    print(
        "turns/s: median of the runs; parley: Discord's budgets lifted (its own "
        "overhead); parley-dc: Discord's limits kept (5 message operations per 5 s per "
        "channel, 50 requests a second overall). Peak RSS: the whole process, both fakes "
        "included; RSS +: its growth from the fakes' start to the end of the run."
    )


BENCH = Bench(
    module="bench.discord_flood",
    full=FULL,
    quick=QUICK,
    flood=flood,
    throughput=throughput,
    flood_bots=FLOOD_BOTS,
    throughput_bots=THROUGHPUT_BOTS,
    show_flood=_print_flood,
    show_throughput=_print_throughput,
)

if __name__ == "__main__":
    BENCH.main(__doc__.splitlines()[0])
