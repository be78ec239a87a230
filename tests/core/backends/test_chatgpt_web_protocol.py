"""The ChatGPT web answer stream's event formats, without HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.backends.chatgpt_web.protocol import AnswerStream
from core.errors import ChatGPTStreamError
from core.sse import SSEEvent


def delta(payload: Any) -> SSEEvent:
    return SSEEvent(data=json.dumps(payload), event="delta")


def classic(payload: Any) -> SSEEvent:
    return SSEEvent(data=json.dumps(payload))


def assistant(text: str, message_id: str = "a1", **extra: Any) -> dict[str, Any]:
    message = {
        "id": message_id,
        "author": {"role": "assistant"},
        "content": {"content_type": "text", "parts": [text]},
    }
    return {"message": {**message, **extra}, "conversation_id": "c1", "error": None}


def start(stream: AnswerStream, text: str = "") -> None:
    stream.feed(delta({"p": "", "o": "add", "v": assistant(text)}))


def test_delta_ops_inherit_path_and_operation() -> None:
    stream = AnswerStream()
    start(stream)
    assert stream.feed(delta({"p": "/message/content/parts/0", "o": "append", "v": "Hel"}))
    assert stream.feed(delta({"v": "lo"}))
    assert stream.feed(delta({"o": "patch", "v": [{"v": " wo"}, {"v": "rld"}]}))
    assert stream.feed(delta({"v": "!"}))  # after a patch: its last op
    assert (stream.text, stream.message_id, stream.conversation_id) == ("Hello world!", "a1", "c1")


def test_delta_ops_without_event_name_and_keep_alives() -> None:
    stream = AnswerStream()
    assert not stream.feed(SSEEvent(data=""))
    assert stream.feed(classic({"p": "", "o": "add", "v": assistant("a")}))
    assert stream.feed(classic({"p": "/message/content/parts/0", "o": "append", "v": "b"}))
    assert stream.feed(classic({"v": "c", "c": 1}))
    assert stream.text == "abc"


def test_delta_patch_replace_truncate_and_remove() -> None:
    stream = AnswerStream()
    start(stream, "draft")
    ops = [
        {"p": "/message/content/parts/0", "o": "replace", "v": "Final text"},
        {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
        {"p": "/message/metadata", "o": "append", "v": {"a": 1}},
        {"p": "/message/metadata", "o": "append", "v": {"b": 2}},
        {"p": "/no/such/path", "o": "append", "v": "ignored"},
        {"p": "/message/content/parts/5", "o": "replace", "v": "ignored"},
        {"o": "unknown-op", "v": 1},
    ]
    assert stream.feed(delta({"p": "", "o": "patch", "v": ops}))
    assert stream.text == "Final text"
    assert stream.feed(delta({"p": "/message/content/parts/0", "o": "truncate", "v": 5}))
    assert stream.text == "Final"
    stream.feed(delta({"p": "/message/content/parts/-", "o": "add", "v": "second part"}))
    stream.feed(delta({"p": "/message/content/parts/1", "o": "remove"}))
    assert stream.text == "Final"


def test_delta_error_field() -> None:
    stream = AnswerStream()
    start(stream, "so far")
    with pytest.raises(ChatGPTStreamError, match="boom") as caught:
        stream.feed(delta({"p": "/error", "o": "replace", "v": "boom"}))
    assert caught.value.partial_text == "so far"


def test_unknown_events_and_non_object_payloads_are_skipped() -> None:
    stream = AnswerStream()
    assert not stream.feed(SSEEvent(data='"v1"', event="delta_encoding"))
    assert not stream.feed(SSEEvent(data="not json at all", event="ping"))
    assert not stream.feed(classic("v1"))
    assert not stream.feed(classic([1, 2]))
    assert not stream.feed(delta(None))
    assert not stream.feed(classic({"type": "title_generation", "title": "Hi"}))
    assert not stream.feed(delta({"p": "/message/content/parts/0", "o": "append", "v": "x"}))
    assert stream.text == "" and not stream.done


@pytest.mark.parametrize(
    "message",
    [
        {"author": {"role": "user"}},
        {"author": {"role": "system"}},
        {"author": {"role": "tool"}},
        {"recipient": "browser"},
        {"content": {"content_type": "code", "parts": ["print(1)"]}},
    ],
)
def test_only_assistant_text_counts(message: dict[str, Any]) -> None:
    stream = AnswerStream()
    payload = assistant("not the answer", message_id="other")
    payload["message"].update(message)
    assert not stream.feed(classic(payload))
    assert (stream.text, stream.message_id) == ("", None)
    assert stream.conversation_id == "c1"


def test_classic_full_text_and_done() -> None:
    stream = AnswerStream()
    assert stream.feed(classic(assistant("He")))
    assert not stream.feed(classic(assistant("He")))  # unchanged
    assert stream.feed(classic(assistant("Hello")))
    assert not stream.feed(classic(assistant("")))  # an empty part keeps the text
    assert not stream.feed(SSEEvent(data="[DONE]"))
    assert stream.done and stream.text == "Hello"
    assert not stream.feed(classic(assistant("after done")))


def test_malformed_event() -> None:
    stream = AnswerStream()
    stream.feed(classic(assistant("part")))
    with pytest.raises(ChatGPTStreamError, match="malformed") as caught:
        stream.feed(SSEEvent(data='{"message": '))
    assert caught.value.partial_text == "part"
