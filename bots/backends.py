"""Config section -> backend instance. A new provider is one new branch here."""

from __future__ import annotations

from typing import Any

from bots.config import (
    BackendConfig,
    ChatCompletionsConfig,
    ChatGPTWebConfig,
    LocalBackendConfig,
)
from core.backends.base import Backend
from core.store.history import HistoryStore

#: Backend types whose history lives in parley's store (they rebuild the prompt from
#: it); chatgpt_web keeps its history on its server. See BotPolicy.shared_history.
STORE_HISTORY_TYPES = frozenset({"local", "chat_completions"})


def _plain(headers: dict[str, Any]) -> dict[str, str]:
    return {k: v.get_secret_value() for k, v in headers.items()}


def build_backend(config: BackendConfig, *, history: HistoryStore | None) -> Backend:
    """Backends get the app's store as read-only history: the chat service commits
    each turn itself, in one transaction with the scope head and platform links."""
    if isinstance(config, LocalBackendConfig):
        from core.backends.local import LocalBackend

        return LocalBackend(
            model_path=config.model_path,
            context_size=config.context_size,
            threads=config.threads,
            system_message=config.system_message,
            max_response_tokens=config.max_response_tokens,
            completion_params=dict(config.completion_params),
            timeout=config.timeout,
            max_answer_seconds=config.max_answer_seconds,
            history=history,
            save_history=history is None,
        )
    if isinstance(config, ChatCompletionsConfig):
        from core.backends.chat_completions import ChatCompletionsBackend

        return ChatCompletionsBackend(
            base_url=config.base_url,
            api_key=config.api_key.get_secret_value() if config.api_key else None,
            model=config.model,
            system_message=config.system_message,
            max_model_tokens=config.max_model_tokens,
            max_response_tokens=config.max_response_tokens,
            completion_params=dict(config.completion_params),
            timeout=config.timeout,
            max_answer_seconds=config.max_answer_seconds,
            max_concurrency=config.max_concurrency,
            max_retries=config.max_retries,
            headers=_plain(config.headers),
            history=history,
            save_history=history is None,
        )
    if isinstance(config, ChatGPTWebConfig):
        from core.backends.chatgpt_web import ChatGPTAPI

        options: dict[str, Any] = {
            "session_token": config.session_token.get_secret_value(),
            "clearance_token": config.clearance_token.get_secret_value(),
            "access_token": config.access_token.get_secret_value() if config.access_token else None,
            "access_token_ttl": config.access_token_ttl,
            "api_base_url": config.api_base_url,
            "backend_api_base_url": config.backend_api_base_url,
            "markdown": config.markdown,
            "headers": _plain(config.headers) or None,
            "debug": config.debug,
            "max_retries": config.max_retries,
            "timeout": config.timeout,
            "max_answer_seconds": config.max_answer_seconds,
        }
        if config.user_agent:
            options["user_agent"] = config.user_agent
        if config.model:
            options["model"] = config.model
        return ChatGPTAPI(**options)
    raise AssertionError(f"unhandled backend config {type(config).__name__}")
