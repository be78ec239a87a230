"""The OpenAI-compatible Chat Completions backend (type ``chat_completions``).

Talks to any server with ``POST {base_url}/chat/completions`` and SSE streaming:
OpenAI, Ollama, vLLM, llama.cpp, LM Studio, OpenRouter. These servers keep no history,
so the message tree lives in a ``HistoryStore``: the prompt is the system message, the
chain of stored messages ending at ``parent_message_id`` (as much as fits the token
budget, newest kept) and the new user message.

Failure handling, in order:

- ``timeout`` is one deadline for the whole call: waiting for a free slot
  (``max_concurrency``), every attempt, the waits between them and the stream.
- 408/429/5xx answers, connection failures and streams that break before the first
  answer text are retried up to ``max_retries`` times with exponential backoff and
  jitter, or after the server's ``Retry-After``. A wait that would pass the deadline (or
  a ``Retry-After`` longer than ``max_retry_wait``) is not taken: the error is raised.
- Once answer text was yielded nothing is retried: a broken stream raises
  ``ChatGPTStreamError`` carrying the partial text, and nothing is saved.
- The API key never appears in reprs, logs or error messages (server messages that
  echo it are redacted).

``backend`` holds ``ChatCompletionsBackend``, ``transport`` the error mapping and the
retry policy, ``stream`` the reader of the answer; the helpers shared with other
backends (``Retry-After``, error bodies, redaction) are in ``core.http``.
"""

from core.backends.chat_completions.backend import (
    DEFAULT_SYSTEM_MESSAGE,
    ChatCompletionsBackend,
    PromptTooLongError,
)

__all__ = ["DEFAULT_SYSTEM_MESSAGE", "ChatCompletionsBackend", "PromptTooLongError"]
