"""Opening a run directory for training, shared by `daydream train` (Trainer) and
`daydream learner` (Learner): the config checks, refusing to overwrite a finished run,
the resolved `config.yaml`, threads and seeds, the replay and the train-ratio schedule.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from daydream.config import Config, ConfigError, save_config_yaml
from daydream.replay import Replay
from daydream.replay.spec import Spec
from daydream.runtime.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from daydream.runtime.host_memory import configure_host_memory
from daydream.runtime.train_ratio import TrainRatio

log = logging.getLogger(__name__)


def check_train_config(config: Config) -> None:
    r, t = config.replay, config.train
    if t.prefill < r.batch_length:
        raise ConfigError(f"train.prefill ({t.prefill}) must be at least replay.batch_length ({r.batch_length}) so a "
                          "batch can be sampled")
    if t.train_ratio <= 0:
        raise ConfigError(f"train.train_ratio must be positive, got {t.train_ratio}")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def open_run(config: Config, resume: bool) -> tuple[Path, dict[str, Any] | None]:
    """Prepare `config.logdir` for training; returns it and the checkpoint to resume from (None: a fresh start)."""
    check_train_config(config)
    logdir = Path(config.logdir)
    checkpoint = logdir / CHECKPOINT_NAME
    if checkpoint.exists() and not resume:
        raise FileExistsError(f"{logdir} already holds a run; pass --resume to continue it or choose another logdir")
    logdir.mkdir(parents=True, exist_ok=True)
    save_config_yaml(config, logdir / "config.yaml")
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    configure_host_memory(config.host_memory)
    seed_everything(config.seed)
    return logdir, (load_checkpoint(checkpoint) if resume and checkpoint.exists() else None)


class TrainingRun:
    """What Trainer and Learner share: one stream of batches from the replay, and checkpoints."""

    config: Config
    logdir: Path
    agent: Any
    replay: Replay
    _dataset: Iterator[dict[str, np.ndarray]] | None = None

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        if self._dataset is None:
            self._dataset = iter(self.replay.dataset(self.config.replay.prefetch))
        return self._dataset

    def checkpoint_state(self) -> dict[str, Any]:
        """The run's own counters, saved beside the agent and the config."""
        raise NotImplementedError

    def save(self) -> None:
        """Flush the replay, then checkpoint (the replay holds at least what the checkpoint counts)."""
        self.replay.flush()
        save_checkpoint(self.logdir / CHECKPOINT_NAME, {"agent": self.agent.state_dict(), **self.checkpoint_state(),
                                                        "config": self.config.to_dict()})


def open_replay(config: Config, logdir: Path, spec: Spec | None = None) -> Replay:
    """The run's replay; `spec` (from the env's spaces) is what every step and chunk must fit."""
    r = config.replay
    return Replay(r.directory or logdir / "replay", r.capacity, r.chunk_size, r.batch_size, r.batch_length,
                  seed=config.seed, max_open_files=r.max_open_files, spec=spec)


def train_ratio(config: Config) -> TrainRatio:
    r = config.replay
    return TrainRatio(config.train.train_ratio, r.batch_size * r.batch_length, config.train.prefill)


def progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True, smoothing=0.1)
