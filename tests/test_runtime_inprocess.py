"""Actor and Learner in one process, with a fake env: their loops' logic (chunks, credit, policies,
episodes, faults, the end of a run) without the subprocesses of test_async*.py."""

from __future__ import annotations

import signal
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

from daydream.config import load_config
from daydream.drivers import DriverError
from daydream.envs.contract import flag_spaces, with_flags
from daydream.runtime.actor import Actor
from daydream.runtime.interrupts import stop_on_interrupt
from daydream.runtime.learner import Learner
from daydream.runtime.local_run import free_port_pair
from daydream.runtime.metrics import read_metrics

EPISODE = 25  # steps per episode of the fake env


class FakeEnv(gym.Env):
    """Pendulum's spaces under the env contract; episodes of EPISODE steps, reward 1 per step.

    `fault_at`: the env step (counted over its life) whose `step` raises DriverError once; with
    `recoverable`, the env has a `recover()` that succeeds on its second call, as a robot env does.
    """

    def __init__(self, fault_at: int | None = None, recoverable: bool = True) -> None:
        self.observation_space = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
                                                  **flag_spaces()})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.fault_at, self.steps, self.t, self.resets, self.recover_calls = fault_at, 0, 0, 0, 0
        if recoverable:
            self.recover = self._recover

    def _obs(self) -> dict[str, np.ndarray]:
        return {"state": np.full(3, self.t, np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.t = 0
        self.resets += 1
        return with_flags(self._obs(), True, False, False), {}

    def step(self, action):
        assert np.asarray(action).shape == (1,)
        if self.fault_at is not None and self.steps == self.fault_at:
            self.fault_at = None
            raise DriverError("sensor data is stale (fake)")
        self.steps += 1
        self.t += 1
        last = self.t >= EPISODE
        return with_flags(self._obs(), False, last, False), 1.0, False, last, {}

    def _recover(self) -> bool:
        self.recover_calls += 1
        return self.recover_calls >= 2


def config_for(tmp_path, port: int, *extra: str):
    return load_config("pendulum_tiny", [
        f"logdir={tmp_path}", f"transport.bind=tcp://127.0.0.1:{port}", f"transport.learner=tcp://127.0.0.1:{port}",
        "device=cpu", "threads=1", "replay.batch_size=4", "replay.batch_length=16", "train.prefill=64",
        "train.train_ratio=16", "train.progress=false", "train.log_every=50", "train.checkpoint_every=100",
        "transport.chunk_length=16", "transport.publish_every=4", "transport.status_every_s=0.2",
        "transport.heartbeat_interval_s=0.1", "transport.learner_timeout_s=2",
        "transport.policy_request_interval_s=0.05",
        "transport.drain_timeout_s=10", "transport.done_linger_s=20", "transport.actor_id=a0", *extra])


class Pair:
    """A learner and an actor (on a FakeEnv) in threads of this process, each with its own stop event."""

    def __init__(self, config, env: FakeEnv) -> None:
        self.learner, self.env = Learner(config), env
        self.actor = Actor(config, env=env)
        self.errors: list[BaseException] = []
        self.stops = {"learner": threading.Event(), "actor": threading.Event()}
        self.threads = {name: threading.Thread(target=self._run, args=(run, self.stops[name]), name=name)
                        for name, run in (("learner", self.learner.run), ("actor", self.actor.run))}
        for t in self.threads.values():
            t.start()

    def _run(self, run, stop: threading.Event) -> None:
        try:
            run(stop)
        except BaseException as exc:  # surfaced by join()
            self.errors.append(exc)

    def join(self, name: str, timeout: float) -> None:
        self.threads[name].join(timeout)
        assert not self.threads[name].is_alive(), f"the {name} did not stop"
        assert not self.errors, self.errors

    def close(self) -> None:
        for name, stop in self.stops.items():
            stop.set()
            self.threads[name].join(30)
        self.actor.close()
        self.learner.close()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def check_records(pair: Pair, tmp_path) -> None:
    """What holds for any run that ended with the actor's spool drained into the learner's replay."""
    learner, actor, env = pair.learner, pair.actor, pair.env
    assert actor.sender.pending == 0
    # every step the actor spooled reached the learner's replay, once
    assert learner.received_steps == actor.counters["steps_spooled"] == len(learner.replay)
    # one record per reset and per env step (the loop ended after recording); episodes of EPISODE steps
    episodes = actor.counters["episodes"]
    assert actor.counters["steps_spooled"] == actor.counters["steps_acted"] + env.resets
    assert episodes == env.resets - 1 and actor.counters["steps_acted"] // EPISODE in (episodes, episodes + 1)
    records = read_metrics(actor.dir / "metrics.jsonl", "episode")
    assert len(records) == episodes and all(r["return"] == EPISODE and r["length"] == EPISODE for r in records)
    learned = read_metrics(tmp_path / "metrics.jsonl", "episode")
    assert all(r["return"] == EPISODE and r["length"] == EPISODE for r in learned)


@pytest.mark.timeout(300)
def test_actor_and_learner_trade_chunks_and_policies_in_one_process(tmp_path):
    pair = Pair(config_for(tmp_path, free_port_pair(), "train.steps=0"), FakeEnv())
    try:
        learner, actor = pair.learner, pair.actor
        wait_for(lambda: actor.policy is not None or pair.errors, 180, "the actor to act with a published policy")
        wait_for(lambda: not learner._episodes.empty() or pair.errors, 60, "a whole episode at the learner")
        pair.stops["actor"].set()  # the actor first: it drains its spool into the running learner
        pair.join("actor", 60)
        pair.stops["learner"].set()
        pair.join("learner", 60)
        assert learner.agent.updates >= 1 and 1 <= actor.policy.version <= learner.policy_version
        assert actor.counters["steps_spooled"] >= EPISODE
        check_records(pair, tmp_path)
        train = read_metrics(tmp_path / "metrics.jsonl", "train")
        assert train and all(r["updates_per_s"] >= 0 and "received_steps_per_s" in r for r in train)
    finally:
        pair.close()


@pytest.mark.timeout(300)
def test_a_paced_run_ends_at_train_steps_and_the_actor_stops_drained(tmp_path):
    pair = Pair(config_for(tmp_path, free_port_pair(), "train.steps=150"), FakeEnv())
    try:
        pair.join("learner", 240)
        pair.join("actor", 60)
        learner, actor = pair.learner, pair.actor
        # the learner reached train.steps, trained on the way, and told the actor, which stopped drained
        assert learner.done and learner.received_steps >= 150 and learner.agent.updates >= 1
        assert actor.learner_done
        check_records(pair, tmp_path)
    finally:
        pair.close()


@pytest.mark.timeout(300)
def test_a_paced_actor_that_first_reaches_a_finished_learner_hears_that_the_run_is_over(tmp_path):
    """The run ends while a second paced actor has not reached the learner yet (it starts late, or
    the learner raced through steps that robots had spooled): the learner lingers at least
    `learner_timeout_s`, so that actor hears the run is over instead of waiting on for it."""
    port, common = free_port_pair(), ("train.steps=150", "transport.learner_timeout_s=10")
    pair = Pair(config_for(tmp_path, port, *common), FakeEnv())
    late = Actor(config_for(tmp_path, port, *common, "transport.actor_id=late"), env=FakeEnv())
    late_stop, late_result = threading.Event(), {}
    late_thread = threading.Thread(target=lambda: late_result.update(late.run(late_stop)), name="late")
    try:
        wait_for(lambda: pair.learner.done or pair.errors, 240, "the learner to reach train.steps")
        pair.join("actor", 60)  # the first actor heard it and stopped drained
        time.sleep(1.0)  # past the old minimum linger (two heartbeats + 0.5 s), within learner_timeout_s
        late_thread.start()
        late_thread.join(60)
        assert not late_thread.is_alive(), "the late actor still waits for a learner that has finished"
        assert late.learner_done and late_result["learner_done"] == 1
        pair.join("learner", 60)
        assert pair.learner.received_steps == pair.actor.counters["steps_spooled"] + late.counters["steps_spooled"]
    finally:
        late_stop.set()
        if late_thread.is_alive():
            late_thread.join(30)
        late.close()
        pair.close()


def test_a_robot_actor_waits_out_a_fault_and_starts_a_new_episode(tmp_path):
    """No learner at all: a robot (unpaced) acts, spools, and recovers from a driver fault."""
    config = config_for(tmp_path, free_port_pair(), "transport.pace_actors=false", "transport.drain_timeout_s=0.2")
    env = FakeEnv(fault_at=30)
    actor = Actor(config, max_steps=60, env=env)
    try:
        result = actor.run()
    finally:
        actor.close()
    assert result["faults"] == 1 and env.recover_calls == 2 and actor.fault == ""
    assert result["steps_acted"] == 60 and actor.policy is None  # random actions: no learner, no policy
    # episodes: 25 steps, 5 steps cut by the fault (not an episode end), then 25 + 5 more
    assert result["episodes"] == 2 and env.resets == 4
    # a record per reset and per step, but the last step's (the loop ends at max_steps before recording it)
    assert result["steps_spooled"] == 60 + env.resets - 1 and actor.sender.pending > 0  # nobody acked them


def test_an_actor_whose_env_cannot_recover_raises_the_fault(tmp_path):
    config = config_for(tmp_path, free_port_pair(), "transport.pace_actors=false", "transport.drain_timeout_s=0.2")
    actor = Actor(config, max_steps=60, env=FakeEnv(fault_at=3, recoverable=False))
    try:
        with pytest.raises(DriverError, match="stale"):
            actor.run()
    finally:
        actor.close()
    assert actor.counters["steps_spooled"] == 4  # the reset record and 3 steps, spooled on the way out


class InterruptSwallowingEnv(FakeEnv):
    """Ctrl-C arrives during step `at`, inside a library that swallows the KeyboardInterrupt (as C++ extensions
    that run Python's signal check in their own calls can)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def step(self, action):
        if self.steps == self.at:
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                pass
        return super().step(action)


def test_ctrl_c_stops_the_actor_even_where_a_library_swallows_the_keyboard_interrupt(tmp_path):
    """`daydream actor`'s handlers: SIGINT raises KeyboardInterrupt (blocking waits end at once) and sets the
    stop event, so an interrupt lost inside a library still ends the loop after that step, drained as usual."""
    config = config_for(tmp_path, free_port_pair(), "transport.pace_actors=false", "transport.drain_timeout_s=0.2")
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop = stop_on_interrupt()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert stop.is_set()
        stop.clear()
        actor = Actor(config, max_steps=200, env=InterruptSwallowingEnv(at=30))
        try:
            result = actor.run(stop)
        finally:
            actor.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert stop.is_set()
    # the interrupted step completes, no step after it; a record per reset and per step, spooled, but the last
    # step's (the loop ends before recording it, as at max_steps)
    assert result["steps_acted"] == 31 and result["steps_spooled"] == 31 + actor.env.resets - 1
