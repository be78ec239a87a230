from __future__ import annotations

import pytest

from core.incoming import BotPolicy, IncomingMessage


def message(**overrides: object) -> IncomingMessage:
    fields: dict[str, object] = {
        "platform": "discord",
        "bot": "b",
        "chat_id": "c1",
        "user_id": "u1",
        "text": "hi",
    }
    fields.update(overrides)
    return IncomingMessage(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scope", "overrides", "key"),
    [
        ("chat", {}, "discord:chat:c1"),
        ("user", {}, "discord:user:u1"),
        ("chat_user", {}, "discord:chat:c1:user:u1"),
        ("thread", {"thread_id": "t9"}, "discord:chat:c1:thread:t9"),
        ("thread", {}, "discord:chat:c1"),
    ],
)
def test_scope_keys(scope: str, overrides: dict[str, object], key: str) -> None:
    policy = BotPolicy(name="b", backend="x", scope=scope)  # type: ignore[arg-type]
    assert policy.scope_key(message(**overrides)) == key


def test_user_scope_follows_the_user_across_chats() -> None:
    policy = BotPolicy(name="b", backend="x", scope="user")
    assert policy.scope_key(message(chat_id="a")) == policy.scope_key(message(chat_id="b"))


def test_empty_lists_allow_everyone() -> None:
    assert BotPolicy(name="b", backend="x").is_allowed(message())


def test_allowed_users() -> None:
    policy = BotPolicy(name="b", backend="x", allowed_users=frozenset({"u2"}))
    assert not policy.is_allowed(message())
    assert policy.is_allowed(message(user_id="u2"))


def test_allowed_chats_apply_to_groups_not_direct_messages() -> None:
    policy = BotPolicy(name="b", backend="x", allowed_chats=frozenset({"c2"}))
    assert not policy.is_allowed(message())
    assert policy.is_allowed(message(chat_id="c2"))
    assert policy.is_allowed(message(chat_id="dm", is_direct=True))


def test_guilds_and_roles() -> None:
    policy = BotPolicy(
        name="b", backend="x", allowed_guilds=frozenset({"g1"}), allowed_roles=frozenset({"r1"})
    )
    assert not policy.is_allowed(message(guild_id="g2", user_roles=("r1",)))
    assert not policy.is_allowed(message(guild_id="g1", user_roles=("r2",)))
    assert policy.is_allowed(message(guild_id="g1", user_roles=("r2", "r1")))


def test_admins_bypass_the_lists() -> None:
    policy = BotPolicy(
        name="b", backend="x", allowed_users=frozenset({"u2"}), admins=frozenset({"boss"})
    )
    assert policy.is_allowed(message(user_id="boss"))


def test_allowed_chats_may_name_a_thread_or_a_category() -> None:
    policy = BotPolicy(name="b", backend="x", allowed_chats=frozenset({"thread-9", "cat-3"}))
    assert policy.is_allowed(message(chat_id="c1", also_chats=("thread-9",)))
    assert policy.is_allowed(message(chat_id="c2", also_chats=("cat-3",)))
    assert not policy.is_allowed(message(chat_id="c1", also_chats=("cat-4",)))


def test_a_bot_limited_to_servers_or_roles_is_not_open_by_dm() -> None:
    roles = BotPolicy(name="b", backend="x", allowed_roles=frozenset({"paid"}))
    assert not roles.is_allowed(message(is_direct=True))
    guilds = BotPolicy(name="b", backend="x", allowed_guilds=frozenset({"g1"}))
    assert not guilds.is_allowed(message(is_direct=True))
    listed = BotPolicy(
        name="b", backend="x", allowed_roles=frozenset({"paid"}), allowed_users=frozenset({"u1"})
    )
    assert listed.is_allowed(message(is_direct=True)), "allowed_users decides who may DM"
    admin = BotPolicy(
        name="b", backend="x", allowed_roles=frozenset({"paid"}), admins=frozenset({"u1"})
    )
    assert admin.is_allowed(message(is_direct=True))
