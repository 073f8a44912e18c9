"""An actor (`daydream actor`): runs an env with the newest policy and streams experience to the learner
(chunks, spool, pacing, policy swaps, faults); its folder is `<logdir>/actors/<actor_id>/`."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from daydream.config import POLICY_RUNTIMES, Config
from daydream.drivers import DriverError
from daydream.envs import make_env
from daydream.envs.contract import random_action, zero_action
from daydream.runtime.acting import ActingPolicy, TorchActing
from daydream.runtime.acting_worldmodels import onnx_acting
from daydream.runtime.episode import ChunkBuilder, Episode
from daydream.runtime.metrics import MetricsWriter
from daydream.runtime.planner_acting import PlannerActing, wire_format
from daydream.runtime.policy_store import PolicyStore
from daydream.runtime.status import STATUS_NAME, StatusFile, read_status
from daydream.transport import ExperienceSender, PolicyClient
from daydream.transport.sender import Drop, SpoolFull
from daydream.transport.codec import check_actor_id
from daydream.transport.endpoints import check_endpoint, policy_endpoint
from daydream.transport.keys import client_keys_from_dir
from daydream.transport.policy import PolicyUpdate

log = logging.getLogger(__name__)


def default_actor_id() -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:64] or "actor"


class Actor:
    """Runs an env with the newest policy and streams its experience.

    Every step is recorded as the learner's replay expects (`{**obs, action, reward}`,
    the action being the one that led to `obs`); every `transport.chunk_length` steps the
    chunk goes to `ExperienceSender`, which spools it durably before sending and resends
    until acked. Until the first policy arrives the actor takes uniformly random actions
    (the prefill). New policies are verified by `PolicyClient`, cached on disk and swapped
    in between two steps, keeping the recurrent state. On shutdown (Ctrl-C, SIGTERM, or
    `steps` reached) the partial chunk is spooled too and the actor waits up to
    `transport.drain_timeout_s` for acks; whatever is still unacked is resent on the next start.

    Sims and robots differ (`transport.pace_actors`): a paced sim actor never steps past the
    learner's last credit (also while the learner is unreachable), waits while its bounded
    spool is full (or the disk is), and stops when the learner says the run is over. A robot
    keeps acting regardless: a full spool drops its oldest unacked chunks (counted in
    status.json as `spool_dropped_*`, each listed in `dropped.jsonl`, logged once per
    episode), and a finished run makes it stop or, with `transport.on_learner_done:
    keep_acting`, act on its last policy without spooling (`steps_unspooled`).

    Actor folder `<logdir>/actors/<actor_id>/`: `spool/`, `policy/` (last policy received),
    `status.json` (counters; `steps_spooled` is the number of steps this actor has ever
    handed to the spool, which is what the learner's replay must end up holding), and
    `metrics.jsonl` (one `episode` record per episode: return, length, policy version and
    the env's per-episode diagnostics such as the robot's forward velocity).
    """

    def __init__(self, config: Config, learner: str | None = None, policy: str | None = None,
                 max_steps: int = 0, env: Any = None) -> None:
        tc = config.transport
        self.config = config
        self.actor_id = check_actor_id(tc.actor_id or default_actor_id())
        self.endpoint = check_endpoint(learner or tc.learner, "--learner / transport.learner")
        self.format = policy or tc.policy_runtime
        if self.format not in POLICY_RUNTIMES:
            raise ValueError(f"policy runtime must be one of {', '.join(POLICY_RUNTIMES)}, got {self.format!r}")
        self.max_steps = max_steps
        self.dir = Path(config.logdir) / "actors" / self.actor_id
        self.dir.mkdir(parents=True, exist_ok=True)
        # a stable per-actor seed: actors with the same config explore differently
        seed = config.seed + zlib.crc32(self.actor_id.encode()) % 100_000
        self.rng = np.random.default_rng(seed)
        # `env`: an env built by the caller (the robot actor's view of the robot's ROS 2 topics)
        self.env = env if env is not None else make_env(config.env, seed=seed, robot=config.robot)
        self._seed = seed
        self._agent = None
        if self.format == "torch":
            from daydream.agent import Agent

            self._agent = Agent(config, self.env.observation_space, self.env.action_space)
        self.store = PolicyStore(self.dir / "policy")
        self.policy: ActingPolicy | None = None
        cached = self.store.load()
        if cached is not None:
            try:
                self.policy = self._make_policy(cached)
                log.info("actor %s starts with its cached policy version %d", self.actor_id, cached.version)
            except ValueError as exc:
                log.warning("cached policy in %s is unusable (%s); waiting for the learner's", self.store.directory,
                            exc)
        curve = client_keys_from_dir(tc.curve.keys_dir, self.actor_id) if tc.curve.enabled else None
        # a sim (paced) waits for the learner; a robot must go on acting whatever the learner does
        self.paced = tc.pace_actors
        self.sender = ExperienceSender(self.endpoint, self.actor_id, self.dir / "spool", curve=curve,
                                       max_in_flight=tc.max_in_flight, resend_timeout_s=tc.resend_timeout_s,
                                       heartbeat_interval_s=tc.heartbeat_interval_s,
                                       learner_timeout_s=tc.learner_timeout_s, max_message_bytes=tc.max_message_bytes,
                                       spool_max_bytes=int(tc.spool_max_mb * 2**20),
                                       when_full="wait" if self.paced else "drop_oldest")
        self.client = PolicyClient(policy_endpoint(self.endpoint), self.actor_id,
                                   have_version=self.policy.version if self.policy else 0,
                                   format=wire_format(self.format),
                                   curve=curve, request_interval_s=tc.policy_request_interval_s,
                                   learner_timeout_s=tc.learner_timeout_s, max_message_bytes=tc.max_message_bytes)
        self.sender.policy_version = self.policy.version if self.policy else 0
        self.chunks = ChunkBuilder(tc.chunk_length)
        self.sender.unsent_steps = lambda: len(self.chunks.rows)
        self.status = StatusFile(self.dir / STATUS_NAME, tc.status_every_s)
        self.counters = self._load_counters()
        # version -> when this process started acting with it (the cached policy: at start)
        self.loaded_at: dict[str, float] = {str(self.policy.version): time.time()} if self.policy else {}
        self.rejected_policies = 0
        self.fault = ""  # the robot fault the actor is waiting out, if any
        self.waiting = ""  # why a paced actor holds its next step: "credit" | "spool_full" | "disk_full" | ""
        self.learner_done = False  # the learner finished the run and this actor stops
        self.unspooled = False  # the learner finished the run and this robot acts on without spooling
        self._drop_logged = False  # a full-spool drop was logged in this episode
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy-build")
        self._building: tuple[PolicyUpdate, Future] | None = None  # the next policy, built off the control loop
        self.metrics = MetricsWriter(self.dir, tensorboard=False)  # JSONL only: no torch import on a robot

    # -- bookkeeping ---------------------------------------------------------------------

    def _load_counters(self) -> dict[str, int]:
        """Lifetime counters from the last status, plus chunks spooled after it was written."""
        old = read_status(self.dir / STATUS_NAME)
        counters = {name: int(old.get(name, default)) for name, default in (
            ("steps_spooled", 0), ("last_seq", -1), ("episodes", 0), ("faults", 0), ("steps_unspooled", 0),
            ("steps_acted", 0),
            ("spool_dropped_chunks", 0), ("spool_dropped_steps", 0), ("spool_dropped_bound_steps", 0),
            ("spool_dropped_disk_full_steps", 0))}
        self._count_uncounted_chunks(counters)
        return counters

    def _count_uncounted_chunks(self, counters: dict[str, int]) -> None:
        """Count chunks in the spool past `last_seq`: spooled, then a crash (at start) or a Ctrl-C (at
        the end) came before the count. Nothing is acked before the next poll, so they are still there."""
        for seq in self.sender.spool.seqs():
            if seq > counters["last_seq"]:
                _, chunk = self.sender.spool.load(seq)
                counters["steps_spooled"] += len(next(iter(chunk.values())))
                counters["last_seq"] = seq

    def _spool(self, chunk: dict[str, np.ndarray] | None, episode_id: int, stop: threading.Event | None = None) -> None:
        if chunk is None:
            return
        if self.unspooled:  # the run is over and this robot acts on: its experience has nowhere to go
            self.counters["steps_unspooled"] += len(chunk["reward"])
            return
        while True:
            try:
                seq = self.sender.send(chunk, episode_id)
                break
            except SpoolFull as exc:  # a sim on a full disk: hold the steps until acks free space
                if stop is not None and stop.is_set():
                    self._record_drops([self.sender.give_up(chunk)])
                    return
                self._wait_a_moment("disk_full", str(exc))
        self.waiting = ""
        self._record_drops(self.sender.take_drops())
        if seq is not None:  # one update: a Ctrl-C cannot land between the count and last_seq
            self.counters.update(steps_spooled=self.counters["steps_spooled"] + len(chunk["reward"]), last_seq=seq)
        self.write_status()  # right after the spool write, so the lifetime count stays exact across a crash

    def _record_drops(self, drops: list[Drop]) -> None:
        """Count chunks the full-spool policy gave up, list them in dropped.jsonl, log loudly once per episode."""
        if not drops:
            return
        for d in drops:
            self.counters["spool_dropped_chunks"] += 1
            self.counters["spool_dropped_steps"] += d.steps
            key = "spool_dropped_bound_steps" if d.cause == "spool_bound" else "spool_dropped_disk_full_steps"
            self.counters[key] += d.steps
        try:  # the soak and post-mortems read it; on a full disk the counters above still hold the totals
            with open(self.dir / "dropped.jsonl", "a") as f:
                for d in drops:
                    f.write(json.dumps({"seq": d.seq, "steps": d.steps, "cause": d.cause, "written": d.written,
                                        "time": time.time()}) + "\n")
        except OSError:
            pass
        if not self._drop_logged:
            self._drop_logged = True
            log.error("actor %s: SPOOL FULL (%s): dropped %d unacked chunks (%d steps) to keep acting; %d steps "
                      "dropped in total. The learner at %s has not acked them (reachable: %s). Raise "
                      "transport.spool_max_mb or free the disk (logged once per episode)", self.actor_id,
                      ", ".join(sorted({d.cause for d in drops})), len(drops), sum(d.steps for d in drops),
                      self.counters["spool_dropped_steps"], self.endpoint, self.sender.learner_alive)

    def _wait_a_moment(self, why: str, detail: str) -> None:
        """One short wait of a paced actor: keep the links alive and the status fresh."""
        if self.waiting != why:
            log.log(logging.DEBUG if why == "credit" else logging.WARNING, "actor %s waits: %s", self.actor_id, detail)
            self.waiting = why
            self.write_status()
        time.sleep(0.02 if why == "credit" else 0.1)
        self._service()

    def _service(self) -> None:
        """Between steps, or while not stepping: acks, resends and heartbeats, new policies, the status file."""
        self.sender.poll()
        self._poll_policy()
        if self.status.due():
            self.write_status()

    def _hold(self, stop: threading.Event | None, episode_id: int) -> None:
        """A paced actor waits here, between two steps, while it is ahead of the learner or its spool is full."""
        while self.paced and (stop is None or not stop.is_set()) and not self.sender.learner_done:
            credit = self.sender.credit
            if credit is not None and credit - len(self.chunks.rows) <= 0:
                if self.chunks.rows:
                    # The learner may need exactly these steps before its next update (and more credit):
                    # send them as a shorter chunk rather than wait on each other.
                    self._spool(self.chunks.take(), episode_id, stop)
                    continue
                # counts the steps not yet in a chunk too: never a step past the learner's last credit
                self._wait_a_moment("credit", f"ahead of the train ratio (credit {credit})")
            elif not self.sender.has_room:
                self._wait_a_moment("spool_full", f"its spool is full ({self.sender.spool.bytes / 2**20:.1f} MB, "
                                    "transport.spool_max_mb); waiting for the learner to ack chunks")
            else:
                break
        self.waiting = ""

    def _learner_finished(self) -> bool:
        """Follow the learner's "the run is over"; True when this actor should stop acting."""
        if self.sender.learner_done:
            if self.paced or self.config.transport.on_learner_done == "stop":
                log.info("actor %s: the learner finished the run (train.steps reached); draining the spool and "
                         "stopping", self.actor_id)
                self.learner_done = True
                return True
            if not self.unspooled:
                log.warning("actor %s: the learner finished the run; acting on with policy version %s without "
                            "spooling (transport.on_learner_done: keep_acting)", self.actor_id,
                            self.policy.version if self.policy else "none")
                self.unspooled = True
        elif self.unspooled and self.sender.learner_alive:
            log.warning("actor %s: the learner is training again (the run was extended); spooling again", self.actor_id)
            self.unspooled = False
        return False

    def write_status(self) -> None:
        self.status.write({
            "role": "actor", "actor_id": self.actor_id, **self.counters,
            "policy_version": self.policy.version if self.policy else 0,
            "policy_loaded_at": self.loaded_at, "policies_rejected": self.rejected_policies,
            "pending_chunks": self.sender.pending, "learner_alive": self.sender.learner_alive, "fault": self.fault,
            "steps_per_s": self.sender.steps_per_s, "paced": self.paced, "waiting": self.waiting,
            "spool_bytes": self.sender.spool.bytes, "learner_done": self.sender.learner_done,
            "unspooled": self.unspooled, "credit": self.sender.credit, "credit_granted": self.sender.credit_granted,
            "steps_since_credit": self.sender.steps_sent + len(self.chunks.rows) - self.sender.steps_at_credit,
            "experience": self.sender.stats, "policy_link": self.client.stats,
        })

    # -- policies ------------------------------------------------------------------------

    def _make_policy(self, update: PolicyUpdate) -> ActingPolicy:
        if self.format in ("onnx", "planner"):
            if update.onnx is None:
                raise ValueError("no ONNX graph in this policy")
            if self.format == "planner":
                return PlannerActing(update.onnx, self.config.behavior.planner,
                                     threads=self.config.transport.policy_threads, seed=self._seed)
            # the graph's metadata picks the acting class: Dreamer's acting graph or a World Models policy
            return onnx_acting(update.onnx, threads=self.config.transport.policy_threads, seed=self._seed)
        if update.weights is None:
            raise ValueError("no torch weights in this policy")
        return TorchActing(self._agent, update.weights, update.version)

    def _prepare(self, update: PolicyUpdate) -> ActingPolicy:
        """Build a received policy and cache it on disk (both slow: off the control loop for ONNX)."""
        policy = self._make_policy(update)
        self.store.save(update, {"received_at": time.time()})
        return policy

    def _poll_policy(self) -> None:
        """Swap in a newly built policy if one is ready; start building the next one the learner offers.

        Building (an onnxruntime session, or loading torch weights) takes a few hundred ms,
        longer than a control period, so ONNX policies are built on a worker thread: the
        control loop only ever swaps a finished policy in, between two steps.
        """
        if self._building is not None and self._building[1].done():
            update, future = self._building
            self._building = None
            self._swap_in(update, future)
        if self._building is None:
            update = self.client.poll()
            if update is None:
                return
            if self.format != "torch":
                self._building = (update, self._builder.submit(self._prepare, update))
            else:  # torch policies load into the one agent the current policy uses: swap in place, now
                future: Future = Future()
                try:
                    future.set_result(self._prepare(update))
                except Exception as exc:
                    # Ctrl-C inside torch's C++ (loading the weights) surfaces as a RuntimeError around the
                    # KeyboardInterrupt: it is the interrupt, not an unusable policy (the actor ignored Ctrl-C)
                    if isinstance(exc.__context__, KeyboardInterrupt):
                        raise exc.__context__ from None
                    future.set_exception(exc)
                self._swap_in(update, future)

    def _swap_in(self, update: PolicyUpdate, built: Future) -> None:
        try:
            new = built.result()
        except Exception as exc:  # a verified but unusable policy (wrong spec) must not stop the robot
            self.rejected_policies += 1
            log.error("actor %s: policy version %d is unusable, keeping version %s: %s", self.actor_id,
                      update.version, self.policy.version if self.policy else "none (random actions)", exc)
            return
        if self.policy is not None:
            new.take_state(self.policy)
        self.policy = new
        self.sender.policy_version = new.version
        self.loaded_at[str(new.version)] = time.time()
        log.info("actor %s now acts with policy version %d", self.actor_id, new.version)

    # -- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> dict[str, int]:
        """Act until `max_steps` env steps (0 = until stopped), then spool the rest and drain."""
        obs, episode = self._new_episode(seed=self._seed + self.counters["episodes"])
        steps = 0
        log.info("actor %s streaming to %s (policy %s)", self.actor_id, self.endpoint, self.format)
        if self.config.transport.pace_actors:
            self._wait_for_learner(stop)
        try:
            while (stop is None or not stop.is_set()) and not (self.max_steps and steps >= self.max_steps):
                self._spool(self.chunks.add({**obs, "action": episode.action, "reward": np.float32(episode.reward)}),
                            episode.id, stop)
                self.sender.poll()
                if self._learner_finished():
                    break
                if obs["is_last"]:
                    self._end_episode(episode)
                    obs, episode = self._new_episode()
                    continue
                self._poll_policy()
                self._hold(stop, episode.id)  # a sim ahead of the train ratio, or with a full spool, pauses here
                if (stop is not None and stop.is_set()) or self._learner_finished():
                    break
                if self.policy is None:
                    episode.action = random_action(self.env.action_space, self.rng)
                else:
                    episode.action = self.policy.act(obs)
                try:
                    obs, episode.reward, _, _, info = self.env.step(episode.action)
                except DriverError as exc:
                    if not self._recover(exc, stop):
                        raise
                    obs, episode = self._new_episode()  # the interrupted episode stays as it is in replay
                    continue
                episode.diagnostics.add(info)
                episode.total += float(episode.reward)
                episode.length += 1
                steps += 1
                self.counters["steps_acted"] += 1  # env steps (monitoring; a crash loses the last few)
                if self.status.due():
                    self.write_status()
        finally:
            # a Ctrl-C inside _spool (say, during the chunk's fsync) left a spooled chunk uncounted
            self._count_uncounted_chunks(self.counters)
            self._spool(self.chunks.take(), episode.id, stop)
            self.drain()
        return {**self.counters, "learner_done": int(self.learner_done)}

    def _recover(self, exc: DriverError, stop: threading.Event | None) -> bool:
        """A robot fault mid-episode (stale sensors, a lost device): wait until the env recovers.

        Returns False when the env cannot recover (no `recover()`: a fault there is fatal),
        True once it has. Meanwhile the env's driver is in its safe mode (no commands), the
        experience link keeps draining and policies keep arriving.
        """
        recover = getattr(self.env.unwrapped, "recover", None)
        if not callable(recover):
            return False
        self.counters["faults"] += 1
        self.fault = str(exc)
        log.error("actor %s: %s; not commanding until the robot's sensors are fresh again", self.actor_id, exc)
        self.write_status()
        waited = time.monotonic()
        while not recover():
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            self._service()
            if time.monotonic() - waited > 10.0:
                log.warning("actor %s: still waiting for fresh sensor data", self.actor_id)
                waited = time.monotonic()
            time.sleep(0.05)
        log.warning("actor %s: sensors are fresh again; starting a new episode", self.actor_id)
        self.fault = ""
        self.write_status()
        return True

    def _new_episode(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], Episode]:
        """Reset the env: its first record carries the zero action and no reward."""
        obs, _ = self.env.reset(seed=seed)
        return obs, Episode(zero_action(self.env.action_space))

    def _end_episode(self, episode: Episode) -> None:
        self.counters["episodes"] += 1
        self._drop_logged = False  # full-spool drops are logged again in the next episode
        steps = self.counters["steps_spooled"] + len(self.chunks.rows)
        diagnostics = episode.diagnostics
        values = {"return": episode.total, "length": episode.length,
                  "policy_version": self.policy.version if self.policy else 0, **diagnostics.means()}
        try:
            self.metrics.write("episode", steps, values)
        except OSError as exc:  # a full disk must not stop the robot; the spool policy deals with the space
            log.warning("actor %s: could not write the episode record: %s", self.actor_id, exc)
        extra = "".join(f", {k} {v:.3f}" for k, v in diagnostics.means().items())
        log.info("actor %s episode %d: return %.1f%s", self.actor_id, self.counters["episodes"], episode.total, extra)

    def _wait_for_learner(self, stop: threading.Event | None) -> None:
        """With pacing on, the first step waits for the learner's first credit (later outages do not stop acting)."""
        if self.sender.credit is None:
            log.info("actor %s waiting for the learner at %s (transport.pace_actors)", self.actor_id, self.endpoint)
        since = told = time.monotonic()
        while self.sender.credit is None and (stop is None or not stop.is_set()):
            self._service()
            time.sleep(0.01)
            if time.monotonic() - told >= 30.0:  # a learner never started, or a wrong address, shows here
                told = time.monotonic()
                log.warning("actor %s: no answer from a learner at %s for %.0f s; is one running there "
                            "(transport.learner)? Ctrl-C stops this actor", self.actor_id, self.endpoint,
                            told - since)

    def drain(self) -> None:
        """Wait up to drain_timeout_s for the learner to ack what is spooled.

        After the learner said the run is over, wait as long as it still answers: it lingers
        (up to transport.done_linger_s) to take exactly these chunks.
        """
        deadline = time.monotonic() + self.config.transport.drain_timeout_s
        while self.sender.pending and (time.monotonic() < deadline
                                       or (self.learner_done and self.sender.learner_alive)):
            self.sender.poll()
            time.sleep(0.01)
        if self.learner_done and not self.sender.pending:
            # tell the finishing learner that this spool is empty, so it need not wait for us
            self.sender.heartbeat_now()
            end = time.monotonic() + 0.3  # the socket closes without linger: give the heartbeat time to leave
            while time.monotonic() < end:
                self.sender.poll()
                time.sleep(0.02)
        if self.sender.pending:
            log.warning("actor %s: %d chunks not yet acked stay in %s and are resent on the next start",
                        self.actor_id, self.sender.pending, self.sender.spool.directory)
        self.write_status()

    def close(self) -> None:
        self._builder.shutdown(wait=True, cancel_futures=True)
        self.metrics.close()
        self.sender.close()
        self.client.close()
        self.env.close()


def run_actor(config: Config, learner: str | None = None, policy: str | None = None,
              max_steps: int = 0, stop: threading.Event | None = None) -> dict[str, int]:
    actor = Actor(config, learner, policy, max_steps)
    try:
        return actor.run(stop)
    finally:
        actor.close()

