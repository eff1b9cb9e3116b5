"""An exclusive lock on a run folder, so two runs never write one ``--out``.

``OUT/.lock`` holds the owner's pid, hostname, start time and run id (for the error message).
Where ``fcntl`` exists (Linux, macOS) the lock is an ``flock`` on that file: the kernel drops it
when the owning process dies, however it dies, so a lock file left by a killed run is simply
taken over. Elsewhere the file is created exclusively (``O_EXCL``); an existing one whose pid is
not running on this host (``os.kill(pid, 0)``) is stale and taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from .config import ConfigError

__all__ = ["RunLock", "RunLocked"]

LOCK_NAME = ".lock"


class RunLocked(ConfigError):
    """Another live run holds the run folder's lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read(path: Path) -> dict:
    try:
        info = json.loads(path.read_text() or "{}")
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


class RunLock:
    """``with RunLock(out, run_id):`` holds ``out/.lock`` exclusively or raises ``RunLocked``.

    ``took_over`` is the stale owner's record when a dead run's lock was taken over, else None.
    """

    def __init__(self, folder: str | os.PathLike, run_id: str = ""):
        self.path = Path(folder) / LOCK_NAME
        self.run_id = run_id
        self.took_over: dict | None = None
        self._fd: int | None = None

    def _record(self) -> str:
        return json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "run_id": self.run_id}
        )

    def _refuse(self, info: dict) -> RunLocked:
        who = f"pid {info.get('pid', '?')} on host {info.get('host', '?')}"
        since = info.get("started")
        when = ""
        if isinstance(since, (int, float)):
            when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since))
        return RunLocked(
            f"run folder {self.path.parent} is in use by another run ({who}{when}, run id "
            f"{info.get('run_id', '?')}): wait for it to finish or choose another --out "
            f"(a lock left by a killed run is taken over automatically)"
        )

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self._acquire_exclusive()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise self._refuse(_read(self.path)) from None
        previous = _read(self.path)
        if previous.get("pid") is not None:  # a file nobody holds: its run ended without unlocking
            self.took_over = previous
        os.ftruncate(fd, 0)
        os.pwrite(fd, self._record().encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def _acquire_exclusive(self) -> RunLock:  # pragma: no cover - platforms without fcntl
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                info = _read(self.path)
                pid = info.get("pid")
                same_host = info.get("host") == socket.gethostname()
                if isinstance(pid, int) and same_host and not _pid_alive(pid):
                    self.took_over = info
                    self.path.unlink(missing_ok=True)
                    continue
                raise self._refuse(info) from None
            os.write(fd, self._record().encode())
            os.fsync(fd)
            self._fd = fd
            return self
        raise self._refuse(_read(self.path))

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            # clear the record first: a released lock file is then recognisably free
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
