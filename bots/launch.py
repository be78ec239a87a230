"""The ``parley`` console script, in a module that imports nothing: so that even the
CLI's own imports (pydantic, the config models, YAML) run with the cyclic garbage
collector off, which ``bots.cli.entry`` keeps off for an ask's start-up and turns
back on for every other command as soon as the arguments are read."""

from __future__ import annotations

import gc


def entry() -> int:
    gc.disable()
    from bots.cli import entry as cli_entry

    return cli_entry(collector_off=True)
