"""Exclusive ownership of a replay directory by one open Replay.

On start a replay deletes leftover temp files and evicts old chunks; a second
replay on the same directory (another process, or a forgotten one in this process)
would delete files the first one is writing. An advisory `flock` on
`<directory>/.lock` prevents that; the OS drops it when the process dies, so a
crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lock"


class DirectoryLock:
    def __init__(self, directory: Path) -> None:
        self._fd: int | None = None
        self.path = directory / LOCK_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"replay directory {directory} is already open by another Replay (this or another "
                               "process); "
                               "close() that one first or use a different directory") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __del__(self) -> None:
        self.release()
