"""Crash-safe file writes, shared by replay chunks, the actor spool, checkpoints and policies:
temp file `.<name>.tmp` in the same directory, fsync, rename, fsync the directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """Where `atomic_write` stages `path` (hidden, same directory, so the rename is atomic)."""
    return path.with_name(f".{path.name}.tmp")


def atomic_write(path: Path, write: Callable[[BinaryIO], None], durable: bool = True) -> None:
    """Write `path` so readers see either the old or the complete new content.

    `durable=False` skips the fsyncs: still atomic against a process crash, not against power loss.
    """
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    atomic_write(path, lambda f: f.write(data), durable)


def remove_temp_files(directory: Path) -> int:
    """Delete temp files left by a crash during `atomic_write`; returns how many."""
    removed = 0
    for p in directory.glob(".*.tmp"):
        p.unlink(missing_ok=True)
        removed += 1
    return removed
