"""The ``parley`` command line. See DESIGN.md "The CLI" for the contract."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from adapters.settings import ConsoleBotConfig
from bots.config import (
    BotConfig,
    ConfigError,
    ParleyConfig,
    database_url,
    load_config,
    redacted_dump,
    secret_values,
)
from bots.errors import StartupError
from bots.logs import RedactSecrets, setup_logging

ASK_BOT = "ask"
Redact = Callable[[str], str]


def _common_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--config`` and ``-v`` go before or after the command. Below the top level they
    default to SUPPRESS, so a subcommand does not overwrite what the top level parsed."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None if top else argparse.SUPPRESS,
        help="config file (default: $PARLEY_CONFIG, ./config.yaml, built-in defaults)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if top else argparse.SUPPRESS,
        help="log more: -v a line per turn and retries, -vv parley's debug lines and "
        "tracebacks, -vvv the libraries' debug lines too",
    )


def _version() -> str:
    from importlib import metadata  # ~25 ms at every start: only for --version

    try:
        return metadata.version("parley")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """argparse's "version" action, with the version looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"parley {_version()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, top=False)
    parser = argparse.ArgumentParser(
        prog="parley", description="Self-hosted chat bots on one async ChatGPT core."
    )
    _common_options(parser, top=True)
    parser.add_argument("--version", action=_VersionAction, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    ask = sub.add_parser(
        "ask", parents=[common], help="ask one question; the answer streams to stdout"
    )
    ask.add_argument("prompt", nargs="?", help="the question (default: read from stdin)")
    ask.add_argument(
        "-c", "--continue", dest="cont", action="store_true", help="continue the last ask thread"
    )
    ask.add_argument(
        "--backend", metavar="NAME", help="backend from the config (default: default_backend)"
    )

    chat = sub.add_parser("chat", parents=[common], help="chat in the terminal")
    chat.add_argument("--backend", metavar="NAME", help="backend from the config")
    chat.add_argument("--new", action="store_true", help="start a fresh conversation")

    sub.add_parser("run", parents=[common], help="run every bot in the config until SIGINT/SIGTERM")

    db = sub.add_parser("db", parents=[common], help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_sub.add_parser("upgrade", parents=[common], help="migrate the database to the newest schema")
    db_sub.add_parser("current", parents=[common], help="print the database's schema revision")

    config = sub.add_parser("config", parents=[common], help="config file tools")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    config_sub.add_parser(
        "check", parents=[common], help="validate and print the config, secrets redacted"
    )
    return parser


def _console_bot(config: ParleyConfig) -> BotConfig:
    for bot in config.bots:
        if bot.platform == "console":
            return bot
    return ConsoleBotConfig(name="console", platform="console")


async def _ask(
    config: ParleyConfig, prompt: str, cont: bool, backend: str | None, redact: Redact
) -> int:
    from adapters.console import ConsoleSink, console_message
    from bots.app import App
    from core.chat_service import Outcome

    # The configured console bot's limits (max_input_chars) apply to `ask` too.
    settings = _console_bot(config).model_dump(include={"max_input_chars"})
    bot = ConsoleBotConfig(name=ASK_BOT, platform="console", **settings)
    async with App(config) as app:
        service = app.service(bot, backend)
        sink = ConsoleSink(sys.stdout, sys.stderr, redact=redact)
        _start_up_over()  # an answer may stream for minutes: collect what it leaves
        outcome = await service.handle(
            console_message(ASK_BOT, prompt, chat_id="ask"),
            sink,
            new_conversation=not cont,
            commands=False,  # a prompt such as "/etc/hosts: what is it?" is a question
        )
    return 0 if outcome is Outcome.ANSWERED else 1


async def _chat(config: ParleyConfig, backend: str | None, new: bool, redact: Redact) -> int:
    from adapters.console import ConsoleAdapter
    from bots.app import App, install_stop_signals

    bot = _console_bot(config)
    async with App(config) as app:
        service = app.service(bot, backend)
        stop = asyncio.Event()
        remove = install_stop_signals(stop)
        try:
            # --new: like `ask` without -c, the old conversation stays the head until
            # the first answer of the new one succeeds.
            adapter = ConsoleAdapter(service, new_conversation=new, redact=redact)
            await adapter.run(stop)
        finally:
            remove()
    return 1 if adapter.output_failed else 0


async def _run(config: ParleyConfig) -> int:
    from bots.app import App, install_stop_signals
    from bots.runner import run_bots

    async with App(config) as app:
        stop = asyncio.Event()
        remove = install_stop_signals(stop)
        try:
            await run_bots(app, stop)
        finally:
            remove()
    return 0


async def _db(config: ParleyConfig, action: str) -> int:
    # Imported here, as in the other commands: `parley config check` stays fast.
    from bots.database import database_error
    from core.http import redact_url
    from core.store.engine import parse_database_url, sqlite_file
    from migrations.runner import current, upgrade

    url = database_url(config)
    try:
        sqlite_path = sqlite_file(parse_database_url(url))
        if action == "current" and sqlite_path is not None and not sqlite_path.exists():
            print("none (run `parley db upgrade`)")  # and don't create the file by looking
            return 0
        if action == "upgrade":
            await upgrade(url)
        revision = await current(url)
    except Exception as exc:
        raise database_error(config, exc) from exc
    if action == "upgrade":
        print(f"database {redact_url(url)} is at revision {revision}")
    else:
        print(revision or "none (run `parley db upgrade`)")
    return 0


def _read_prompt(prompt: str | None) -> str:
    if prompt is not None:
        return prompt
    if sys.stdin.isatty():
        raise ConfigError("no prompt given: pass it as an argument or on stdin")
    return sys.stdin.read()


def _tolerant_stdio() -> None:
    """Undecodable input or unprintable output becomes U+FFFD, never a crash mid-answer."""
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")


class _Secrets:
    """The config's secrets, known once it is loaded: error lines are masked too."""

    def __init__(self) -> None:
        self.redact: Redact = str


def main(argv: Sequence[str] | None = None) -> int:
    return _main(_parser().parse_args(argv))


# Set by ``entry`` while it keeps the cyclic garbage collector off for start-up.
_gc_paused = False


def _start_up_over() -> None:
    """Start-up's objects are made: freeze them (they live until exit; the few
    thousand of start-up's garbage among them stay too) and let the collector run
    again, on what the rest of the process makes."""
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()


def _main(args: argparse.Namespace) -> int:
    _tolerant_stdio()
    secrets = _Secrets()
    try:
        code = _dispatch(args, secrets)
        sys.stdout.flush()  # a full disk behind `> file` fails here, not at exit
        return code
    except (ConfigError, StartupError) as exc:
        print(f"parley: error: {secrets.redact(str(exc))}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`parley config check | head`): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        _silence_stdout()
        return 1
    except Exception as exc:
        # Anything else (a full disk, a bug): one line at the terminal; the traceback
        # only when asked for, since it means nothing to most people reading it.
        if args.verbose >= 2:
            print(secrets.redact(traceback.format_exc()), end="", file=sys.stderr)
        line = " ".join(str(exc).split()) or "no details"
        hint = "" if args.verbose >= 2 else " (-vv shows the traceback)"
        print(
            f"parley: error: {secrets.redact(f'{type(exc).__name__}: {line}')}{hint}",
            file=sys.stderr,
        )
        if isinstance(exc, OSError):
            _silence_stdout()  # stdout itself may be what failed
        return 1


def _silence_stdout() -> None:
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _dispatch(args: argparse.Namespace, secrets: _Secrets) -> int:
    config, path = load_config(args.config)
    secret_list = secret_values(config)
    redact = RedactSecrets(secret_list).redact
    secrets.redact = redact
    run = args.command == "run"
    setup_logging(
        args.verbose,
        secret_list,
        timestamps=run,
        tracebacks=run or args.verbose >= 2,  # `parley run` writes a log; the rest a terminal
    )
    if args.command == "config":
        print(f"# config OK: {path or 'built-in defaults'}")
        print(yaml.safe_dump(redacted_dump(config), sort_keys=False, allow_unicode=True), end="")
        return 0
    if args.command == "ask":
        prompt = _read_prompt(args.prompt)
        if not prompt.strip():
            raise ConfigError("the prompt is empty")
        return asyncio.run(_ask(config, prompt, args.cont, args.backend, redact))
    if args.command == "chat":
        return asyncio.run(_chat(config, args.backend, args.new, redact))
    if args.command == "run":
        return asyncio.run(_run(config))
    if args.command == "db":
        return asyncio.run(_db(config, args.db_command))
    raise AssertionError(f"unhandled command {args.command}")


def entry(*, collector_off: bool = False) -> int:
    """The ``parley`` command (``bots.launch.entry``, ``python -m bots.cli``): ``main``,
    plus what only a whole process may do to the garbage collector.

    A one-shot ``parley ask`` spent ~0.15 s in the cyclic collector: ~250 collections
    while the imports built ~75,000 objects that all live until exit (with ~2,400
    objects of garbage among them), then the interpreter's final collections walking
    them all again. So during an ask's start-up the collector is off
    (``_start_up_over`` freezes what start-up made and turns it back on before the
    answer streams), and at exit everything is frozen: ``main`` has closed the store,
    the HTTP sessions and the database thread, and Python promises no finaliser for
    what is still alive at exit. ``collector_off``: the launcher turned it off for
    this module's imports; any other command turns it back on here. Not in ``main``:
    a program that calls it in-process keeps its collector as it was.
    """
    global _gc_paused
    args = _parser().parse_args()
    if args.command == "ask" and (collector_off or gc.isenabled()):
        gc.disable()
        _gc_paused = True
    elif collector_off:
        gc.enable()
    try:
        return _main(args)
    finally:
        _start_up_over()
        gc.freeze()


if __name__ == "__main__":
    sys.exit(entry())
