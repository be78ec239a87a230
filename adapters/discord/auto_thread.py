"""``auto_thread``: a mention in a channel opens a public thread named from it, and the
answer and the conversation go on there.

The thread is opened only once the chat service has decided to answer (its
``answering`` hook, see core/incoming.py), never on arrival: a message refused for its
length, the user's rate limit or access, or one with nothing to answer (a bare
mention), gets its reply in the channel and leaves no empty thread behind.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import discord

from adapters.delivery.sink import DeliverySink
from adapters.discord.target import Channel
from core.incoming import IncomingMessage

log = logging.getLogger(__name__)

THREAD_NAME_MAX = 100  # Discord's limit for a thread name
SinkFor = Callable[[Channel, int | None], DeliverySink]
"""A sink answering in a channel, as a reply to a message id (None: no reply)."""


def thread_name(text: str) -> str:
    lines = text.strip().splitlines()
    return (lines[0] if lines else "")[:THREAD_NAME_MAX].strip() or "Conversation"


class ThreadOnAnswer:
    """The reply sink for a mention in a text channel with ``auto_thread``: replies to
    the question in the channel until the chat service decides to answer it, then
    opens a thread from the question and answers there. Without the permission to
    open threads, the answer stays in the channel."""

    def __init__(
        self,
        question: discord.Message,
        channel: discord.TextChannel,
        sink_for: SinkFor,
        *,
        bot: str,
        name: str,
    ) -> None:
        self._question = question
        self._channel = channel
        self._sink_for = sink_for
        self._bot = bot
        self._name = name
        self.sink = sink_for(channel, question.id)

    async def answering(self, msg: IncomingMessage) -> IncomingMessage:
        try:
            thread = await self._question.create_thread(name=self._name)
        except discord.HTTPException as exc:
            log.warning(
                "bot %s: could not open a thread in channel %s (%s); answering there; "
                "the bot needs Create Public Threads and Send Messages in Threads",
                self._bot,
                self._channel.id,
                exc.text or exc.status,
            )
            return msg
        unused, self.sink = self.sink, self._sink_for(thread, None)  # the thread shows it
        await unused.aclose()
        # The thread is a chat of its own: a new conversation that goes on there.
        return dataclasses.replace(
            msg,
            chat_id=str(thread.id),
            thread_id=str(thread.id),
            also_chats=(msg.chat_id, *msg.also_chats),
        )

    # --- the rest of ReplySink, to whichever sink answers now -------------------------

    async def update(self, text: str) -> None:
        await self.sink.update(text)

    async def complete(self, text: str) -> list[str]:
        return await self.sink.complete(text)

    async def error(self, text: str, *, detail: str | None = None) -> None:
        await self.sink.error(text, detail=detail)

    def start_typing(self) -> None:
        self.sink.start_typing()

    async def aclose(self) -> None:
        await self.sink.aclose()
