"""`make bench`'s overhead benchmark runs (its figures are not asserted: machines are
noisy); every parley turn must have been answered, or measure() raises."""

from __future__ import annotations

from pathlib import Path

from bench.chat_overhead import measure


async def test_the_overhead_benchmark_runs(tmp_path: Path) -> None:
    bare, parley = await measure(4, 2, tmp_path, rounds=2)
    for timing in (bare, parley):
        assert timing.wall > 0 and timing.cpu > 0
