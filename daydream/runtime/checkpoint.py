"""Checkpoints: the agent's full state plus the loop's counters, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from daydream.atomic import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` to `path` via a temp file, fsync and rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda f: torch.save(payload, f))
    except RuntimeError as exc:
        # Ctrl-C inside torch.save surfaces as torch's RuntimeError about the zip writer; it is the interrupt
        # (the old checkpoint stands), so the caller's KeyboardInterrupt handling saves again
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise exc.__context__ from None
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first or point --checkpoint at a checkpoint.pt")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path} is not a readable daydream checkpoint: {exc}") from exc
