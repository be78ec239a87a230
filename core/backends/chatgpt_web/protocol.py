"""The answer stream of ``POST /backend-api/conversation``, event by event.

Two shapes reach us. The classic one sends ``data: {...}`` events whose
``message.content.parts[0]`` is the full text so far. The newer one sends
``event: delta`` events holding JSON-patch-like operations on one document
(``{"message": ..., "conversation_id": ..., "error": ...}``)::

    {"p": "", "o": "add", "v": {"message": {...}, "conversation_id": "..."}}
    {"p": "/message/content/parts/0", "o": "append", "v": "Hel"}
    {"v": "lo"}                          # same path and operation as the previous op
    {"o": "patch", "v": [{"p": "/message/status", "o": "replace", "v": "done"}]}

Both end with ``data: [DONE]``. Ops are recognised by their keys even without the
``event: delta`` line. Other event names (``delta_encoding``) and payloads
that are not objects (``"v1"``) carry nothing we need and are skipped.
"""

from __future__ import annotations

import json
from typing import Any

from core.backends.answer import DEFAULT_ANSWER_CHARS, AnswerTooLong, TextBuilder
from core.errors import ChatGPTStreamError
from core.sse import SSEEvent

DONE = "[DONE]"
_OP_KEYS = {"p", "o", "v", "c"}  # a delta op sent without ``event: delta``
#: Where the delta format keeps the answer text; ops on it go to a ``TextBuilder``.
TEXT_PATH = "/message/content/parts/0"
#: Work allowed on the rest of the delta document (characters received and copied):
#: metadata is a few kilobytes; a server that keeps appending to it is cut off.
OTHER_WORK_LIMIT = 1 << 23


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class StreamProblem(ChatGPTStreamError):
    """What was wrong with the stream (``what``) and the detail, for the client to say
    where it happened."""

    def __init__(self, what: str, detail: str = "", *, partial_text: str = "") -> None:
        super().__init__(f"{what}: {detail}" if detail else what, partial_text=partial_text)
        self.what = what
        self.detail = detail


