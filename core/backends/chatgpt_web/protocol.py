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

from core.errors import ChatGPTStreamError
from core.sse import SSEEvent

DONE = "[DONE]"
_OP_KEYS = {"p", "o", "v", "c"}  # a delta op sent without ``event: delta``


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class AnswerStream:
    """Folds the events of one answer into its text, ids and completion."""

    def __init__(self) -> None:
        self.text = ""
        self.message_id: str | None = None
        self.conversation_id: str | None = None
        self.done = False
        self._doc: Any = None  # the delta format's document
        self._path = ""  # path and operation of the previous delta op
        self._op = "add"

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
            payload = json.loads(event.data)
        except ValueError as exc:
            raise ChatGPTStreamError(
                "ChatGPT sent a malformed event (not JSON)", partial_text=self.text
            ) from exc
        if not isinstance(payload, dict):
            return False
        if event.event == "delta" or ("v" in payload and payload.keys() <= _OP_KEYS):
            self._apply(payload)
            return self._read(self._doc)
        return self._read(payload)

    def _read(self, doc: Any) -> bool:
        doc = _obj(doc)
        error = doc.get("error")
        if error:
            detail = _obj(error).get("message", error) if isinstance(error, dict) else error
            raise ChatGPTStreamError(f"ChatGPT error: {detail}", partial_text=self.text)
        if isinstance(doc.get("conversation_id"), str):
            self.conversation_id = doc["conversation_id"]
        message = _obj(doc.get("message"))
        if not message or _obj(message.get("author")).get("role", "assistant") != "assistant":
            return False  # echoed user/system/tool messages are not the answer
        if message.get("recipient", "all") != "all":
            return False  # a tool call
        content = _obj(message.get("content"))
        if content.get("content_type", "text") != "text":
            return False
        if isinstance(message.get("id"), str):
            self.message_id = message["id"]
        parts = content.get("parts")
        if isinstance(parts, list) and parts and isinstance(parts[0], str) and parts[0]:
            changed = parts[0] != self.text
            self.text = parts[0]
            return changed
        return False

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
        if path == "":
            if kind in ("add", "replace"):
                self._doc = value
            return
        keys = [k.replace("~1", "/").replace("~0", "~") for k in path.lstrip("/").split("/")]
        parent = self._doc
        for key in keys[:-1]:
            parent = _child(parent, key)
        _update(parent, keys[-1], kind, value)


def _child(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and key.isdigit() and int(key) < len(node):
        return node[int(key)]
    return None


def _update(parent: Any, key: str, kind: str, value: Any) -> None:
    """Apply one operation to ``parent[key]``; ``add`` and ``replace`` both set the value.

    Paths that lead nowhere and unknown operations are ignored.
    """
    if isinstance(parent, dict):
        if kind == "remove":
            parent.pop(key, None)
        else:
            parent[key] = _changed(parent.get(key), kind, value)
    elif isinstance(parent, list):
        index = len(parent) if key == "-" else int(key) if key.isdigit() else -1
        if index == len(parent) and kind in ("add", "append", "replace"):
            parent.append(value)
        elif 0 <= index < len(parent):
            if kind == "remove":
                del parent[index]
            else:
                parent[index] = _changed(parent[index], kind, value)


def _changed(current: Any, kind: str, value: Any) -> Any:
    if kind in ("add", "replace"):
        return value
    if kind == "append":
        if isinstance(current, str) and isinstance(value, str):
            return current + value
        if isinstance(current, list):
            return current + (value if isinstance(value, list) else [value])
        if isinstance(current, dict) and isinstance(value, dict):
            return {**current, **value}
        return value if current is None else current
    if kind == "truncate" and isinstance(value, int) and isinstance(current, str | list):
        return current[:value]
    return current
