"""bench.curves runs, in its --quick sizes, and measures what its tables claim: every
turn answered through the real store on SQLite and PostgreSQL, prompts that stop
growing once the token budget is reached, and a ``parley run`` process that reads the
conversations seeded into its store."""

from __future__ import annotations

from pathlib import Path

from bench.curves import depth, memory, throughput
from bench.curves.databases import Database
from bench.curves.table import markdown


def _databases(tmp_path: Path, postgres_url: str) -> list[Database]:
    return [
        Database("SQLite", f"sqlite+aiosqlite:///{tmp_path / 'curves.db'}"),
        Database("PostgreSQL", postgres_url),
    ]


async def test_throughput_answers_every_turn_on_both_databases(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    points = await throughput.measure(_databases(tmp_path, fresh_postgres_url), throughput.QUICK)

    assert [(p.database, p.conversations) for p in points] == [
        ("SQLite", 1),
        ("SQLite", 16),
        ("PostgreSQL", 1),
        ("PostgreSQL", 16),
    ]
    for p in points:
        assert len(p.parley_latencies) == len(p.bare_latencies) == p.turns
        assert p.parley_rate > 0 and p.bare_rate > 0
    lines = throughput.table(points).splitlines()
    assert "parley/bare" in lines[0] and len(lines) == 2 + len(points)


async def test_depth_prompts_stop_growing_once_the_budget_is_reached(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    points = await depth.measure(_databases(tmp_path, fresh_postgres_url), depth.QUICK)

    for db in ("SQLite", "PostgreSQL"):
        carried = {p.depth: (p.messages, p.tokens) for p in points if p.database == db}
        assert carried[10][0] == 10 and carried[100][0] == 100  # within the budget: all
        assert 100 < carried[1_000][0] < 1_000  # beyond it: as many as fit,
        assert carried[10_000][0] == carried[1_000][0]  # however deep the conversation
        assert carried[10_000][1] <= 4096 - 1000  # max_model_tokens - max_response_tokens
    # The timed turns answer at the same depth: the chat service sent those prompts.
    assert all(p.turn_messages == p.messages for p in points)
    assert all(len(p.turns) == depth.QUICK.turns for p in points)


async def test_memory_runs_parley_that_reads_the_seeded_conversations(tmp_path: Path) -> None:
    sizes = memory.Sizes(conversations=200, chats=1, rounds=1)
    empty, loaded = await memory.measure(tmp_path, sizes)

    assert [r.answered for r in empty.runs + loaded.runs] == [2, 2]  # one per platform
    assert empty.runs[0].history == [0, 0]
    assert loaded.runs[0].history == [2, 2]  # each chat's stored turn, read from the store
    assert loaded.database_mib > empty.database_mib
    assert 50 < empty.peak_mib < 2000 and loaded.peak_mib > 50
    assert "vs empty" in memory.table([empty, loaded])


def test_markdown_tables_align_their_columns() -> None:
    assert markdown(["a", "bb"], [["x", "1"], ["yyy", "22"]]).splitlines() == [
        "| a   | bb |",
        "| --- | -: |",
        "| x   |  1 |",
        "| yyy | 22 |",
    ]
