"""Start-up cost of a one-shot ``parley ask`` against an instant LLM server.

Each run is a fresh process, as a user (or a script) runs it: ``parley ask "hi"`` with a
chat_completions backend at the fake OpenAI-compatible server on loopback and a SQLite
store in a temporary folder whose schema is already current (one warm-up run creates
it, and the tokenizer's cache). Measured under ``/usr/bin/time -v`` (peak RSS; without
it, ``getrusage(RUSAGE_CHILDREN)``), wall time by the clock here.

The baseline in the same run is the least a script can do for the same answer: a bare
``python -c`` that imports aiohttp, posts the one request and prints the streamed text.
Then ``--concurrent`` (20) asks start at once on the one SQLite file: how many succeed
with the right answer, and how long until the last is done.

Wall time is what the issue's target is about, but on a shared machine it is mostly
other processes' load: the CPU time (user + system) of each run is printed too, and
the load average at start and end.

Run: ``python -m bench.startup`` (or ``make bench``); ``--runs N`` for more samples.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import ROOT, percentile
from tests.fakes.openai_server import FakeOpenAIServer

TIME = shutil.which("time", path="/usr/bin:/bin") or None
#: What the issue asks of one ask (issue 10): wall seconds and peak MiB.
TARGET_WALL = 0.5
TARGET_RSS_MIB = 100.0

# The bare client: aiohttp, one streamed request, the text to stdout.
BARE = """
import asyncio, json, sys
import aiohttp

async def main(url, prompt):
    body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.content:
                if line.startswith(b"data: ") and line[6:].strip() != b"[DONE]":
                    delta = json.loads(line[6:])["choices"][0].get("delta", {})
                    sys.stdout.write(delta.get("content") or "")
    print()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    wall: float
    cpu: float | None  # user + system seconds
    rss_mib: float | None


def parley_command() -> list[str]:
    """The ``parley`` console script next to this interpreter, as users run it."""
    script = Path(sys.executable).parent / "parley"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bots.cli"]


def _field(report: str, name: str) -> float | None:
    for line in report.splitlines():
        if line.strip().startswith(name):
            return float(line.rsplit(":", 1)[1])
    return None


async def run(command: list[str], env: dict[str, str], folder: Path, tag: str) -> Run:
    """``command`` in a child process (under ``time -v`` when there is one)."""
    report = folder / f"time-{tag}.txt"
    timed = [TIME, "-v", "-o", str(report), *command] if TIME else command
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *timed,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=folder,
    )
    out, err = await asyncio.wait_for(process.communicate(), 300)
    wall = time.perf_counter() - start
    rss: float | None = None
    cpu: float | None = None
    if TIME and report.exists():
        text = report.read_text()
        rss = _field(text, "Maximum resident set size")
        user, system = _field(text, "User time"), _field(text, "System time")
        cpu = None if user is None or system is None else user + system
        report.unlink()
    else:
        # The largest child so far: exact for sequential runs once it grows; the CPU
        # time of every child that ended meanwhile (exact for sequential runs).
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        rss = float(after.ru_maxrss) if after.ru_maxrss > before.ru_maxrss else None
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert process.returncode is not None
    return Run(
        process.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        wall,
        cpu,
        None if rss is None else rss / 1024,
    )


def write_config(folder: Path, base_url: str) -> Path:
    path = folder / "config.yaml"
    path.write_text(
        f"""
database: {{url: "sqlite+aiosqlite:///{folder / "startup.db"}"}}
default_backend: llm
backends:
  llm:
    type: chat_completions
    base_url: {base_url}
    model: bench
    max_retries: 0
"""
    )
    return path


