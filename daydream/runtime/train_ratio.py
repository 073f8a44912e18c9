"""The train ratio: how many learner updates are owed for the env steps collected so far.

Stateless on purpose: owed updates follow from the two counters that checkpoints
persist (env steps and updates), so a resumed run neither repeats nor floods updates.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainRatio:
    ratio: float         # replayed steps per env step
    batch_steps: int     # replayed steps per update (batch_size * batch_length)
    start: int           # env steps before the first update

    def owed(self, env_steps: int, updates: int) -> int:
        """Updates to run now so that updates * batch_steps ~= ratio * (env_steps - start)."""
        if env_steps < self.start:
            return 0
        target = int((env_steps - self.start + 1) * self.ratio / self.batch_steps)
        return max(0, target - updates)
