"""What a Telegram user feels when many chats stream long answers at once, parley
against the way popular GPT bots stream, and parley's throughput against a bare bot.

1. Flood: private chats and supergroups each send one message at the same moment; the
   fake LLM streams a ~10,000-character plain answer (4-character deltas, ~9 s each)
   to every one; the fake Bot API enforces Telegram's flood limits (1 message op per
   second per chat, 20 per minute per group, 30 per second overall): beyond them it
   answers 429, and, as Telegram does, keeps answering 429 until the retry_after is
   over. In the same run, parley and two naive PTB bots (bench/telegram_baselines.py:
   an edit every second, and an edit every 100 new characters): the 429s, how many
   final texts are complete, Bot API calls per answer, and the time from the model's
   first token to the first text the user sees.
2. Throughput: 50 private chats × 4 turns, each chat sending its next message when
   the previous answer has arrived, short answers, no flood limits at the fake: turns
   per second end to end and peak RSS, parley against a bare PTB bot (one LLM call,
   one sendMessage), and the ratio.

Each bot runs in its own child process (so its peak RSS is its own) with its own fakes
in that process, over loopback. Run: ``python -m bench.telegram_flood [--quick]``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from adapters.delivery.target import PlatformLimits
from adapters.telegram.limits import TELEGRAM_LIMITS
from bench.answers import MODEL, TimedAnswers, make_answer, short_answer, squeezed
from bench.harness import (
    Bench,
    Runner,
    Sizes,
    ask_all,
    chat_row,
    fake_llm,
    flood_result,
    median_max,
    print_throughput,
    rss_mib,
    settle,
    started,
    stopped,
    throughput_result,
    timed_turns,
)
from bench.telegram_baselines import BareBot, NaiveStreamingBot
from bench.telegram_world import (
    TOKEN,
    USERNAME,
    ParleyBot,
    add_chats,
    first_visible,
    last_shown,
    message_calls,
    prompt,
    shown_text,
)
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.telegram_api import FakeTelegram

TICK = 1.0  # Telegram's per-chat interval, which is the scheduler's tick for one chat
METHODS = ("sendMessageDraft", "sendMessage", "editMessageText", "sendChatAction")
FLOOD_BOTS = ("parley", "naive-1s", "naive-100ch")
THROUGHPUT_BOTS = ("parley", "parley-tg", "bare")
# Telegram's limits with the budgets lifted: the fake does not enforce them in the
# throughput run, so parley's own overhead shows instead of Telegram's 1 message per
# second per chat and 30 per second overall (the "parley-tg" row keeps them).
UNLIMITED = replace(TELEGRAM_LIMITS, chat_ops=1_000, group_ops=None, global_ops=100_000)


@dataclass(frozen=True, kw_only=True)
class TelegramSizes(Sizes):
    privates: int
    groups: int


FULL = TelegramSizes(
    privates=10,
    groups=10,
    answer_chars=10_000,
    chunk_chars=4,
    chunk_delay=0.0025,
    chats=50,
    turns=4,
    rounds=3,
)
QUICK = TelegramSizes(
    privates=4,
    groups=4,
    answer_chars=5_000,
    chunk_chars=4,
    chunk_delay=0.0025,
    chats=10,
    turns=2,
    rounds=1,
)


def _bot(
    kind: str,
    tg: FakeTelegram,
    llm: FakeOpenAIServer,
    folder: Path,
    slots: int,
    *,
    limits: PlatformLimits = TELEGRAM_LIMITS,
) -> Runner:
    args = (TOKEN, tg.api_base_url, llm.base_url, MODEL)
    if kind == "parley":
        return ParleyBot(tg, llm, folder, slots, limits)
    if kind == "parley-tg":
        return ParleyBot(tg, llm, folder, slots, TELEGRAM_LIMITS)
    if kind == "naive-1s":
        return NaiveStreamingBot(*args, every_seconds=1.0)
    if kind == "naive-100ch":
        return NaiveStreamingBot(*args, every_seconds=None, every_chars=100)
    if kind == "bare":
        return BareBot(*args)
    raise ValueError(f"unknown bot {kind!r}")


async def flood(kind: str, sizes: TelegramSizes) -> dict[str, Any]:
    answers = TimedAnswers(chunk_chars=sizes.chunk_chars)
    async with (
        FakeTelegram(token=TOKEN, username=USERNAME, flood=True, penalty=True) as tg,
        fake_llm(answers, sizes.chunk_delay) as (llm, folder),
    ):
        chats = add_chats(tg, sizes.privates + 1, sizes.groups)
        for chat, _, _ in chats:
            answers.answers[chat] = make_answer(chat, sizes.answer_chars)
        (warm, warm_user, _), chats = chats[0], chats[1:]
        answers.answers[warm] = short_answer(warm)
        bot = _bot(kind, tg, llm, folder, len(chats))
        stop = asyncio.Event()
        task = await started(bot, stop, tg.wait_for, lambda: tg.calls_to("getUpdates"))
        # One exchange first, so the flood meets a bot that has answered before
        # (connections open, tokenizer loaded), as a bot in service has.
        tg.send_text(warm, warm_user, prompt(warm, False))
        await tg.wait_bot_messages(warm, 1, timeout=30)
        await settle(lambda: message_calls(tg), bot, quiet=1.2, timeout=30)
        first_call, first_429 = len(tg.calls), tg.count_429
        askers = {chat: (user, is_group) for chat, user, is_group in chats}

        def ask(chat: int) -> None:
            user, is_group = askers[chat]
            tg.send_text(chat, user, prompt(chat, is_group))

        sent = await ask_all(list(askers), ask, llm, tg.wait_for)
        settled = await settle(lambda: message_calls(tg), bot, quiet=2.0, timeout=90)
        await stopped(stop, task)
        calls = tg.calls[first_call:]
        per_chat: list[dict[str, Any]] = []
        for chat, _, is_group in chats:
            mine = [c for c in calls if c.chat_id == chat]
            complete = squeezed(shown_text(tg, chat)) == squeezed(answers.answers[chat])
            times = first_visible(mine), last_shown(mine)
            per_chat.append(
                chat_row(
                    answers,
                    chat,
                    sent[chat],
                    mine,
                    times,
                    complete,
                    group=is_group,
                    messages=len(tg.bot_messages(chat)),
                    calls=dict(Counter(c.method for c in mine if c.method in METHODS)),
                )
            )
        return flood_result(
            kind, per_chat, answers, sent, refused=tg.count_429 - first_429, settled=settled
        )


async def throughput(kind: str, sizes: TelegramSizes) -> dict[str, Any]:
    answers = TimedAnswers(chunk_chars=1_000_000)  # short answers, in one delta
    async with (
        FakeTelegram(token=TOKEN, username=USERNAME) as tg,
        fake_llm(answers, 0.0) as (llm, folder),
    ):
        chats = add_chats(tg, sizes.chats + 1, 0)
        for chat, _, _ in chats:
            answers.answers[chat] = short_answer(chat)
        (warm, warm_user, _), chats = chats[0], chats[1:]
        rss_before = rss_mib()  # the fakes up, the bot not yet started
        bot = _bot(kind, tg, llm, folder, sizes.chats, limits=UNLIMITED)
        stop = asyncio.Event()
        task = await started(bot, stop, tg.wait_for, lambda: tg.calls_to("getUpdates"))
        # One turn first: connections, the tokenizer, the first SQLite writes.
        tg.send_text(warm, warm_user, prompt(warm, False))
        await tg.wait_bot_messages(warm, 1, timeout=30)

        latencies, wall = await timed_turns(
            [c for c, _, _ in chats],
            sizes.turns,
            lambda c, turn: tg.send_text(c, c, prompt(c, False, turn)),  # private: c = user
            lambda c, n: tg.wait_bot_messages(c, n, timeout=60),
            bot,
        )
        await stopped(stop, task)
        right = sum(
            1
            for chat, _, _ in chats
            for m in tg.bot_messages(chat)
            if m.text == answers.answers[chat]
        )
        return throughput_result(kind, latencies, wall, right, rss_before)


# --- the parent: one child process per bot, then the tables --------------------------


def _flood_row(bot: str, label: str, chats: list[dict[str, Any]]) -> str:
    n = len(chats)
    calls: Counter[str] = Counter()
    for chat in chats:
        calls.update(chat["calls"])
    per = " ".join(f"{calls[m] / n:>6.1f}" for m in METHODS)
    ops = sum(calls[m] for m in METHODS if m != "sendChatAction") / n
    first_med, first_max = median_max([c["first_visible"] for c in chats])
    wait_med, _ = median_max([c["wait"] for c in chats])
    final_med, final_max = median_max([c["final_after_last_token"] for c in chats])
    complete = sum(1 for c in chats if c["complete"])
    got_429 = sum(c["429"] for c in chats)
    messages = sum(c["messages"] for c in chats) / n
    return (
        f"{bot:<11} {label:<7} {got_429:>5} {complete:>5}/{n:<2} {messages:>4.1f} "
        f"{per} {ops:>6.1f} {first_med:>6} {first_max:>6} {wait_med:>6} "
        f"{final_med:>6} {final_max:>6}"
    )


def _print_flood(results: list[dict[str, Any]], sizes: TelegramSizes) -> None:
    streams = ", ".join(f"{r['bot']} {r['stream_seconds']:.1f} s" for r in results)
    print(
        f"Flood: {sizes.privates} private chats + {sizes.groups} supergroups at once, "
        f"~{sizes.answer_chars:,}-char answers in {sizes.chunk_chars}-char deltas, "
        "fake Bot API enforcing Telegram's flood limits"
    )
    print(f"first to last token, median: {streams}")
    print(
        f"{'':<11} {'':<7} {'':>5} {'':>8} {'msgs':>4} "
        f"{'calls per answer, refused too':^34} "
        f"{'first':^13} {'wait':>6} {'final':^13}"
    )
    print(
        f"{'bot':<11} {'chats':<7} {'429s':>5} {'complete':>8} {'/ans':>4} "
        f"{'draft':>6} {'send':>6} {'edit':>6} {'typing':>6} {'msg op':>6} "
        f"{'med ms':>6} {'max ms':>6} {'med ms':>6} {'med ms':>6} {'max ms':>6}"
    )
    for result in results:
        chats = result["chats"]
        for label, subset in (
            ("all", chats),
            ("private", [c for c in chats if not c["group"]]),
            ("group", [c for c in chats if c["group"]]),
        ):
            if subset:
                print(_flood_row(result["bot"], label, subset))
        if not result["settled"]:
            print(f"{'':<11} (still sending when the benchmark stopped waiting)")
    print(
        "first: model's first token → first text the user sees (target < "
        f"{TICK * 1000:.0f} ms, one tick); wait: user's message → first text; final: "
        "model's last token → last message call, complete answers only; complete: the "
        "chat's bot messages, joined, equal the answer modulo whitespace; msg op: "
        "sends, edits and drafts (typing is free)."
    )


def _print_throughput(runs: list[dict[str, Any]], sizes: TelegramSizes) -> None:
    rounds = len(runs) // len(THROUGHPUT_BOTS)
    print(
        f"Throughput: {sizes.chats} private chats × {sizes.turns} turns, short answers, "
        f"fake Bot API without flood limits; {rounds} run(s) per bot, interleaved"
    )
    print_throughput(runs, THROUGHPUT_BOTS, [("parley", "bare"), ("parley-tg", "bare")])
    print(
        "turns/s: median of the runs; parley: Telegram's budgets lifted (its own "
        "overhead); parley-tg: Telegram's limits kept (≤ 1 message per second per chat, "
        "30 per second overall). Peak RSS: the whole process, both fakes included; "
        "RSS +: its growth from the fakes' start to the end of the run."
    )


BENCH = Bench(
    module="bench.telegram_flood",
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
