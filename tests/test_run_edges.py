"""The edges of an asynchronous run, as real processes on loopback.

* The end of a run: a learner that reaches train.steps tells its actors; a sim actor drains
  and exits 0, a robot stops or (on_learner_done: keep_acting) acts on without spooling;
  the replay holds every step the actors spooled; resuming the finished run says so and
  how to extend it.
* Pacing without a learner: a sim actor whose learner is stopped (SIGSTOP) or killed
  (SIGKILL) takes no step beyond the learner's last credit, which is at most the slack
  past the train ratio, and goes on when the learner is back.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from processes import (REPO, actor, actor_status, fast_overrides, free_port_pair, learner, learner_status,
                       replay_steps, spooled_steps, wait_until)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.timeout(600)
def test_finished_learner_tells_its_actors_and_resume_says_how_to_extend(tmp_path):
    logdir, port = tmp_path / "run", free_port_pair()
    # an unpaced robot may have spooled far more than train.steps when the run ends: on a loaded machine its
    # drain can take longer than the usual test timeouts, and this test is about what happens, not how fast
    # learner_timeout_s is also the learner's least linger: the paced sim, still waiting for its first
    # credit when the learner races through what the robots spooled, reaches it within that time
    overrides = fast_overrides(logdir, port, "train.steps=600", "transport.done_linger_s=150",
                               "transport.drain_timeout_s=150", "transport.learner_timeout_s=5")
    # robots act unpaced: longer chunks keep the learner's per-chunk writes ahead of them
    robot = [*overrides, "transport.pace_actors=false", "transport.chunk_length=128"]
    lrn = learner(tmp_path, overrides)
    sim = actor(tmp_path, overrides, "sim")
    stopper = actor(tmp_path, [*robot, "transport.on_learner_done=stop"], "robot-stop")
    keeper = actor(tmp_path, [*robot, "transport.on_learner_done=keep_acting"], "robot-keep")
    ids = ("sim", "robot-stop", "robot-keep")
    try:
        # the learner ends by itself, once every actor has heard that the run is over with an empty spool
        wait_until(lambda: not lrn.alive(), 300, "the learner to finish its train.steps", sim, stopper, keeper)
        assert lrn.process.returncode == 0, lrn.log()
        assert sim.process.wait(60) == 0, sim.log()  # a sim drains and exits 0
        assert stopper.process.wait(60) == 0, stopper.log()  # so does a robot told to stop
        assert "the learner finished the run" in sim.log_path.read_text()
        # the keep_acting robot acts on, on its last policy, spooling nothing
        unspooled = actor_status(logdir, "robot-keep")["steps_unspooled"]
        wait_until(lambda: actor_status(logdir, "robot-keep")["steps_unspooled"] > unspooled + 64, 60,
                   "the keep_acting robot to act on without spooling", keeper)
        status = actor_status(logdir, "robot-keep")
        assert keeper.alive() and status["unspooled"] and status["learner_done"]
        for actor_id in ids:
            assert actor_status(logdir, actor_id)["pending_chunks"] == 0, actor_id
        assert learner_status(logdir)["done"] is True
        # every step spooled by any actor is in the replay
        assert replay_steps(logdir) == spooled_steps(logdir, *ids) >= 600

        args = [sys.executable, "-m", "daydream.cli", "learner", "--config", "pendulum_tiny", "--resume"]
        for item in overrides:
            args += ["--set", item]
        out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "already finished" in out.stdout and "--set train.steps=" in out.stdout, out.stdout
        assert keeper.alive() and actor_status(logdir, "robot-keep")["unspooled"]
        assert keeper.stop() in (0, 130), keeper.log()
    finally:
        for p in (lrn, sim, stopper, keeper):
            if p.alive():
                p.kill()
    assert replay_steps(logdir) == spooled_steps(logdir, *ids)


def assert_holds_at_last_credit(logdir, actor_id: str, slack: int, proc) -> None:
    """The actor waits on credit with its learner unreachable: no step past the last credit, and none while waiting."""
    wait_until(lambda: (s := actor_status(logdir, actor_id)).get("waiting") == "credit" and not s["learner_alive"],
               60, "the sim actor to wait for the absent learner", proc)
    first = actor_status(logdir, actor_id)
    # the last credit is at most the slack past the train ratio (+ one update's worth of steps, + 1 for rounding)
    assert first["credit_granted"] <= slack + 4 + 1, first
    # no record past the credit, but an episode's reset observation (recorded without a step)
    assert 0 <= first["steps_since_credit"] <= max(first["credit_granted"], 0) + 1, first
    wait_until(lambda: actor_status(logdir, actor_id)["time"] > first["time"] + 1.0, 30, "a later status", proc)
    later = actor_status(logdir, actor_id)
    assert later["waiting"] == "credit"
    assert (later["steps_spooled"], later["steps_since_credit"]) == (first["steps_spooled"],
                                                                     first["steps_since_credit"])


def test_paced_actor_waits_while_its_learner_is_stopped_or_killed(tmp_path):
    logdir, port = tmp_path / "run", free_port_pair()
    overrides = fast_overrides(logdir, port)  # pace_actors true (a sim); slack 64; 4 env steps per update
    lrn = learner(tmp_path, overrides)
    sim = actor(tmp_path, overrides, "sim")
    try:
        wait_until(lambda: learner_status(logdir).get("received_steps", 0) >= 200, 150, "training to start", lrn, sim)
        lrn.signal(signal.SIGSTOP)
        assert_holds_at_last_credit(logdir, "sim", 64, sim)
        lrn.signal(signal.SIGCONT)
        stopped_at = actor_status(logdir, "sim")["steps_spooled"]
        wait_until(lambda: actor_status(logdir, "sim")["steps_spooled"] > stopped_at + 64, 90,
                   "the sim actor to go on once the learner runs again", lrn, sim)
        lrn.kill()
        assert_holds_at_last_credit(logdir, "sim", 64, sim)
        killed_at = actor_status(logdir, "sim")["steps_spooled"]
        lrn = learner(tmp_path, overrides, "--resume", name="learner2")
        wait_until(lambda: actor_status(logdir, "sim")["steps_spooled"] > killed_at + 64, 120,
                   "the sim actor to go on with the restarted learner", lrn, sim)
        assert sim.stop() in (0, 130), sim.log()
        assert actor_status(logdir, "sim")["pending_chunks"] == 0
        assert lrn.stop() in (0, 130), lrn.log()
    finally:
        lrn.signal(signal.SIGCONT)
        for p in (lrn, sim):
            if p.alive():
                p.kill()
    assert spooled_steps(logdir, "sim") == replay_steps(logdir)
