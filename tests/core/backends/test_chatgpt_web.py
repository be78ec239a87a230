"""ChatGPTAPI against the fake web backend: auth, requests, moderation, conversations,
secrets. Stream handling is in test_chatgpt_web_stream.py."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid

import pytest

from core import (
    ChatGPTAPI,
    ChatGPTAuthError,
    ChatGPTConnectionError,
    ChatGPTConversation,
    ChatGPTError,
    ChatGPTStreamError,
    ChatResponse,
    ModerationResult,
)
from tests.core.backends.conftest import MakeAPI
from tests.fakes.chatgpt_web import (
    CLEARANCE_TOKEN,
    DEFAULT_USER,
    SESSION_TOKEN,
    Answer,
    FakeChatGPTWeb,
    SessionReply,
)

# -- construction and auth -------------------------------------------------------


def test_missing_tokens_are_refused_at_construction() -> None:
    with pytest.raises(ChatGPTError, match="session token"):
        ChatGPTAPI(session_token="", clearance_token=CLEARANCE_TOKEN)
    with pytest.raises(ChatGPTError, match="clearance token"):
        ChatGPTAPI(session_token=SESSION_TOKEN, clearance_token="")


def test_read_only_properties() -> None:
    api = ChatGPTAPI(session_token="s", clearance_token="c", user_agent="UA/1")
    assert (api.session_token, api.clearance_token, api.user_agent, api.user) == (
        "s",
        "c",
        "UA/1",
        None,
    )
    with pytest.raises(AttributeError):
        api.session_token = "other"  # type: ignore[misc]


async def test_init_session_sends_cookies_and_browser_headers(
    fake: FakeChatGPTWeb, make_api: MakeAPI
) -> None:
    api = make_api(user_agent="TestBrowser/1.0", headers={"Accept-Language": "de", "X-Extra": "1"})
    await api.init_session()
    [request] = fake.requests_to("/api/auth/session")
    assert request.method == "GET"
    assert request.cookies == {
        "__Secure-next-auth.session-token": SESSION_TOKEN,
        "cf_clearance": CLEARANCE_TOKEN,
    }
    headers = request.headers
    assert headers["User-Agent"] == "TestBrowser/1.0"
    assert headers["Accept-Language"] == "de"  # the user's headers win
    assert headers["X-Extra"] == "1"
    assert headers["Origin"] == "https://chat.openai.com"
    assert headers["Referer"] == "https://chat.openai.com/chat"
    assert headers["Sec-Fetch-Mode"] == "cors"
    assert api.user == DEFAULT_USER
    assert await api.get_is_authenticated()


async def test_token_is_cached_and_aliases_work(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    token = await api.refresh_session()
    assert token in fake.valid_tokens
    assert await api.refresh_access_token() == token
    await api.ensure_auth()
    assert fake.session_requests == 1


async def test_concurrent_callers_share_one_refresh(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.session_replies.append(SessionReply(delay=0.05))
    results = await asyncio.gather(*(api.refresh_session() for _ in range(5)), api.init_session())
    assert fake.session_requests == 1
    assert len(set(results[:5])) == 1


async def test_concurrent_callers_share_one_failure(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.session_replies.append(SessionReply(access_token=None, delay=0.05))
    results = await asyncio.gather(
        *(api.refresh_session() for _ in range(3)), return_exceptions=True
    )
    assert fake.session_requests == 1
    assert all(isinstance(r, ChatGPTAuthError) for r in results)


async def test_cancelling_one_waiter_does_not_cancel_the_shared_refresh(
    fake: FakeChatGPTWeb, api: ChatGPTAPI
) -> None:
    fake.session_replies.append(SessionReply(delay=0.05))
    first = asyncio.create_task(api.refresh_session())
    second = asyncio.create_task(api.refresh_session())
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second in fake.valid_tokens
    assert first.cancelled()
    assert fake.session_requests == 1


async def test_token_expires_after_ttl(fake: FakeChatGPTWeb, make_api: MakeAPI) -> None:
    api = make_api(access_token_ttl=0.05)
    first = await api.refresh_session()
    assert await api.refresh_session() == first
    await asyncio.sleep(0.06)
    second = await api.refresh_session()
    assert second != first
    assert fake.session_requests == 2


async def test_access_token_seeds_the_cache(fake: FakeChatGPTWeb, make_api: MakeAPI) -> None:
    token = fake.issue_token()
    api = make_api(access_token=token)
    answer = await api.send_message("hi")
    assert answer.text == "Hello, world!"
    assert fake.session_requests == 0
    [request] = fake.requests_to("/backend-api/conversation")
    assert request.headers["Authorization"] == f"Bearer {token}"


async def test_no_access_token_is_unauthorized(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.session_replies.append(SessionReply(access_token=None))
    with pytest.raises(ChatGPTAuthError, match="Unauthorized"):
        await api.init_session()


async def test_wrong_session_token_is_unauthorized(make_api: MakeAPI) -> None:
    api = make_api(session_token="not-the-session")
    with pytest.raises(ChatGPTAuthError, match="Unauthorized"):
        await api.refresh_session()
    assert not await api.get_is_authenticated()


async def test_refresh_access_token_error_says_the_session_expired(
    fake: FakeChatGPTWeb, api: ChatGPTAPI
) -> None:
    fake.session_replies.append(SessionReply(access_token=None, error="RefreshAccessTokenError"))
    with pytest.raises(ChatGPTAuthError, match="session token has expired"):
        await api.refresh_session()


async def test_other_session_errors_are_raised(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.session_replies.append(SessionReply(error="SomethingElse"))
    with pytest.raises(ChatGPTAuthError, match="SomethingElse"):
        await api.refresh_session()


async def test_http_error_on_session(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.session_replies.append(SessionReply(status=500))
    with pytest.raises(ChatGPTError, match="session lookup failed") as caught:
        await api.refresh_session()
    assert caught.value.status_code == 500
    assert caught.value.status_text == "Internal Server Error"


async def test_non_json_session_keeps_the_original_error(
    fake: FakeChatGPTWeb, api: ChatGPTAPI
) -> None:
    fake.session_replies += [SessionReply(raw_body="<html>oops</html>")] * 2
    with pytest.raises(ChatGPTError, match="not JSON") as caught:
        await api.refresh_session()
    assert isinstance(caught.value.__cause__, ValueError)
    assert not await api.get_is_authenticated()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_is_a_connection_error(make_api: MakeAPI) -> None:
    base = f"http://127.0.0.1:{_closed_port()}"
    api = make_api(api_base_url=f"{base}/api", backend_api_base_url=f"{base}/backend-api")
    with pytest.raises(ChatGPTConnectionError) as caught:
        await api.refresh_session()
    assert caught.value.__cause__ is not None
    assert not await api.get_is_authenticated()


async def test_connection_error_on_conversation(make_api: MakeAPI) -> None:
    api = make_api(backend_api_base_url=f"http://127.0.0.1:{_closed_port()}/backend-api")
    with pytest.raises(ChatGPTConnectionError, match="conversation"):
        await api.send_message("hi")


async def test_close_and_reset_session(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    first = await api.refresh_session()
    await api.close_session()
    second = await api.refresh_session()
    assert second != first
    await api.reset_session()
    assert fake.session_requests == 3
    assert await api.refresh_session() not in (first, second)
    assert fake.session_requests == 3


async def test_close_session_during_a_refresh_does_not_cache_its_token(
    fake: FakeChatGPTWeb, api: ChatGPTAPI
) -> None:
    fake.session_replies.append(SessionReply(delay=0.05))
    pending = asyncio.create_task(api.refresh_session())
    await asyncio.sleep(0.01)
    await api.close_session()
    stale = await pending
    assert await api.refresh_session() != stale
    assert fake.session_requests == 2


# -- the conversation request ------------------------------------------------------


async def test_conversation_request_shape(fake: FakeChatGPTWeb, make_api: MakeAPI) -> None:
    api = make_api(user_agent="TestBrowser/1.0", model="gpt-4")
    answer = await api.send_message("What is 1+1?")
    [request] = fake.requests_to("/backend-api/conversation")
    token = request.headers["Authorization"].removeprefix("Bearer ")
    assert token in fake.valid_tokens
    assert request.headers["Accept"] == "text/event-stream"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "TestBrowser/1.0"
    assert request.headers["Origin"] == "https://chat.openai.com"
    assert request.cookies == {"cf_clearance": CLEARANCE_TOKEN}
    body = request.json
    assert set(body) == {"action", "messages", "model", "parent_message_id"}
    assert body["action"] == "next"
    assert body["model"] == "gpt-4"
    [message] = body["messages"]
    assert message["role"] == "user"
    assert message["content"] == {"content_type": "text", "parts": ["What is 1+1?"]}
    assert uuid.UUID(message["id"]).version == 4
    assert uuid.UUID(body["parent_message_id"]).version == 4
    assert body["parent_message_id"] != message["id"]
    assert answer.parent_message_id == message["id"]
    assert answer.text == "Hello, world!"
    assert answer.done


async def test_conversation_ids_and_action_are_sent(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    answer = await api.send_message(
        "again",
        conversation_id="conv-1",
        parent_message_id="parent-1",
        message_id="mine-1",
        action="variant",
    )
    body = fake.requests_to("/backend-api/conversation")[0].json
    assert body["conversation_id"] == "conv-1"
    assert body["parent_message_id"] == "parent-1"
    assert body["messages"][0]["id"] == "mine-1"
    assert body["action"] == "variant"
    assert answer.conversation_id == "conv-1"
    assert answer.parent_message_id == "mine-1"


async def test_default_model(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    await api.send_message("hi")
    assert fake.requests_to("/backend-api/conversation")[0].json["model"] == (
        "text-davinci-002-render-sha"
    )


async def test_401_refreshes_the_token_once_and_retries(
    fake: FakeChatGPTWeb, make_api: MakeAPI
) -> None:
    api = make_api(access_token="stale-token")
    answer = await api.send_message("hi")
    assert answer.text == "Hello, world!"
    assert fake.session_requests == 1
    first, second = fake.requests_to("/backend-api/conversation")
    assert first.headers["Authorization"] == "Bearer stale-token"
    assert second.headers["Authorization"].removeprefix("Bearer ") in fake.valid_tokens


async def test_401_twice_is_an_auth_error(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.reject_all_tokens = True
    with pytest.raises(ChatGPTAuthError, match="authentication token has expired") as caught:
        await api.send_message("hi")
    assert caught.value.status_code == 401
    assert len(fake.requests_to("/backend-api/conversation")) == 2
    assert fake.session_requests == 2


async def test_403_explains_clearance_and_user_agent(make_api: MakeAPI) -> None:
    api = make_api(clearance_token="wrong-clearance")
    with pytest.raises(ChatGPTAuthError) as caught:
        await api.send_message("hi")
    assert caught.value.status_code == 403
    message = str(caught.value)
    assert "clearance token" in message
    assert "user agent" in message
    assert "<html" not in message.lower()


# -- moderation --------------------------------------------------------------------


async def test_send_moderation(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.moderation_replies.append(
        (200, {"flagged": True, "blocked": False, "moderation_id": "modr-42"})
    )
    result = await api.send_moderation("some text")
    assert result == ModerationResult(flagged=True, blocked=False, moderation_id="modr-42")
    [request] = fake.requests_to("/backend-api/moderations")
    assert request.json == {"input": "some text", "model": "text-moderation-playground"}
    assert request.headers["Authorization"].removeprefix("Bearer ") in fake.valid_tokens
    assert request.cookies == {"cf_clearance": CLEARANCE_TOKEN}


async def test_moderation_401_refreshes_once(fake: FakeChatGPTWeb, make_api: MakeAPI) -> None:
    api = make_api(access_token="stale-token")
    assert not (await api.send_moderation("x")).flagged
    assert len(fake.requests_to("/backend-api/moderations")) == 2
    assert fake.session_requests == 1


async def test_moderation_http_error(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.moderation_replies.append((400, {"detail": "Input too long"}))
    with pytest.raises(ChatGPTError, match="Input too long") as caught:
        await api.send_moderation("x" * 10)
    assert caught.value.status_code == 400


# -- conversations -----------------------------------------------------------------


async def test_conversation_carries_ids_forward(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    conversation = api.get_conversation()
    assert isinstance(conversation, ChatGPTConversation)
    assert conversation.api is api
    assert (conversation.conversation_id, conversation.parent_message_id) == (None, None)
    fake.answers.append(Answer(conversation_id="conv-9", message_id="answer-1"))
    first = await conversation.send_message("one")
    assert (conversation.conversation_id, conversation.parent_message_id) == ("conv-9", "answer-1")
    fake.answers.append(Answer(message_id="answer-2"))
    second = await conversation.send_message("two")
    body = fake.requests_to("/backend-api/conversation")[1].json
    assert body["conversation_id"] == "conv-9"
    assert body["parent_message_id"] == "answer-1" == first.message_id
    assert conversation.parent_message_id == "answer-2" == second.message_id


async def test_conversation_starts_from_given_ids(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    conversation = api.get_conversation("conv-1", "parent-1")
    await conversation.send_message("hi")
    body = fake.requests_to("/backend-api/conversation")[0].json
    assert (body["conversation_id"], body["parent_message_id"]) == ("conv-1", "parent-1")


async def test_failed_send_does_not_advance_ids(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    conversation = api.get_conversation("conv-1", "parent-1")
    fake.answers.append(Answer(error_after=1))
    with pytest.raises(ChatGPTStreamError):
        await conversation.send_message("hi")
    assert (conversation.conversation_id, conversation.parent_message_id) == ("conv-1", "parent-1")
    fake.answers.append(Answer(message_id="answer-ok"))
    await conversation.send_message("again")
    assert fake.requests_to("/backend-api/conversation")[1].json["parent_message_id"] == "parent-1"
    assert conversation.parent_message_id == "answer-ok"


async def test_concurrent_sends_are_serialized(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    conversation = api.get_conversation()
    fake.answers += [
        Answer(message_id="a1", conversation_id="c", delay=0.02),
        Answer(message_id="a2", conversation_id="c"),
    ]
    first, second = await asyncio.gather(
        conversation.send_message("one"), conversation.send_message("two")
    )
    bodies = [r.json for r in fake.requests_to("/backend-api/conversation")]
    assert bodies[1]["parent_message_id"] == "a1"
    assert bodies[1]["conversation_id"] == "c"
    assert (first.message_id, second.message_id) == ("a1", "a2")
    assert conversation.parent_message_id == "a2"


async def test_conversation_stream_message_advances_on_completion(
    fake: FakeChatGPTWeb, api: ChatGPTAPI
) -> None:
    conversation = api.get_conversation()
    fake.answers.append(Answer(message_id="a1", conversation_id="c"))
    seen: list[ChatResponse] = []
    async for partial in conversation.stream_message("hi"):
        seen.append(partial)
    assert seen[-1].done and seen[-1].text == "Hello, world!"
    assert all(not p.done for p in seen[:-1]) and len(seen) > 1
    assert (conversation.conversation_id, conversation.parent_message_id) == ("c", "a1")


# -- secrets -----------------------------------------------------------------------


async def test_debug_logs_requests_without_secrets(
    fake: FakeChatGPTWeb, make_api: MakeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="core.chatgpt_web")
    api = make_api(debug=True, access_token="stale-SECRET-token")
    fake.moderation_replies.append((500, {"detail": f"echo {SESSION_TOKEN}"}))
    await api.send_message("hi")
    with pytest.raises(ChatGPTError) as caught:
        await api.send_moderation("hi")
    logged = caplog.text
    assert "GET " + fake.api_base_url + "/auth/session" in logged
    assert "POST " + fake.backend_api_base_url + "/conversation" in logged
    assert "-> 200" in logged and "-> 401" in logged
    secrets = [SESSION_TOKEN, CLEARANCE_TOKEN, "stale-SECRET-token", *fake.valid_tokens]
    for text in (logged, str(caught.value), repr(api), repr(api.get_conversation())):
        for secret in secrets:
            assert secret not in text
    assert "SECRET" not in logged


async def test_requests_are_logged_at_debug_without_headers(
    fake: FakeChatGPTWeb, api: ChatGPTAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="core.chatgpt_web")
    await api.send_message("hi")
    logged = caplog.text
    assert f"GET {fake.api_base_url}/auth/session (try 1)" in logged
    assert f"POST {fake.backend_api_base_url}/conversation (try 1)" in logged
    assert f"POST {fake.backend_api_base_url}/conversation -> 200 OK in " in logged
    assert "headers=" not in logged  # those only with debug=True
    assert "SECRET" not in logged
