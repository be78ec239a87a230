"""The fake Bot API driven by the real python-telegram-bot over loopback."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import math
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from telegram import Bot, Message, MessageEntity, ReplyParameters, Update
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fakes.telegram_api import (
    CONFLICT_TERMINATED,
    CONFLICT_WEBHOOK,
    DRAFT_NOT_PRIVATE,
    DRAFTS_UNAVAILABLE,
    NOT_MODIFIED,
    FakeTelegram,
    FloodLimits,
)

TOKEN = "123:abc"
ALICE = 42
GROUP = -1001


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """RetryAfter.retry_after as a timedelta, without PTB's deprecation warning."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, username="parley_bot") as fake:
        fake.private_chat(ALICE, "Alice", username="alice")
        fake.user(7, "Bob", username="bob")
        fake.group(GROUP, "Friends", supergroup=True)
        yield fake


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=tg.api_base_url, base_file_url=tg.file_base_url) as b:
        yield b


def build_app(tg: FakeTelegram, token: str = TOKEN) -> Application[Any, Any, Any, Any, Any, Any]:
    return (
        ApplicationBuilder()
        .token(token)
        .base_url(tg.api_base_url)
        .base_file_url(tg.file_base_url)
        .build()
    )


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(f"echo: {update.effective_message.text}")


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text("started")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- polling --------------------------------------------------------------------------------


async def test_polling_app_receives_text_and_command(tg: FakeTelegram) -> None:
    app = build_app(tg)
    app.add_handler(CommandHandler("start", start))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=5)
        sent = tg.send_text(ALICE, ALICE, "hello")
        command = tg.send_text(GROUP, 7, "/start@parley_bot")
        assert command["entities"] == [{"type": "bot_command", "offset": 0, "length": 17}]
        [answer] = await tg.wait_bot_messages(ALICE, 1)
        [started] = await tg.wait_bot_messages(GROUP, 1)
        await app.updater.stop()
        await app.stop()
    assert answer.text == "echo: hello"
    assert sent["text"] == "hello" and answer.reply_to is None  # PTB quotes in groups only
    assert started.text == "started" and started.reply_to == command["message_id"]
    methods = [c.method for c in tg.calls]
    assert methods[:3] == ["getMe", "deleteWebhook", "getUpdates"]
    # PTB confirms what it got: the last getUpdates' offset is past both updates.
    assert tg.calls_to("getUpdates")[-1].params["offset"] == tg.updates[-1]["update_id"] + 1
    assert tg.pending_updates == []


async def test_shutdown_releases_open_long_polls_at_once() -> None:
    fake = await FakeTelegram(token=TOKEN).start()
    app = build_app(fake)
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=30)
    await fake.wait_for(lambda: any(c.finished is None for c in fake.calls_to("getUpdates")))
    began = time.monotonic()
    await fake.close()
    await app.updater.stop()
    await app.stop()
    await app.shutdown()
    assert time.monotonic() - began < 1.5


