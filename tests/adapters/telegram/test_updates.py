"""Telegram updates -> IncomingMessage, on real PTB objects decoded from Bot API JSON."""

from __future__ import annotations

from typing import Any

from telegram import Bot, Update

from adapters.telegram.updates import inbound

BOT_ID = 4242
BOT = {"id": BOT_ID, "is_bot": True, "first_name": "Parley", "username": "parley_bot"}
ALICE = {"id": 7, "is_bot": False, "first_name": "Alice"}
GROUP = {"id": -100, "type": "supergroup", "title": "G"}
DM = {"id": 7, "type": "private", "first_name": "Alice"}


def update(**message: Any) -> Update:
    body = {"message_id": 10, "date": 0, "chat": GROUP, "from": ALICE} | message
    return Update.de_json({"update_id": 1, "message": body}, Bot("1:x"))


def entity(kind: str, text: str, piece: str) -> dict[str, Any]:
    before = text[: text.index(piece)]
    return {
        "type": kind,
        "offset": len(before.encode("utf-16-le")) // 2,
        "length": len(piece.encode("utf-16-le")) // 2,
    }


def read(u: Update) -> Any:
    return inbound(u, bot="b", bot_id=BOT_ID, username="parley_bot")


def test_a_mention_addresses_the_bot_and_is_stripped_even_after_astral_characters() -> None:
    text = "😀😀 @parley_bot what is 2+2?"
    found = read(update(text=text, entities=[entity("mention", text, "@parley_bot")]))
    assert found.message.addresses_bot
    assert found.message.text == "😀😀 what is 2+2?"


def test_a_mention_of_another_user_neither_addresses_nor_is_stripped() -> None:
    text = "@someone_else hi"
    found = read(update(text=text, entities=[entity("mention", text, "@someone_else")]))
    assert not found.message.addresses_bot
    assert found.message.text == text


def test_command_addressed_to_us_and_to_another_bot() -> None:
    ours = read(
        update(
            text="/reset@parley_bot", entities=[{"type": "bot_command", "offset": 0, "length": 17}]
        )
    )
    assert ours.message.addresses_bot
    other = read(
        update(
            text="/reset@other_bot", entities=[{"type": "bot_command", "offset": 0, "length": 16}]
        )
    )
    assert not other.message.addresses_bot


def test_reply_to_the_bot_and_to_a_user() -> None:
    to_bot = read(
        update(
            text="more",
            reply_to_message={"message_id": 5, "date": 0, "chat": GROUP, "from": BOT, "text": "x"},
        )
    )
    assert (to_bot.message.reply_to_message_id, to_bot.message.reply_to_bot) == ("5", True)
    to_user = read(
        update(
            text="more",
            reply_to_message={
                "message_id": 6,
                "date": 0,
                "chat": GROUP,
                "from": ALICE,
                "text": "x",
            },
        )
    )
    assert (to_user.message.reply_to_message_id, to_user.message.reply_to_bot) == ("6", False)


def test_forum_topic_is_the_thread_and_its_implicit_reply_is_not_a_reply() -> None:
    forum = GROUP | {"is_forum": True}
    starter = {
        "message_id": 3,
        "date": 0,
        "chat": forum,
        "from": ALICE,
        "forum_topic_created": {"name": "T", "icon_color": 1},
        "message_thread_id": 3,
        "is_topic_message": True,
    }
    found = read(
        update(
            chat=forum,
            text="hi",
            message_thread_id=3,
            is_topic_message=True,
            reply_to_message=starter,
        )
    )
    assert found.message.thread_id == "3"
    assert found.message.reply_to_message_id is None
    assert found.thread_id == 3


def test_thread_ids_outside_forum_topics_are_not_threads() -> None:
    found = read(update(text="hi", message_thread_id=9))
    assert found.message.thread_id is None and found.thread_id is None


def test_private_chat_is_direct() -> None:
    found = read(update(chat=DM, text="hello"))
    assert found.message.is_direct and found.message.chat_id == "7" and found.message.user_id == "7"


def test_captions_count_as_text() -> None:
    photo = [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]
    found = read(update(chat=DM, photo=photo, caption="what is this?"))
    assert found.has_text and found.message.text == "what is this?"


def test_no_text_is_answered_in_a_dm_and_ignored_in_a_group() -> None:
    sticker = {
        "file_id": "f",
        "file_unique_id": "u",
        "width": 1,
        "height": 1,
        "is_animated": False,
        "is_video": False,
        "type": "regular",
    }
    dm = read(update(chat=DM, sticker=sticker))
    assert dm is not None and not dm.has_text
    assert read(update(sticker=sticker)) is None


def test_other_bots_edits_and_channel_posts_are_ignored() -> None:
    assert read(update(text="hi", **{"from": BOT | {"id": 99}})) is None
    edited = Update.de_json(
        {
            "update_id": 2,
            "edited_message": {
                "message_id": 1,
                "date": 0,
                "edit_date": 1,
                "chat": GROUP,
                "from": ALICE,
                "text": "x",
            },
        },
        Bot("1:x"),
    )
    assert read(edited) is None
    post = Update.de_json(
        {
            "update_id": 3,
            "channel_post": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": -5, "type": "channel", "title": "C"},
                "text": "x",
            },
        },
        Bot("1:x"),
    )
    assert read(post) is None