def summary(name: str, runs: list[Run]) -> tuple[float, float | None, float | None]:
    """Prints a row; returns wall p50, CPU p50 and peak RSS."""
    walls = [r.wall for r in runs]
    cpus = [r.cpu for r in runs if r.cpu is not None]
    rss = [r.rss_mib for r in runs if r.rss_mib is not None]
    wall_p50 = statistics.median(walls)
    cpu_p50 = statistics.median(cpus) if cpus else None
    rss_peak = max(rss) if rss else None
    print(
        f"{name:<12} {len(runs):>5} {wall_p50 * 1000:>9.0f} {percentile(walls, 90) * 1000:>9.0f} "
        f"{max(walls) * 1000:>9.0f} {'-' if cpu_p50 is None else f'{cpu_p50 * 1000:.0f}':>11} "
        f"{'-' if rss_peak is None else f'{rss_peak:.1f}':>13}"
    )
    return wall_p50, cpu_p50, rss_peak


def check(result: Run, prompt: str, what: str) -> None:
    if result.code != 0 or f"Echo: {prompt}" not in result.out:
        raise SystemExit(f"{what} failed (exit {result.code}): {result.err.strip()[-2000:]}")


async def main(runs: int, concurrent: int) -> None:
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    if TIME is None:
        print("(no /usr/bin/time: peak RSS from getrusage(RUSAGE_CHILDREN))")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        async with FakeOpenAIServer() as server:
            config = write_config(folder, server.base_url)
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "PARLEY_HOME": str(folder / "home"),
                "XDG_CACHE_HOME": str(folder / "cache"),  # the tokenizer's cache: ours alone
            }
            ask = [*parley_command(), "ask", "--config", str(config)]
            bare = [sys.executable, "-c", BARE, server.base_url]
            # Warm-up: creates the schema and the tokenizer cache, as any first run does.
            check(await run([*ask, "warm-up"], env, folder, "warm"), "warm-up", "the warm-up ask")

            parley_runs: list[Run] = []
            bare_runs: list[Run] = []
            for i in range(runs):  # interleaved: the machine's load falls on both alike
                parley_runs.append(await run([*ask, "hi"], env, folder, f"p{i}"))
                check(parley_runs[-1], "hi", "parley ask")
                bare_runs.append(await run([*bare, "hi"], env, folder, f"b{i}"))
                check(bare_runs[-1], "hi", "the bare client")
            print(
                f"{'one-shot ask':<12} {'runs':>5} {'p50 ms':>9} {'p90 ms':>9} {'max ms':>9} "
                f"{'CPU p50 ms':>11} {'peak RSS MiB':>13}"
            )
            p_wall, p_cpu, p_rss = summary("parley ask", parley_runs)
            b_wall, b_cpu, b_rss = summary("bare aiohttp", bare_runs)
            cpu_ratio = f"{p_cpu / b_cpu:.2f}" if p_cpu and b_cpu else "-"
            rss_ratio = f"{p_rss / b_rss:.2f}" if p_rss and b_rss else "-"
            print(f"parley/bare: wall {p_wall / b_wall:.2f}, CPU {cpu_ratio}, peak RSS {rss_ratio}")
            verdict = p_wall <= TARGET_WALL and (p_rss is None or p_rss <= TARGET_RSS_MIB)
            print(
                f"target ≤ {TARGET_WALL} s and ≤ {TARGET_RSS_MIB:.0f} MiB: "
                f"{'met' if verdict else 'NOT met'}"
            )

            start = time.perf_counter()
            results = await asyncio.gather(
                *(run([*ask, f"q{i}"], env, folder, f"c{i}") for i in range(concurrent))
            )
            wall = time.perf_counter() - start
            good = sum(1 for i, r in enumerate(results) if r.code == 0 and f"Echo: q{i}" in r.out)
            print(
                f"{concurrent} concurrent asks on one SQLite file: {good}/{concurrent} "
                f"succeeded, {wall:.2f} s until the last finished"
            )
            for i, r in enumerate(results):
                if r.code != 0 or f"Echo: q{i}" not in r.out:
                    print(f"  ask {i} (exit {r.code}): {r.err.strip()[-300:]}")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="one-shot asks (and bare runs)")
    parser.add_argument("--concurrent", type=int, default=20, help="asks started at once")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.concurrent))
