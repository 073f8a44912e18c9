"""The asynchronous learner (`daydream learner`): trains on experience streamed by actors and
publishes policies to them, until `train.steps` steps are received."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque

import numpy as np

from daydream.agent import Agent
from daydream.config import Config
from daydream.envs import make_env
from daydream.export.onnx_export import export_onnx
from daydream.export.weights import acting_weights
from daydream.replay.spec import Spec
from daydream.runtime.learner_link import LearnerLink
from daydream.runtime.metrics import Every, Mean, MetricsWriter, Rates
from daydream.runtime.policy_store import PolicyStore
from daydream.runtime.status import STATUS_NAME, StatusFile
from daydream.runtime.run_dir import TrainingRun, open_replay, open_run, progress_bar, train_ratio
from daydream.transport.endpoints import check_bind_security
from daydream.transport.policy import PolicyUpdate

log = logging.getLogger(__name__)


class Learner(TrainingRun):
    """Trains on what actors stream and publishes policies to them.

    A network thread (`LearnerLink`) writes every incoming chunk durably to replay before
    acking it, and serves policies; this thread trains at `train.train_ratio` replayed
    steps per received step, exports the acting graph to ONNX and publishes it every
    `transport.publish_every` updates, checkpoints every `train.checkpoint_every` received
    steps, and stops at `train.steps` received steps (or Ctrl-C / SIGTERM, after a
    checkpoint). Reaching `train.steps` it checkpoints, then tells its actors that the run
    is over in every reply (they stop, or robots keep acting without spooling) and keeps
    answering and writing their last chunks for up to `transport.done_linger_s`, until each
    connected actor has heard it with an empty spool. Resuming a finished run does the same
    at once (so actors still waiting hear it) and says how to extend the run.

    Logdir: `config.yaml`, `checkpoint.pt`, `replay/` (one stream per actor), `link/`
    (the seen-set that drops duplicate chunks), `policy/` (the newest published policy),
    `metrics.jsonl`, `tb/` and `status.json`.
    """

    def __init__(self, config: Config, resume: bool = False) -> None:
        if config.transport.publish_every <= 0:
            raise ValueError(f"transport.publish_every must be positive, got {config.transport.publish_every}")
        tc = config.transport
        check_bind_security(tc.bind, tc.curve.enabled, tc.insecure)
        self.config = config
        self.logdir, payload = open_run(config, resume)
        # only for the spaces: the learner never steps an env
        env = make_env(config.env, seed=config.seed, robot=config.robot)
        self.obs_space, self.act_space = env.observation_space, env.action_space
        env.close()
        self.spec = Spec.of_spaces(self.obs_space, self.act_space)  # what actors' chunks and the replay hold
        self.agent = Agent(config, self.obs_space, self.act_space)
        self.replay = open_replay(config, self.logdir, self.spec)
        self.ratio = train_ratio(config)
        self.metrics = MetricsWriter(self.logdir)
        self.status = StatusFile(self.logdir / STATUS_NAME, config.transport.status_every_s)
        self.store = PolicyStore(self.logdir / "policy")
        received = 0
        if payload is not None:
            self.agent.load_state_dict(payload["agent"])
            received = int(payload.get("received_steps", 0))
        # chunks written after the last checkpoint are in replay but not in its counter
        self._base_received = max(received, len(self.replay))
        self._new_received = 0  # written only by the link thread
        self._episodes: queue.Queue[tuple[str, float, int]] = queue.Queue()
        self._open_returns: dict[str, tuple[float | None, int, int]] = {}  # actor -> (return, steps, next seq)
        self._published_at: dict[int, float] = {}  # version -> when actors could start fetching it
        self._export_started_at: dict[int, float] = {}
        self.policy_version = self.store.version()
        initial = self.store.load()
        if initial is not None:
            log.info("serving the stored policy version %d from %s until the next export", initial.version,
                     self.store.directory)
        self.link = LearnerLink(config.transport, self._on_chunk, self.logdir / "link",
                                initial if initial and initial.onnx else None,
                                credit=self.credit if config.transport.pace_actors else lambda: None)
        self.done = False  # train.steps reached: actors are being told
        steps = config.train.steps
        self.finished_before_start = bool(resume and steps and self._base_received >= steps)
        if self.finished_before_start:
            log.warning("the run in %s is already finished: %d steps received, train.steps is %d. To train on, resume "
                        "it with a larger budget, e.g. --resume --set train.steps=%d", self.logdir,
                        self._base_received, steps, extended_steps(self._base_received, steps))
        elif resume:
            log.info("resumed %s: %d steps received, update %d, policy version %d", self.logdir,
                     self._base_received, self.agent.updates, self.policy_version)

    @property
    def received_steps(self) -> int:
        return self._base_received + self._new_received

    # -- link thread -------------------------------------------------------------------

    def credit(self) -> int:
        """Env steps wanted before the next update is due, plus slack: actors wait once it is used up."""
        r = self.ratio
        due = r.start + (self.agent.updates + 1) * r.batch_steps / r.ratio
        return int(due + self.config.transport.pace_slack_steps - self.received_steps)

    def _on_chunk(self, actor_id: str, seq: int, episode_id: int, chunk: dict[str, np.ndarray]) -> None:
        _, length = self.spec.check_chunk(chunk, f"chunk from actor {actor_id}",
                                          "actor and learner must run the same env config")
        # Duplicates never get here: the receiver's seen-set drops them (see transport/receiver.py).
        self.replay.add_chunk(chunk, stream=actor_id, position=seq)
        self._new_received += length
        # Episode returns for the log. A chunk that does not follow this actor's previous one (out of order
        # after a restart or resend, or after dropped chunks) breaks the open episode: it is not reported.
        total, steps, expected = self._open_returns.get(actor_id, (None, 0, seq))
        if seq != expected:
            total = None
        for first, last, reward in zip(chunk["is_first"], chunk["is_last"], chunk["reward"]):
            if first:
                total, steps = 0.0, 0
            if total is None:
                continue
            total, steps = total + float(reward), steps + 1
            if last:
                self._episodes.put((actor_id, total, steps - 1))
                total = None
        self._open_returns[actor_id] = (total, steps, seq + 1)

    # -- training thread ---------------------------------------------------------------

    def publish(self) -> int:
        """Export the current actor, store it and serve it under the next version."""
        version = self.policy_version + 1
        start = time.time()
        update = PolicyUpdate(version, export_onnx(self.agent, version=version), acting_weights(self.agent))
        self.store.save(update, {"updates": self.agent.updates, "received_steps": self.received_steps,
                                 "published_at": time.time()})
        self.link.publish(update)
        self.policy_version = version
        self._published_at[version] = time.time()
        self._export_started_at[version] = start
        while len(self._published_at) > 20:
            self._export_started_at.pop(min(self._published_at))
            self._published_at.pop(min(self._published_at))
        return version

    def checkpoint_state(self) -> dict[str, int]:
        return {"received_steps": self.received_steps, "policy_version": self.policy_version}

    def run(self, stop: threading.Event | None = None) -> dict[str, float]:
        """Train until `train.steps` steps are received (0 = until stopped); returns the last train metrics."""
        cfg, tc = self.config.train, self.config.transport
        self.link.start()
        log.info("learner listening for experience on %s and serving policies on %s", self.link.experience_endpoint,
                 self.link.policy_endpoint)
        progress = progress_bar(cfg.steps, self.received_steps, cfg.progress)
        shown = self.received_steps
        publish_due = Every(tc.publish_every, self.agent.updates if self.policy_version else -tc.publish_every)
        log_due = Every(cfg.log_every, self.received_steps)
        # and every the updates that checkpoint_every env steps are worth: when actors wait for training (pacing),
        # steps arrive slowly, and a learner killed then would lose (and owe again) every update since its last one
        ckpt_steps = Every(cfg.checkpoint_every, self.received_steps)
        ckpt_updates = Every(max(1, int(cfg.checkpoint_every * self.ratio.ratio / self.ratio.batch_steps)),
                             self.agent.updates)
        train_means, rates = Mean(), Rates(received_steps=self.received_steps, updates=self.agent.updates)
        recent: deque[float] = deque(maxlen=10)
        means: dict[str, float] = {}
        shown_postfix: tuple = ()  # (updates, policy version, episodes seen) on the bar
        postfix_at = 0.0
        reached = False
        try:
            while stop is None or not stop.is_set():
                if self.link.error is not None:
                    raise RuntimeError(f"the learner's network thread failed: {self.link.error}") from self.link.error
                received = self.received_steps
                progress.update(received - shown)
                shown = received
                self._write_episodes(recent)
                if cfg.steps and received >= cfg.steps:
                    reached = True
                    break
                if self.ratio.owed(received, self.agent.updates) > 0:
                    train_means.add(self.agent.train(next(self.batches())))
                    if publish_due(self.agent.updates):
                        self.publish()
                else:
                    time.sleep(0.01)  # waiting for experience; the link thread keeps acking meanwhile
                if log_due(received):
                    means = train_means.take()
                    self.metrics.write("train", received, {
                        **means, **rates.take(received_steps=received, updates=self.agent.updates),
                        "updates": self.agent.updates, "replay_steps": len(self.replay),
                        "policy_version": self.policy_version, "actors": len(self.link.snapshot["actors"])})
                # the bar follows updates and policy versions as they change, not only every log_every
                # received steps (a paced run receives a few steps per update); at most twice a second
                now_shown = (self.agent.updates, self.policy_version, self._episodes_seen(recent))
                if now_shown != shown_postfix and time.monotonic() - postfix_at >= 0.5:
                    shown_postfix, postfix_at = now_shown, time.monotonic()
                    postfix = {"actors": len(self.link.snapshot["actors"]), "upd": self.agent.updates,
                               "policy": self.policy_version}
                    if recent:
                        postfix["return"] = f"{np.mean(recent):.1f}"
                    progress.set_postfix(postfix)
                if ckpt_steps.due(received) or ckpt_updates.due(self.agent.updates):
                    ckpt_steps.mark(received)
                    ckpt_updates.mark(self.agent.updates)
                    self.save()
                if self.status.due():
                    self.write_status()
            if reached:
                self.finish(stop)
        except KeyboardInterrupt:
            log.warning("interrupted at %d received steps; saving a checkpoint", self.received_steps)
            raise
        finally:
            progress.close()
            self.link.stop()
            self._write_episodes(recent)
            self.save()
            self.write_status()
            self.metrics.flush()
        return means

    def finish(self, stop: threading.Event | None = None) -> None:
        """train.steps reached: checkpoint, then tell the actors and wait until they heard it with empty spools.

        Waits at least `learner_timeout_s` (and two heartbeat periods), at most `transport.done_linger_s`:
        a running actor is heard within that silence, so one that had not reached this learner
        yet (a paced actor still waiting for its first credit when the run ended fast) hears it
        too. Actors silent for `learner_timeout_s` are not waited for. Chunks arriving meanwhile
        are still written and acked, so draining actors lose nothing.
        """
        tc = self.config.transport
        self.save()  # first: a learner killed while lingering resumes as a finished run
        self.done = True
        self.link.finish()
        log.info("train.steps=%d reached (%d steps received); telling the actors that the run is over (for up to "
                 "%.0f s)", self.config.train.steps, self.received_steps, tc.done_linger_s)
        start = time.monotonic()
        at_least = min(max(2 * tc.heartbeat_interval_s + 0.5, tc.learner_timeout_s), tc.done_linger_s)
        while time.monotonic() - start < tc.done_linger_s and (stop is None or not stop.is_set()):
            if self.link.error is not None:
                raise RuntimeError(f"the learner's network thread failed: {self.link.error}") from self.link.error
            time.sleep(0.1)
            if self.status.due():
                self.write_status()
            live = [a for a in self.link.snapshot["actors"].values() if a["age_s"] < tc.learner_timeout_s]
            if time.monotonic() - start >= at_least and all(
                    a["told_done"] and a["pending"] == 0 for a in live):
                return
        unsettled = [a for a, i in self.link.snapshot["actors"].items()
                     if i["age_s"] < tc.learner_timeout_s and not (i["told_done"] and i["pending"] == 0)]
        if unsettled:
            log.warning("actors %s had not drained their spools after %.0f s; their chunks stay spooled "
                        "(they reach a resumed run)", unsettled, tc.done_linger_s)

    @staticmethod
    def _episodes_seen(recent: deque[float]) -> tuple[int, float]:
        return len(recent), recent[-1] if recent else 0.0

    def _write_episodes(self, recent: deque[float]) -> None:
        while True:
            try:
                actor_id, total, length = self._episodes.get_nowait()
            except queue.Empty:
                return
            recent.append(total)
            self.metrics.write("episode", self.received_steps, {"return": total, "length": length})
            log.debug("episode of %s: return %.1f over %d steps", actor_id, total, length)

    def write_status(self) -> None:
        snapshot = self.link.snapshot
        self.status.write({
            "role": "learner",
            "done": self.done,
            "received_steps": self.received_steps,
            "replay_steps": len(self.replay),
            "updates": self.agent.updates,
            "policy_version": self.policy_version,
            "published_at": {str(k): v for k, v in self._published_at.items()},
            "export_started_at": {str(k): v for k, v in self._export_started_at.items()},
            "experience": snapshot["experience"],
            "policy": snapshot["policy"],
            "actors": snapshot["actors"],
            "client_versions": snapshot.get("client_versions", {}),
        })

    def close(self) -> None:
        self.link.stop()
        self.replay.close()
        self.metrics.close()


def extended_steps(received: int, steps: int) -> int:
    """A budget that continues a finished run: twice the old one, or one more budget past what it has."""
    return max(2 * steps, received + steps)


def run_learner(config: Config, resume: bool = False) -> Learner:
    """Run a learner to its end; returns it (`finished_before_start`, `received_steps`...)."""
    learner = Learner(config, resume=resume)
    try:
        learner.run()
    finally:
        learner.close()
    return learner
