"""Slash commands: ``/ask prompt:`` (for servers where the bot cannot read messages),
``/reset`` and ``/help``, through discord.py's ``app_commands``.

Discord wants a callback within 3 seconds: each command defers at once (the user sees
"thinking…") and the answer then replaces that response, streamed through the shared
delivery layer like any other answer. A refused user gets an ephemeral line and causes
no backend call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import discord
from discord import app_commands

from adapters.discord.updates import PLATFORM, chat_aliases
from core.incoming import BotPolicy, IncomingMessage

log = logging.getLogger(__name__)

DENIED = "Sorry, you are not allowed to use this bot here."
Handler = Callable[[discord.Interaction[Any], IncomingMessage, bool], Coroutine[Any, Any, None]]


def incoming(interaction: discord.Interaction[Any], bot: str, text: str) -> IncomingMessage:
    """The command as a message: addressed to the bot, in its channel's scope."""
    channel = interaction.channel
    thread = isinstance(channel, discord.Thread)
    user = interaction.user
    roles = user.roles if isinstance(user, discord.Member) else []
    return IncomingMessage(
        platform=PLATFORM,
        bot=bot,
        chat_id=str(interaction.channel_id),
        user_id=str(user.id),
        text=text,
        thread_id=str(interaction.channel_id) if thread else None,
        is_direct=interaction.guild_id is None,
        addresses_bot=True,
        guild_id=str(interaction.guild_id) if interaction.guild_id is not None else None,
        user_roles=tuple(str(role.id) for role in roles),
        also_chats=chat_aliases(interaction.channel),
    )


def command_tree(
    client: discord.Client, *, bot: str, policy: BotPolicy, answer: Handler
) -> app_commands.CommandTree[discord.Client]:
    """The three commands; ``answer(interaction, message, is_command)`` gets each
    accepted one after its response was deferred."""
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)

    async def run(interaction: discord.Interaction[Any], text: str, is_command: bool) -> None:
        msg = incoming(interaction, bot, text)
        if not policy.is_allowed(msg):
            await interaction.response.send_message(DENIED, ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        await answer(interaction, msg, is_command)

    @tree.command(name="ask", description="Ask the bot something")
    @app_commands.describe(prompt="What to ask")
    async def ask(interaction: discord.Interaction[Any], prompt: str) -> None:
        await run(interaction, prompt, False)

    @tree.command(name="reset", description="Start a fresh conversation")
    async def reset(interaction: discord.Interaction[Any]) -> None:
        await run(interaction, "/reset", True)

    @tree.command(name="help", description="How to talk to the bot")
    async def help_(interaction: discord.Interaction[Any]) -> None:
        await run(interaction, "/help", True)

    return tree


async def sync(tree: app_commands.CommandTree[discord.Client], guilds: list[int], bot: str) -> None:
    """Registers the commands with Discord: to ``guilds`` (instant) or globally (may
    take up to an hour to show). A failure is logged: messages still work."""
    try:
        if not guilds:
            await tree.sync()
            return
        for guild_id in guilds:
            guild = discord.Object(guild_id)
            tree.copy_global_to(guild=guild)
            await tree.sync(guild=guild)
    except discord.HTTPException as exc:
        log.warning("bot %s: could not register the slash commands (%s)", bot, exc.text or exc)
    except Exception as exc:  # a network error, no application id: the bot works without
        log.warning("bot %s: could not register the slash commands (%s)", bot, exc)
