"""What a GGUF model file says about itself: its architecture and trained context.

Read here from the header (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md)
rather than with the ``gguf`` package, which pulls in numpy for what is a few dozen
lines: magic ``GGUF``, a version, the tensor and metadata counts, then typed key/value
pairs. Only the metadata is read, and it stops as soon as both keys were seen
(``general.architecture`` and ``<architecture>.context_length`` come first in
practice, before the tokenizer's large arrays).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"GGUF"
# Value types and the struct format of the fixed-size ones.
_STRING, _ARRAY = 8, 9
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
#: Sanity limits: a corrupt or hostile header must not make us read or allocate without end.
_MAX_KEY = 1 << 16
_MAX_STRING = 1 << 26
_MAX_ITEMS = 1 << 32


class GGUFError(ValueError):
    """The file is not a GGUF model file, or its header is damaged."""


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    architecture: str | None
    context_length: int | None  # the context the model was trained with, in tokens


def read_info(path: str | os.PathLike[str]) -> GGUFInfo:
    """The architecture and trained context of the GGUF file at ``path``.

    Raises ``GGUFError`` if it is not one (or ``OSError`` if it cannot be read).
    """
    with open(path, "rb") as file:
        return _Reader(file).info()


class _Reader:
    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.order = "<"
        self.wide = True  # version 1 used 32-bit counts and lengths

    def info(self) -> GGUFInfo:
        if self.file.read(4) != MAGIC:
            raise GGUFError("it does not start with the GGUF magic bytes")
        (version,) = struct.unpack("<I", self._read(4))
        if version > 0xFFFF:  # a big-endian file
            self.order = ">"
            (version,) = struct.unpack(">I", struct.pack("<I", version))
        if version not in (1, 2, 3):
            raise GGUFError(f"unknown GGUF version {version}")
        self.wide = version >= 2
        self._count()  # tensors
        entries = self._count()
        architecture: str | None = None
        lengths: dict[str, int] = {}
        for _ in range(entries):
            key = self._string(_MAX_KEY)
            kind = self._int("I")
            if key == "general.architecture" and kind == _STRING:
                architecture = self._string(_MAX_STRING)
            elif key.endswith(".context_length") and kind in _SCALARS:
                value = self._unpack(_SCALARS[kind])[0]
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    lengths[key.removesuffix(".context_length")] = value
            else:
                self._skip(kind)
            if architecture is not None and architecture in lengths:
                break
        context = lengths.get(architecture) if architecture else None
        return GGUFInfo(architecture, context)

    def _read(self, size: int) -> bytes:
        data = self.file.read(size)
        if len(data) != size:
            raise GGUFError("the header ends early: the file is cut short")
        return data

    def _unpack(self, fmt: str) -> tuple[object, ...]:
        return struct.unpack(self.order + fmt, self._read(struct.calcsize(fmt)))

    def _int(self, fmt: str) -> int:
        (value,) = self._unpack(fmt)
        assert isinstance(value, int)
        return value

    def _count(self) -> int:
        value = self._int("Q" if self.wide else "I")
        if value > _MAX_ITEMS:
            raise GGUFError("the header is damaged (an impossible count)")
        return value

    def _string(self, limit: int) -> str:
        size = self._count()
        if size > limit:
            raise GGUFError("the header is damaged (an impossibly long string)")
        return self._read(size).decode("utf-8", errors="replace")

    def _skip(self, kind: int, depth: int = 0) -> None:
        if kind in _SCALARS:
            self.file.seek(struct.calcsize(_SCALARS[kind]), os.SEEK_CUR)
        elif kind == _STRING:
            self.file.seek(self._count(), os.SEEK_CUR)
        elif kind == _ARRAY and depth < 4:
            item = self._int("I")
            count = self._count()
            if item in _SCALARS:
                self.file.seek(count * struct.calcsize(_SCALARS[item]), os.SEEK_CUR)
            else:
                for _ in range(count):
                    self._skip(item, depth + 1)
        else:
            raise GGUFError(f"the header is damaged (unknown value type {kind})")