class AnswerStream:
    """Folds the events of one answer into its text, ids and completion.

    ``answer`` holds the text (at most ``max_chars``); in the delta format the text's
    operations are applied to a ``TextBuilder`` instead of a string in the document, so
    that each appended character costs constant time.
    """

    def __init__(self, max_chars: int = DEFAULT_ANSWER_CHARS) -> None:
        self.max_chars = max_chars
        self.answer = TextBuilder(max_chars)
        self.message_id: str | None = None
        self.conversation_id: str | None = None
        self.done = False
        self._doc: Any = None  # the delta format's document
        self._doc_text: TextBuilder | None = None  # its message's text, taken out of it
        self._path = ""  # path and operation of the previous delta op
        self._op = "add"
        self._work = 0

    @property
    def text(self) -> str:
        return self.answer.text

    def feed(self, event: SSEEvent) -> bool:
        """Take one event; True if the answer text changed."""
        if self.done or event.event not in ("message", "delta"):
            return False
        data = event.data.strip()
        if data == DONE:
            self.done = True
            return False
        if not data:
            return False  # a keep-alive
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):
            raise self._problem("malformed event (not JSON)") from None
        if not isinstance(payload, dict):
            return False
        version = self.answer.version
        try:
            if event.event == "delta" or ("v" in payload and payload.keys() <= _OP_KEYS):
                self._charge(len(data))
                self._apply(payload)
                self._read(self._doc, delta=True)
            else:
                self._read(payload, delta=False)
        except AnswerTooLong as exc:
            raise self._problem(f"{exc}: an answer without end") from None
        except RecursionError:
            raise self._problem("malformed event (nested too deeply)") from None
        return self.answer.version != version

    def _problem(self, what: str, detail: str = "") -> StreamProblem:
        return StreamProblem(what, detail, partial_text=self.text)

    def _charge(self, work: int) -> None:
        self._work += work
        if self._work > OTHER_WORK_LIMIT:
            raise self._problem(
                f"more than {OTHER_WORK_LIMIT} characters of changes besides the answer text"
            )

    def _read(self, doc: Any, *, delta: bool) -> None:
        doc = _obj(doc)
        error = doc.get("error")
        if error:
            detail = _obj(error).get("message", error) if isinstance(error, dict) else error
            raise self._problem("error event in the answer stream", str(detail))
        if isinstance(doc.get("conversation_id"), str):
            self.conversation_id = doc["conversation_id"]
        message = _obj(doc.get("message"))
        if not message or _obj(message.get("author")).get("role", "assistant") != "assistant":
            return  # echoed user/system/tool messages are not the answer
        if message.get("recipient", "all") != "all":
            return  # a tool call
        content = _obj(message.get("content"))
        if content.get("content_type", "text") != "text":
            return
        if isinstance(message.get("id"), str):
            self.message_id = message["id"]
        # An empty text keeps the answer so far (a new message has not started yet).
        if delta:
            if self._doc_text is not None and len(self._doc_text):
                self.answer = self._doc_text
            return
        parts = content.get("parts")
        text = parts[0] if isinstance(parts, list) and parts else None
        if isinstance(text, str) and text and text != self.answer.text:
            self.answer.replace(text)

    def _apply(self, op: dict[str, Any]) -> None:
        path, kind, value = op.get("p", self._path), op.get("o", self._op), op.get("v")
        if kind == "patch":
            for sub in value if isinstance(value, list) else []:
                if isinstance(sub, dict):
                    self._apply(sub)
            return
        if not isinstance(path, str) or not isinstance(kind, str):
            return
        self._path, self._op = path, kind
        if path == TEXT_PATH and self._doc_text is not None:
            self._edit_text(self._doc_text, kind, value)
            return
        if path == "":
            if kind in ("add", "replace"):
                self._doc = value
        else:
            keys = [k.replace("~1", "/").replace("~0", "~") for k in path.lstrip("/").split("/")]
            parent = self._doc
            for key in keys[:-1]:
                parent = _child(parent, key)
            self._update(parent, keys[-1], kind, value)
        if path == "" or TEXT_PATH.startswith(path + "/"):
            self._take_text()  # the text may have been set with its message

    def _take_text(self) -> None:
        """Move the document's text (if set) into a ``TextBuilder`` of its own."""
        parts = _obj(_obj(_obj(self._doc).get("message")).get("content")).get("parts")
        if isinstance(parts, list) and parts and isinstance(parts[0], str):
            builder = TextBuilder(self.max_chars)
            builder.replace(parts[0])
            parts[0] = ""  # the builder holds it now
            self._doc_text = builder
        else:
            self._doc_text = None

    @staticmethod
    def _edit_text(text: TextBuilder, kind: str, value: Any) -> None:
        if kind == "append" and isinstance(value, str):
            text.append(value)
        elif kind in ("add", "replace") and isinstance(value, str):
            text.replace(value)
        elif kind == "truncate" and isinstance(value, int) and not isinstance(value, bool):
            text.truncate(value)
        elif kind == "remove":
            text.replace("")

    def _update(self, parent: Any, key: str, kind: str, value: Any) -> None:
        """Apply one operation to ``parent[key]``; ``add`` and ``replace`` both set the
        value. Paths that lead nowhere and unknown operations are ignored."""
        if isinstance(parent, dict):
            if kind == "remove":
                parent.pop(key, None)
            else:
                parent[key] = self._changed(parent.get(key), kind, value)
        elif isinstance(parent, list):
            index = len(parent) if key == "-" else int(key) if key.isdigit() else -1
            if index == len(parent) and kind in ("add", "append", "replace"):
                parent.append(value)
            elif 0 <= index < len(parent):
                if kind == "remove":
                    del parent[index]
                else:
                    parent[index] = self._changed(parent[index], kind, value)

    def _changed(self, current: Any, kind: str, value: Any) -> Any:
        if kind in ("add", "replace"):
            return value
        if kind == "append":
            if isinstance(current, str) and isinstance(value, str):
                self._charge(len(current) + len(value))  # the copy this makes
                return current + value
            if isinstance(current, list):  # in place: no copy per append
                current.extend(value if isinstance(value, list) else [value])
                return current
            if isinstance(current, dict) and isinstance(value, dict):
                current.update(value)
                return current
            return value if current is None else current
        if kind == "truncate" and isinstance(value, int) and isinstance(current, str | list):
            return current[:value]
        return current


def _child(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and key.isdigit() and int(key) < len(node):
        return node[int(key)]
    return None
