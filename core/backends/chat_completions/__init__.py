"""The OpenAI-compatible Chat Completions backend (type ``chat_completions``).

Talks to any server with ``POST {base_url}/chat/completions`` and SSE streaming:
OpenAI, Ollama, vLLM, llama.cpp, LM Studio, OpenRouter. These servers keep no history,
so the message tree lives in a ``HistoryStore``: the prompt is the system message, the
chain of stored messages ending at ``parent_message_id`` (as much as fits the token
budget, newest kept) and the new user message.

Failure handling, in order:

- ``timeout`` bounds each wait on the server (connecting, the response, any silence in
  the stream); ``max_answer_seconds`` the whole call, including reading history,
  loading the tokenizer and waiting for a free slot (``max_concurrency``). See
  ``core.backends.call``.
- 408/429/5xx answers, connection failures and streams that break before the first
  answer text are retried up to ``max_retries`` times with exponential backoff and
  jitter, or after the server's ``Retry-After``. A wait that would pass the call's end
  (or is longer than ``timeout`` or ``max_retry_wait``) is not taken: the error is raised.
- Once answer text was yielded nothing is retried: a broken stream raises
  ``ChatGPTStreamError`` carrying the partial text, and nothing is saved.
- A body that is no event stream (a web page, whatever its content type) fails at once
  with a hint to check ``base_url``; a line or event over 1 MiB, or an answer over
  ``max_answer_chars``, fails the turn (``core.sse``, ``core.backends.answer``).
- The API key never appears in reprs, logs or error messages (server messages that
  echo it are redacted).

``backend`` holds ``ChatCompletionsBackend``, ``transport`` the error mapping,
``stream`` the reader of the answer; what it shares with other backends is in
``core.backends.call`` (limits, retries, errors, logs), ``core.backends.answer`` and
``core.http``.
"""

from core.backends.chat_completions.backend import (
    DEFAULT_SYSTEM_MESSAGE,
    ChatCompletionsBackend,
    PromptTooLongError,
)

__all__ = ["DEFAULT_SYSTEM_MESSAGE", "ChatCompletionsBackend", "PromptTooLongError"]
