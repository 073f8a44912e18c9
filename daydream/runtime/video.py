"""Saving frames as a video file (mp4 through imageio's bundled ffmpeg, else GIF)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)


def save_video(frames: Sequence[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """Write uint8 HxWx3 frames to `path`; an .mp4 falls back to .gif if ffmpeg is missing."""
    import imageio.v2 as imageio

    if not frames:
        raise ValueError("no frames to write: the episode produced no images (enable env.render or pixel obs)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [np.asarray(f, dtype=np.uint8) for f in frames]
    if path.suffix == ".mp4":
        try:
            # macro_block_size=1 keeps small frames (64x64) at their size instead of padding them.
            imageio.mimwrite(path, frames, fps=fps, codec="libx264", macro_block_size=1)
            return path
        except Exception as exc:  # ffmpeg missing or unusable
            log.warning("could not write mp4 (%s); writing a GIF instead", exc)
            path = path.with_suffix(".gif")
    imageio.mimwrite(path, frames, duration=1000 / fps, loop=0)
    return path
