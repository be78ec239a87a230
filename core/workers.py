"""Who a worker process is, and whether another one is still alive.

A turn in flight is owned by the worker that answers it (the inbox row's ``worker``).
When that worker dies (kill -9, OOM, a power cut), another one must notice and take the
turn over; when it merely runs on another machine it must be left alone. A worker id
names its host and process precisely enough to decide:

- on this host (and in this PID namespace, so two containers never confuse their
  PIDs), a worker is alive while its PID runs with the same start time: a reused PID or
  a restarted container's PID 1 is another process;
- on any other host, only the heartbeat tells: a worker whose heartbeat is older than
  ``ttl`` is taken for dead.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

HEARTBEAT_SECONDS = 10.0
"""How often a worker with turns in flight renews their heartbeat."""
HEARTBEAT_TTL = 45.0
"""A heartbeat older than this marks its worker dead (other hosts only)."""


@dataclass(frozen=True, slots=True)
class WorkerId:
    host: str  # hostname plus PID namespace
    pid: int
    started: str  # the process's start time in clock ticks since boot, or a random token

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{self.started}"

    @classmethod
    def parse(cls, text: str) -> WorkerId | None:
        host, _, rest = text.rpartition("/")
        host, _, pid = host.rpartition("/")
        if not host or not pid.isdigit():
            return None
        return cls(host, int(pid), rest)


def _host() -> str:
    namespace = ""
    with contextlib.suppress(OSError):
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:")
    return f"{socket.gethostname()}{namespace}".replace("/", "_")


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in ticks), or None if PID is not running."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its ")".
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[19].decode()


@cache
def this_worker() -> WorkerId:
    pid = os.getpid()
    return WorkerId(_host(), pid, _start_time(pid) or uuid.uuid4().hex)


def is_gone(worker: str, heartbeat_at: datetime, now: datetime, ttl: float = HEARTBEAT_TTL) -> bool:
    """Whether the worker named ``worker`` is dead, as far as this process can tell."""
    me = this_worker()
    other = WorkerId.parse(worker)
    if other is None:
        return now - heartbeat_at > timedelta(seconds=ttl)
    if other.host == me.host and os.path.isdir("/proc/self"):
        if other.pid == me.pid:
            return other.started != me.started  # an earlier process with our PID
        return _start_time(other.pid) != other.started
    return now - heartbeat_at > timedelta(seconds=ttl)
