"""The learner's handling of incoming chunks, in process (no sockets): replay order by sequence number."""

from __future__ import annotations

import numpy as np

from daydream.config import load_config
from daydream.runtime.learner import Learner


def _chunk(learner: Learner, start: int, length: int) -> dict[str, np.ndarray]:
    """A chunk that fits the learner's spec; `reward` counts steps so any seam shows after sampling."""
    chunk = {k: np.zeros((length, *shape), learner.spec.dtypes[k]) for k, shape in learner.spec.shapes.items()}
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


def test_episode_returns_are_logged_only_for_episodes_received_whole_and_in_order(tmp_path):
    config = load_config("pendulum_tiny", [f"logdir={tmp_path}", "device=cpu"])
    learner = Learner(config)
    try:
        def chunk(start: int, first: int | None = None, last: int | None = None) -> dict[str, np.ndarray]:
            c = _chunk(learner, 0, 4)
            c["reward"] = np.ones(4, np.float32) * (start + 1)
            c["is_first"][:] = False
            c["is_last"][:] = False
            if first is not None:
                c["is_first"][first] = True
            if last is not None:
                c["is_last"][last] = True
            return c

        # actor a: an episode over chunks 0-1 in order (return 1*4 + 2*3 = 10, 6 steps after the first)
        learner._on_chunk("a", 0, 0, chunk(0, first=0))
        learner._on_chunk("a", 1, 0, chunk(1, last=2))
        # actor b: chunk 1 arrives before chunk 0: the episode spanning them is not reported;
        # the next one, received whole and in order, is
        learner._on_chunk("b", 1, 0, chunk(1, last=1))
        learner._on_chunk("b", 0, 0, chunk(0, first=0))
        learner._on_chunk("b", 2, 0, chunk(2, first=0, last=3))
        episodes = []
        while not learner._episodes.empty():
            episodes.append(learner._episodes.get())
        assert episodes == [("a", 10.0, 6), ("b", 12.0, 3)]
    finally:
        learner.close()
