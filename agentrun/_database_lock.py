"""One server per database: an exclusive ``flock`` on ``<db>.lock`` for the server's life.

A Temporal dev server takes its database for its own: a second one on the same SQLite
file contends for its shards and works from state the first changes under it. The
lock is ``flock``: the kernel drops it when the last
descriptor of it closes, however its holders ended (SIGKILL included), so there is
never a stale lock to clean up. The file itself stays: deleting it would let a second
server lock a new file while the first still holds the old one.

The holder writes its PID, and its Temporal child's, into the file, so a refused
server can say which process to stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DatabaseLock", "LockHolder"]

SERVER = "agentrun-server"
TEMPORAL = "temporal"
COMMAND_LINE_LIMIT = 300


@dataclass(frozen=True)
class LockHolder:
    """Who the lock file says holds the lock: the server's PID and its Temporal child's."""

    server_pid: int | None = None
    temporal_pid: int | None = None

    @property
    def server_alive(self) -> bool:
        """Whether the recorded server process still exists."""
        return self.server_pid is not None and _alive(self.server_pid)

    def describe(self) -> str:
        """The live process that holds the lock, as ``PID n (command line)``."""
        if self.server_alive and self.server_pid is not None:
            return _process(self.server_pid)
        if self.temporal_pid is not None and _alive(self.temporal_pid):
            # Its server died and it lives on (no parent-death signal off Linux):
            # it holds the inherited lock and may still write the database.
            gone = f" of the gone server PID {self.server_pid}" if self.server_pid else ""
            return f"the Temporal dev server{gone}, {_process(self.temporal_pid)}"
        if self.server_pid is not None:
            return f"PID {self.server_pid}"
        return "a process that has not written its PID yet"


class DatabaseLock:
    """The lock of one database file; ``try_acquire`` takes it without waiting."""

    def __init__(self, db: Path) -> None:
        """The lock of ``db``, beside the file it resolves to (``<db>.lock``)."""
        real = db.resolve()  # two spellings of one file (a symlink, a relative path) share it
        self.path = real.with_name(real.name + ".lock")
        self._fd: int | None = None

    @property
    def fd(self) -> int:
        """The locked descriptor, for a child that must hold the lock as long as it lives."""
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not locked")
        return self._fd

    def try_acquire(self) -> bool:
        """Take the lock and record this process as its holder; False when another has it.

        Raises:
            OSError: the lock file cannot be created or opened.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self._write(LockHolder(server_pid=os.getpid()))
        return True

    def record_temporal(self, pid: int) -> None:
        """Add the Temporal child's PID, which holds the lock too (it inherits it)."""
        self._write(LockHolder(server_pid=os.getpid(), temporal_pid=pid))

    def holder(self) -> LockHolder:
        """Who the lock file names as the holder (empty when it cannot be read)."""
        try:
            text = self.path.read_text(errors="replace")
        except OSError:
            return LockHolder()
        pids: dict[str, int] = {}
        for line in text.splitlines():
            role, _, pid = line.partition(" ")
            if pid.strip().isdigit():
                pids[role] = int(pid)
        return LockHolder(server_pid=pids.get(SERVER), temporal_pid=pids.get(TEMPORAL))

    def release(self) -> None:
        """Close the descriptor: the lock goes once no child holds it either."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _write(self, holder: LockHolder) -> None:
        lines = [f"{SERVER} {holder.server_pid}"]
        if holder.temporal_pid is not None:
            lines.append(f"{TEMPORAL} {holder.temporal_pid}")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, ("\n".join(lines) + "\n").encode(), 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    # A zombie has exited (and closed its descriptors) but is not yet reaped.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] == "Z"
    return False


def _process(pid: int) -> str:
    """``PID n (its command line)``, the command line when /proc has it."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"PID {pid}"
    command = shlex.join(arg.decode(errors="replace") for arg in raw.split(b"\0") if arg)
    command = " ".join(command.split())  # one line, whatever the arguments hold
    if len(command) > COMMAND_LINE_LIMIT:
        command = command[: COMMAND_LINE_LIMIT - 1] + "…"
    return f"PID {pid} ({command})" if command else f"PID {pid}"
