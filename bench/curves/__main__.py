"""``python -m bench.curves {throughput,depth,memory,all} [--quick]``: how parley's costs
grow with concurrent conversations, conversation depth and stored conversations, each
against a baseline measured in the same run. Prints Markdown tables."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

from bench.curves import depth, memory, throughput
from bench.curves.databases import databases

CURVES = ("throughput", "depth", "memory")


async def _run(curve: str, quick: bool, folder: Path, args: argparse.Namespace) -> str:
    if curve == "memory":
        sizes = memory.QUICK if quick else memory.FULL
        return memory.table(await memory.measure(folder, sizes))
    with databases(folder, postgres=args.postgres, postgres_url=args.postgres_url) as found:
        if curve == "throughput":
            return throughput.table(
                await throughput.measure(found, throughput.QUICK if quick else throughput.FULL)
            )
        return depth.table(await depth.measure(found, depth.QUICK if quick else depth.FULL))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("curve", choices=[*CURVES, "all"])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    parser.add_argument(
        "--postgres-url",
        help="an empty PostgreSQL database (postgresql+asyncpg://...) instead of a "
        "throwaway cluster; the run's rows are left in it",
    )
    parser.add_argument("--no-postgres", dest="postgres", action="store_false", help="SQLite only")
    args = parser.parse_args()
    # The fakes and the bare baselines log refusals and warnings that are not news here.
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore", DeprecationWarning)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    for curve in CURVES if args.curve == "all" else (args.curve,):
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            text = asyncio.run(_run(curve, args.quick, Path(tmp), args))
        print(f"\n{curve} ({time.monotonic() - started:.0f} s):\n{text}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