async def test_long_poll_waits_for_an_update_and_returns_it_at_once(tg: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{tg.api_base_url}{TOKEN}/getUpdates"
        poll = asyncio.create_task(http.post(url, data={"timeout": "10"}))
        await tg.wait_for(lambda: tg.calls_to("getUpdates"))
        began = time.monotonic()
        tg.send_text(ALICE, ALICE, "wake up")
        response = await poll
        body = await response.json()
    assert time.monotonic() - began < 1
    assert [u["message"]["text"] for u in body["result"]] == ["wake up"]


async def test_a_second_poller_terminates_the_first(tg: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{tg.api_base_url}{TOKEN}/getUpdates"
        first = asyncio.create_task(http.post(url, data={"timeout": "10"}))
        await tg.wait_for(lambda: tg.calls_to("getUpdates"))
        second = await http.post(url, data={"timeout": "0"})
        old = await first
        assert old.status == 409
        assert (await old.json())["description"] == CONFLICT_TERMINATED
        assert second.status == 200


async def test_offset_confirms_and_allowed_updates_filter(tg: FakeTelegram, bot: Bot) -> None:
    tg.send_text(ALICE, ALICE, "one")
    tg.send_text(ALICE, ALICE, "two")
    first, second = await bot.get_updates()
    assert [first.message.text, second.message.text] == ["one", "two"]  # type: ignore[union-attr]
    assert [u.update_id for u in await bot.get_updates(offset=second.update_id)] == [
        second.update_id
    ]
    assert await bot.get_updates(offset=second.update_id + 1) == ()
    tg.edit_text(ALICE, 1, "one, edited")
    tg.send_text(ALICE, ALICE, "three")
    [only] = await bot.get_updates(allowed_updates=["edited_message"])
    assert only.edited_message is not None and only.edited_message.text == "one, edited"


async def test_forms_json_bodies_and_query_strings_are_read_alike(tg: FakeTelegram) -> None:
    base = f"{tg.api_base_url}{TOKEN}"
    async with aiohttp.ClientSession() as http:
        as_json = await http.post(f"{base}/sendMessage", json={"chat_id": ALICE, "text": "42"})
        as_query = await http.get(f"{base}/SENDMESSAGE", params={"chat_id": ALICE, "text": "x"})
        as_form = await http.post(
            f"{base}/sendMessage",
            data={"chat_id": str(ALICE), "text": "true", "reply_parameters": '{"message_id": 1}'},
        )
        for response in (as_json, as_query, as_form):
            assert response.status == 200, await response.text()
    texts = [m.text for m in tg.bot_messages(ALICE)]
    assert texts == ["42", "x", "true"]  # strings stay strings
    assert tg.bot_messages(ALICE)[2].reply_to == 1
    assert [c.method for c in tg.calls] == ["sendMessage"] * 3


async def test_wrong_token_and_unknown_method(tg: FakeTelegram) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("123:wrong", base_url=tg.api_base_url):
            pass
    assert tg.calls[-1].status == 401
    async with aiohttp.ClientSession() as http:
        response = await http.post(f"{tg.api_base_url}{TOKEN}/sendCarrierPigeon")
        assert response.status == 404
        assert await response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


# -- sending and editing ----------------------------------------------------------------


async def test_send_and_edit_round_trip(tg: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(ALICE, "Thinking…", disable_notification=True)
    assert isinstance(sent, Message)
    assert sent.from_user is not None and sent.from_user.username == "parley_bot"
    assert sent.chat.id == ALICE and sent.chat.type == "private"
    edited = await bot.edit_message_text("The answer is 42.", chat_id=ALICE, message_id=sent.id)
    assert isinstance(edited, Message)
    assert edited.text == "The answer is 42." and edited.edit_date is not None
    [stored] = tg.bot_messages(ALICE)
    assert stored.text == "The answer is 42."
    assert [r.text for r in stored.history] == ["Thinking…"]
    assert stored.disable_notification
    assert await bot.delete_message(ALICE, sent.id)
    assert tg.bot_messages(ALICE) == []
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("again", chat_id=ALICE, message_id=sent.id)


async def test_reply_parameters_and_missing_targets(tg: FakeTelegram, bot: Bot) -> None:
    question = tg.send_text(GROUP, 7, "what is 6*7?")
    answer = await bot.send_message(
        GROUP, "42", reply_parameters=ReplyParameters(message_id=question["message_id"])
    )
    assert answer.reply_to_message is not None
    assert answer.reply_to_message.text == "what is 6*7?"
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(GROUP, "x", reply_parameters=ReplyParameters(message_id=999))
    tolerated = await bot.send_message(
        GROUP,
        "x",
        reply_parameters=ReplyParameters(message_id=999, allow_sending_without_reply=True),
    )
    assert tolerated.reply_to_message is None
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(555, "who?")
    with pytest.raises(BadRequest, match="Message can't be edited"):
        await bot.edit_message_text("mine now", chat_id=GROUP, message_id=question["message_id"])


async def test_message_length_counts_utf16_after_entity_parsing(bot: Bot) -> None:
    assert (await bot.send_message(ALICE, "a" * 4096)).text == "a" * 4096
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(ALICE, "a" * 4097)
    assert (await bot.send_message(ALICE, "😀" * 2048)).text == "😀" * 2048  # 4096 units
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(ALICE, "😀" * 2048 + "a")
    marked = await bot.send_message(ALICE, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    assert marked.entities == (MessageEntity("bold", 0, 4096),)
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(ALICE, "")
    with pytest.raises(BadRequest, match="Message must be non-empty"):
        await bot.send_message(ALICE, " \n ")


async def test_parse_modes_make_entities_and_refuse_what_telegram_refuses(
    tg: FakeTelegram, bot: Bot
) -> None:
    html = await bot.send_message(ALICE, "<b>bold</b> &amp; <i>it</i>", parse_mode="HTML")
    assert html.text == "bold & it"
    assert html.entities == (MessageEntity("bold", 0, 4), MessageEntity("italic", 7, 2))
    v2 = await bot.send_message(ALICE, r"*hi* \- _there_\!", parse_mode="MarkdownV2")
    assert v2.text == "hi - there!"
    assert [e.type for e in v2.entities] == ["bold", "italic"]
    refused = {
        ("HTML", "line<br>break"): 'Unsupported start tag "br" at byte offset 4',
        ("HTML", "<b>open"): "Can't find end tag corresponding to start tag b",
        ("MarkdownV2", "Hello."): "Character '.' is reserved",
        ("MarkdownV2", "*bold"): "Can't find end of Bold entity at byte offset 0",
        ("Markdown", "*bold"): "Can't find end of the entity starting at byte offset 0",
    }
    for (mode, text), reason in refused.items():
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await bot.send_message(ALICE, text, parse_mode=mode)
        description = tg.calls[-1].description
        assert description is not None and description.startswith(
            "Bad Request: can't parse entities: "
        )
        assert reason in description


async def test_explicit_entities_are_checked(tg: FakeTelegram, bot: Bot) -> None:
    ok = await bot.send_message(ALICE, "ab😀", entities=[MessageEntity("bold", 2, 2)])
    assert ok.entities == (MessageEntity("bold", 2, 2),)
    with pytest.raises(BadRequest, match="ends after the end of the text"):
        await bot.send_message(ALICE, "ab😀", entities=[MessageEntity("bold", 2, 3)])
    assert tg.calls[-1].description == (
        "Bad Request: entity beginning at UTF-16 offset 2 ends after the end of the text at "
        "UTF-16 offset 5"
    )
    with pytest.raises(BadRequest, match=r"(?i)in a middle of a UTF-16 symbol"):
        await bot.send_message(ALICE, "ab😀", entities=[MessageEntity("bold", 3, 1)])
    with pytest.raises(BadRequest, match=r"(?i)Can't parse MessageEntity"):
        await bot.send_message(ALICE, "ab", entities=[MessageEntity("sparkles", 0, 1)])
    assert tg.calls[-1].description == (
        "Bad Request: can't parse MessageEntity: Unsupported type specified"
    )


async def test_editing_to_the_same_content_is_not_modified(tg: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(ALICE, "*same*", parse_mode="Markdown")
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("*same*", ALICE, sent.id, parse_mode="Markdown")
    assert tg.calls[-1].description == NOT_MODIFIED
    with pytest.raises(BadRequest, match="Message is not modified"):  # trimmed alike
        await bot.edit_message_text(
            "same  ", ALICE, sent.id, entities=[MessageEntity("bold", 0, 4)]
        )
    unbolded = await bot.edit_message_text("same", ALICE, sent.id)  # no bold: a change
    assert isinstance(unbolded, Message) and unbolded.entities == ()


# -- faults -------------------------------------------------------------------------------


async def test_injected_429_raises_retry_after(tg: FakeTelegram, bot: Bot) -> None:
    tg.fail_next("sendMessage", 429, retry_after=3)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(ALICE, "hi")
    assert caught.value.retry_after == dtm.timedelta(seconds=3)
    assert tg.calls[-1].description == "Too Many Requests: retry after 3"
    assert tg.count_429 == 1
    assert tg.bot_messages(ALICE) == []  # not performed
    assert (await bot.send_message(ALICE, "hi")).text == "hi"  # only once


async def test_dropped_connection_is_a_network_error(tg: FakeTelegram, bot: Bot) -> None:
    tg.drop_next("sendMessage")
    with pytest.raises(NetworkError):
        await bot.send_message(ALICE, "hi")
    assert tg.bot_messages(ALICE) == []
    assert (await bot.send_message(ALICE, "hi")).text == "hi"


async def test_block_gives_forbidden(tg: FakeTelegram, bot: Bot) -> None:
    tg.group(-5, "Old group")
    tg.block(ALICE)
    tg.block(-5)
    tg.block(GROUP)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(ALICE, "hi")
    with pytest.raises(Forbidden, match="bot was kicked from the group chat"):
        await bot.send_chat_action(-5, "typing")
    with pytest.raises(Forbidden, match="bot was kicked from the supergroup chat"):
        await bot.send_message(GROUP, "hi")
    tg.unblock(ALICE)
    assert (await bot.send_message(ALICE, "back")).text == "back"


# -- flood control ------------------------------------------------------------------------


async def test_flood_mode_refuses_a_second_message_within_a_second(
    tg: FakeTelegram, bot: Bot
) -> None:
    tg.flood = FloodLimits()
    await bot.send_message(ALICE, "one")
    with pytest.raises(RetryAfter):
        await bot.send_message(ALICE, "two")
    assert tg.calls[-1].retry_after == 1
    assert [m.text for m in tg.bot_messages(ALICE)] == ["one"]
    await bot.send_chat_action(ALICE, "typing")  # not a message op
    await bot.send_message(GROUP, "other chat")  # its own window
    assert tg.count_429 == 1


async def test_flood_mode_paced_client_gets_no_429(tg: FakeTelegram, bot: Bot) -> None:
    tg.flood = FloodLimits(chat=(1, 0.25), group=(3, 3.0), overall=(30, 1.0))
    sent = await bot.send_message(ALICE, "v1")
    for n in range(2, 5):
        await asyncio.sleep(0.25)
        await bot.edit_message_text(f"v{n}", ALICE, sent.id)
    assert tg.count_429 == 0
    for n in range(3):  # group: at most 3 per 3 s, on top of the chat's window
        await bot.send_message(GROUP, f"g{n}")
        await asyncio.sleep(0.25)
    with pytest.raises(RetryAfter):
        await bot.send_message(GROUP, "g3")
    first, refused = tg.calls_to("sendMessage")[-4], tg.calls[-1]
    # Until the first group op is (3 - 0.05) s old, rounded up.
    assert refused.retry_after == math.ceil(first.time + 2.95 - refused.time)
    assert len(tg.bot_messages(GROUP)) == 3


async def test_flood_overall_limit_and_penalty(tg: FakeTelegram, bot: Bot) -> None:
    for chat_id in range(1, 4):
        tg.private_chat(chat_id)
    tg.flood = FloodLimits(overall=(3, 0.5))
    tg.penalty = True
    for chat_id in range(1, 4):
        await bot.send_message(chat_id, "hi")
    with pytest.raises(RetryAfter):
        await bot.send_message(ALICE, "one too many")
    await asyncio.sleep(0.6)  # the window is free again, but the penalty lasts 1 s
    with pytest.raises(RetryAfter):
        await bot.send_message(ALICE, "still refused")
    assert tg.count_429 == 2
    await asyncio.sleep(0.5)
    assert (await bot.send_message(ALICE, "now")).text == "now"


# -- drafts -------------------------------------------------------------------------------


async def test_drafts_in_private_chats_only(tg: FakeTelegram, bot: Bot) -> None:
    assert await bot.send_message_draft(ALICE, draft_id=1, text="")  # "Thinking…"
    assert await bot.send_message_draft(ALICE, draft_id=1, text="<b>Hel</b>lo", parse_mode="HTML")
    assert [(d.text, d.entities) for d in tg.drafts[ALICE]] == [
        ("", []),
        ("Hello", [{"type": "bold", "offset": 0, "length": 3}]),
    ]
    with pytest.raises(BadRequest):
        await bot.send_message_draft(GROUP, draft_id=1, text="hi")
    assert tg.calls[-1].description == DRAFT_NOT_PRIVATE
    with pytest.raises(BadRequest):
        await bot.send_message_draft(ALICE, draft_id=0, text="hi")
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message_draft(ALICE, draft_id=2, text="a" * 4097)
    tg.reject_drafts = True
    with pytest.raises(BadRequest):
        await bot.send_message_draft(ALICE, draft_id=3, text="hi")
    assert tg.calls[-1].description == DRAFTS_UNAVAILABLE
    assert len(tg.drafts[ALICE]) == 2


# -- webhook ------------------------------------------------------------------------------


async def test_webhook_delivery_with_secret_and_wrong_secret(tg: FakeTelegram) -> None:
    tg.webhook_retry_delay = 0.1
    port = free_port()
    app = build_app(tg)
    app.add_handler(MessageHandler(filters.TEXT, echo))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_webhook(
            listen="127.0.0.1",
            port=port,
            url_path="hook",
            webhook_url=f"http://127.0.0.1:{port}/hook",
            secret_token="s3cret",
        )
        assert tg.webhook.url == f"http://127.0.0.1:{port}/hook"
        assert tg.webhook.secret_token == "s3cret"
        tg.send_text(ALICE, ALICE, "via webhook")
        [answer] = await tg.wait_bot_messages(ALICE, 1)
        assert answer.text == "echo: via webhook"
        delivered = tg.webhook_deliveries[-1]
        assert (delivered.status, delivered.secret_token) == (200, "s3cret")
        stray = {"update_id": 1, "message": tg.message_dict(tg.messages(ALICE)[0])}
        assert await tg.post_webhook(stray, secret_token="wrong") == 403
        assert await tg.post_webhook(stray, secret_token=None) == 403
        assert [d.status for d in tg.webhook_deliveries[-2:]] == [403, 403]
        async with Bot(TOKEN, base_url=tg.api_base_url) as other:
            with pytest.raises(Conflict, match="webhook is active"):
                await other.get_updates()
            assert tg.calls[-1].description == CONFLICT_WEBHOOK
            info = await other.get_webhook_info()
            assert info.url == tg.webhook.url and info.pending_update_count == 0
        await app.updater.stop()
        await app.stop()
    assert len(tg.bot_messages(ALICE)) == 1  # the wrong-secret update was not handled


async def test_webhook_retries_until_the_bot_answers(tg: FakeTelegram, bot: Bot) -> None:
    tg.webhook_retry_delay = 0.05
    seen: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append(json.loads(await request.read())["update_id"])
        return web.Response(status=500 if len(seen) == 1 else 200)

    server = web.Application()
    server.router.add_post("/hook", hook)
    runner = web.AppRunner(server)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await bot.set_webhook(f"http://127.0.0.1:{port}/hook")
        update = tg.send_text(ALICE, ALICE, "hi")
        await tg.wait_for(lambda: not tg.pending_updates)
        assert [d.status for d in tg.webhook_deliveries] == [500, 200]
        assert len(set(seen)) == 1
        info = await bot.get_webhook_info()
        assert (
            info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"
        )
        assert update["message_id"] == 1
        assert await bot.delete_webhook()
        assert tg.calls[-1].description == "Webhook was deleted"
    finally:
        await runner.cleanup()


# -- chats, topics, privacy ---------------------------------------------------------------


async def test_forum_topics(tg: FakeTelegram, bot: Bot) -> None:
    tg.group(-100200, "Forum", forum=True)
    thread = tg.create_topic(-100200, "Ideas")
    question = tg.send_text(-100200, 7, "an idea", thread_id=thread)
    assert question["message_thread_id"] == thread and question["is_topic_message"]
    # Telegram's quirk: a topic message without a reply "replies" to the topic start.
    assert question["reply_to_message"]["forum_topic_created"] == {
        "name": "Ideas",
        "icon_color": 7322096,
    }
    answer = await bot.send_message(
        -100200, "noted", reply_parameters=ReplyParameters(question["message_id"])
    )
    assert answer.message_thread_id == thread and answer.is_topic_message
    assert [m.text for m in tg.bot_messages(-100200, thread_id=thread)] == ["noted"]
    with pytest.raises(BadRequest, match="Message thread not found"):
        await bot.send_message(-100200, "lost", message_thread_id=999)


async def test_privacy_mode_filters_group_messages(tg: FakeTelegram, bot: Bot) -> None:
    tg.privacy_mode = True
    mine = await bot.send_message(GROUP, "I am here")
    tg.send_text(GROUP, 7, "just chatting")
    tg.send_text(GROUP, 7, "hey @parley_bot")  # mentions are not delivered
    tg.send_text(GROUP, 7, "/help@parley_bot")
    tg.send_text(GROUP, 7, "/help")  # we were the last bot to write here
    tg.send_text(GROUP, 7, "reply", reply_to=mine.message_id)
    tg.send_text(ALICE, ALICE, "private chats get everything")
    texts = [u["message"]["text"] for u in tg.pending_updates]
    assert texts == ["/help@parley_bot", "/help", "reply", "private chats get everything"]
    assert not (await bot.get_me()).can_read_all_group_messages


async def test_other_bots_media_and_channel_posts(tg: FakeTelegram, bot: Bot) -> None:
    tg.user(99, "Other", username="other_bot", is_bot=True)
    tg.channel(-1009, "News")
    tg.send_text(GROUP, 99, "from another bot")  # never delivered to bots
    tg.send_sticker(ALICE, ALICE)
    tg.send_photo(ALICE, ALICE, caption="look /here")
    tg.channel_post(-1009, "breaking")
    updates = await bot.get_updates()
    sticker, photo, post = updates
    assert sticker.message is not None and sticker.message.sticker is not None
    assert photo.message is not None and photo.message.caption == "look /here"
    assert photo.message.caption_entities[0].type == "bot_command"
    assert post.channel_post is not None and post.channel_post.text == "breaking"
    assert len(tg.messages(GROUP)) == 1  # stored all the same


async def test_commands_chat_and_member(tg: FakeTelegram, bot: Bot) -> None:
    await bot.set_my_commands([("start", "Start"), ("reset", "Forget this conversation")])
    assert [c.command for c in await bot.get_my_commands()] == ["start", "reset"]
    assert tg.commands_for() == [
        {"command": "start", "description": "Start"},
        {"command": "reset", "description": "Forget this conversation"},
    ]
    with pytest.raises(BadRequest):
        await bot.set_my_commands([("Bad Command", "x")])
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()
    chat = await bot.get_chat(GROUP)
    assert (chat.type, chat.title) == ("supergroup", "Friends")
    tg.send_text(GROUP, 7, "hi")
    member = await bot.get_chat_member(GROUP, 7)
    assert member.status == "member" and member.user.first_name == "Bob"
    assert (await bot.get_chat_member(GROUP, tg.bot_id)).status == "member"
