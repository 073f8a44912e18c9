"""The learner's handling of incoming chunks, in process (no sockets): replay order by sequence number."""

from __future__ import annotations

import numpy as np

from daydream.config import load_config
from daydream.runtime.learner import Learner


def _chunk(learner: Learner, start: int, length: int) -> dict[str, np.ndarray]:
    """A chunk that fits the learner's spec; `reward` counts steps so any seam shows after sampling."""
    chunk = {k: np.zeros((length, *shape), dtype) for k, (shape, dtype) in learner.spec.items()}
    chunk["reward"] = np.arange(start, start + length, dtype=np.float32)
    return chunk


def test_chunks_go_to_replay_by_sequence_number(tmp_path):
    config = load_config("pendulum_tiny", [f"logdir={tmp_path}", "device=cpu", "replay.batch_length=12",
                                           "replay.batch_size=32"])
    learner = Learner(config)
    try:
        length = 4
        # an actor restart or a resend after a lost ack: later chunks arrive first, some twice
        for seq in [0, 1, 4, 5, 2, 3, 6, 4, 7, 3]:
            learner._on_chunk("robot-1", seq, 0, _chunk(learner, seq * length, length))
        assert len(learner.replay) == 8 * length
        for _ in range(20):
            batch = learner.replay.sample()
            assert (np.diff(batch["reward"], axis=1) == 1).all(), batch["reward"]
    finally:
        learner.close()
