"""The robot's graph end to end, sim only: `daydream launch a1_walk --sim --learner local`
starts the MuJoCo A1 robot_driver, the robot_actor (env bridge + ONNX actor) and a learner
as separate processes, talking over real DDS on loopback (daydream's Cyclone DDS backend,
or rclpy on Fast DDS with `--set ros.backend=rclpy`, or one of each) and ZMQ. A stock
rclpy node receives the actor's commands. Experience
reaches the learner and a new policy reaches the actor; a hung robot_actor makes the
driver's watchdog put the robot in its safe mode (seen in the sim's commands), and killed
it is restarted and commands again; killing the robot_driver makes the actor report stale
sensors and stop commanding; the launcher restarts it and the graph recovers."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from daydream.ros import messages as m
from daydream.ros.dds_backend import DdsNode
from daydream.ros.port import rclpy_available
from daydream.runtime.status import read_status
from processes import REPO, free_port_pair, stop_in_order, wait_for_learning_graph, wait_until_true

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]
PEER = Path(__file__).with_name("ros_stock_peer.py")


def stock_peer(spec: dict, domain: int) -> dict:
    """Run the stock rclpy node of `ros_stock_peer.py` on `domain` and return what it saw."""
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain)}
    done = subprocess.run([sys.executable, str(PEER), json.dumps(spec)], capture_output=True, text=True, env=env,
                          timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def graph_overrides(logdir, port: int, domain: int) -> list[str]:
    return [f"logdir={logdir}", "size=tiny", "threads=1", f"ros.domain_id={domain}", "ros.status_every_s=0.2",
            f"transport.bind=tcp://127.0.0.1:{port}", "train.steps=0", "train.progress=false", "train.prefill=40",
            "replay.batch_size=4", "replay.batch_length=16", "train.train_ratio=32", "train.log_every=100",
            "transport.chunk_length=20", "transport.publish_every=5", "transport.status_every_s=0.2",
            "transport.heartbeat_interval_s=0.2", "env.time_limit=100", "robot.driver_args={start: standing}",
            "transport.actor_id=robot"]


def loopback_env(monkeypatch) -> dict[str, str]:
    """Discovery on loopback for both DDS vendors (Fast DDS 3 honours ROS_AUTOMATIC_DISCOVERY_RANGE only)."""
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    monkeypatch.delenv("CYCLONEDDS_URI", raising=False)
    return dict(os.environ)


BACKENDS = ["dds", pytest.param("rclpy", marks=pytest.mark.skipif(
    not rclpy_available(), reason="rclpy cannot be imported: install the ros extra (Python 3.11) or source ROS 2"))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_launch_sim_graph_end_to_end_with_faults(tmp_path, monkeypatch, backend):
    logdir, port, domain = tmp_path / "graph", free_port_pair(), random.randint(100, 230)
    args = [sys.executable, "-m", "daydream.cli", "launch", "a1_walk", "--sim", "--learner", "local"]
    for item in graph_overrides(logdir, port, domain) + [f"ros.backend={backend}"]:
        args += ["--set", item]
    out = open(tmp_path / "launch.log", "wb")
    launcher = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                                env=loopback_env(monkeypatch))

    def logs(tail: int = 2500) -> str:
        parts = [(tmp_path / "launch.log").read_text(errors="replace")[-2000:]]
        for name in ("robot_driver", "robot_actor", "learner"):
            path = logdir / "ros" / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name}:\n" + path.read_text(errors="replace")[-tail:])
        # where each node stood (a stalled node's status stops changing: its time and tick count say so)
        parts.append(f"--- status (read at {time.time():.1f}): driver {read_status(logdir / 'ros' / 'robot_driver')}"
                     f"\nactor {read_status(actor_dir)}")
        return "\n".join(parts)

    # the launcher's record of its nodes' process ids (it rewrites it on a restart)
    node_pids = lambda: json.loads((logdir / "ros" / "pids.json").read_text())  # noqa: E731

    def wait(predicate, timeout: float, what: str) -> None:
        assert launcher.poll() is None, logs()
        try:
            wait_until_true(predicate, timeout, what)
        except AssertionError as exc:  # the logs and status as they are now, with the nodes' stacks
            with contextlib.suppress(OSError, ValueError):
                for pid in node_pids().values():
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGUSR1)
            time.sleep(1.0)
            raise AssertionError(f"{exc}\n{logs(tail=12000)}") from None

    actor_dir = logdir / "actors" / "robot"
    driver_status = lambda: read_status(logdir / "ros" / "robot_driver")  # noqa: E731
    stopped = None  # the pid of an actor the test has SIGSTOPped and not yet killed
    try:
        # experience reaches the learner, a learned policy reaches the actor, which commands the robot
        assert launcher.poll() is None, logs()
        wait_for_learning_graph(logdir, "robot", 60, 200, logs)
        if rclpy_available():
            # a stock ROS 2 node (rclpy on Fast DDS, stock QoS) receives the actor's commands and sees both nodes
            nodes = ["/robot/robot_driver", "/robot/robot_actor"]  # the DDS backend's via ros_discovery_info
            result = stock_peer({"subscribe": [["/robot/joint_commands", "std_msgs/msg/Float64MultiArray", "default"]],
                                 "seconds": 30, "until": 3, "nodes": nodes}, domain)
            assert result["topics"]["/robot/joint_commands"]["count"] >= 3
            assert len(result["topics"]["/robot/joint_commands"]["first"]["data"]) == 12
            assert set(nodes) <= set(result["nodes"]), result["nodes"]

        # the actor hangs (SIGSTOP: alive and silent, so the launcher has nothing to restart): the robot's watchdog
        # takes the actuators to damping and the sim's commands stop. A hang, not a death, first: a killed actor is
        # restarted at once, and the watchdog counts driver time, which a starved sim driver on a loaded CI box may
        # advance by less than its timeout before the new actor commands again (seen: 3 s without commands, no trip)
        pids = node_pids()
        before = driver_status()  # the driver's start, before any command, may have tripped the watchdog already
        trips, entries = before["safety"]["watchdog_trips"], before["driver"]["safe_mode_entries"]
        os.kill(pids["robot_actor"], signal.SIGSTOP)
        stopped = pids["robot_actor"]
        # the timeouts here are generous: a loaded CI box can stall every process for seconds; what is asserted is
        # order, not speed
        wait(lambda: driver_status()["safety"]["watchdog_trips"] > trips, 60, "the watchdog's safe mode")
        status = driver_status()
        assert status["mode"] == "damping" and status["driver"]["safe_mode_entries"] > entries, status
        time.sleep(0.6)
        later = driver_status()
        if status["ticks"] < later["ticks"]:  # no command reaches the sim's actuators while it damps
            assert later["mode"] == "damping" and later["driver"]["writes"] == status["driver"]["writes"], (status,
                                                                                                          later)

        # then it dies: the launcher restarts it, and its commands bring the robot back
        os.kill(stopped, signal.SIGKILL)
        stopped = None
        wait(lambda: driver_status()["mode"] == "active", 90, "the restarted actor commanding again")

        # the driver dies: the actor reports stale sensors and stops commanding
        with DdsNode("probe", "robot", domain_id=domain) as probe:
            commands: list[float] = []
            probe.create_subscription(m.Float64MultiArray, "joint_commands", lambda msg: commands.append(time.time()))
            stop = threading.Event()
            spinner = threading.Thread(target=probe.spin, args=(stop,), daemon=True)
            spinner.start()
            wait(lambda: len(commands) > 5, 20, "commands seen on /robot/joint_commands")
            pids = node_pids()
            os.kill(pids["robot_driver"], signal.SIGKILL)
            killed = time.time()
            wait(lambda: "old" in read_status(actor_dir).get("fault", ""), 60, "the actor's stale-sensor fault")
            faulted = time.time()
            time.sleep(0.5)
            assert not [t for t in commands if t > faulted + 0.05], "the actor kept commanding with stale sensors"
            assert killed < faulted
            stop.set()
            spinner.join(2)
        assert "stops commanding" in (logdir / "ros" / "robot_actor.log").read_text()

        # the restarted driver publishes again; the actor recovers and acts on
        wait(lambda: read_status(actor_dir).get("fault", "x") == "" and read_status(actor_dir)["faults"] >= 1, 90,
             "the actor recovering after the driver's restart")
    finally:
        if stopped is not None:  # a hung actor left by a failure: let it take its stop signal
            with contextlib.suppress(OSError):
                os.kill(stopped, signal.SIGCONT)
        # SIGTERM (systemd, docker stop) stops the graph in order like Ctrl-C does, orphaning nothing
        launcher.send_signal(signal.SIGTERM if backend == "rclpy" else signal.SIGINT)
        try:
            code = launcher.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            raise
        out.close()
    assert code == 0, logs()
    assert (logdir / "checkpoint.pt").exists()  # the learner stopped cleanly
    for pid in node_pids().values():  # no process left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.skipif(not rclpy_available(), reason="rclpy cannot be imported: install the ros extra (Python 3.11) "
                    "or source ROS 2")
def test_mixed_graph_driver_on_rclpy_actor_on_cyclone_dds(tmp_path, monkeypatch):
    """The robot_driver on rclpy (Fast DDS) and the robot_actor on daydream's Cyclone DDS backend learn together."""
    from daydream.ros.launch_plan import make_plan

    logdir, port, domain = tmp_path / "graph", free_port_pair(), random.randint(100, 230)
    plan = make_plan("a1_walk", graph_overrides(logdir, port, domain), sim=True, learner="local")
    backends = {"robot_driver": "rclpy", "robot_actor": "dds", "learner": "dds"}
    env = {**loopback_env(monkeypatch), "PYTHONUNBUFFERED": "1"}
    (logdir / "ros").mkdir(parents=True)
    procs = {}
    for p in plan.processes:
        with open(logdir / "ros" / f"{p.name}.log", "wb") as out:
            procs[p.name] = subprocess.Popen([*p.argv(sys.executable), "--set", f"ros.backend={backends[p.name]}"],
                                             stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)

    def logs() -> str:
        return "\n".join(f"--- {name}:\n" + (logdir / "ros" / f"{name}.log").read_text(errors="replace")[-2500:]
                         for name in procs)

    try:
        wait_for_learning_graph(logdir, "robot", 60, 200, logs)
    finally:
        codes = stop_in_order([(name, procs[name]) for name in ("robot_actor", "robot_driver", "learner")])
    assert codes["robot_actor"] == 0 and codes["robot_driver"] == 0, f"{codes}\n{logs()}"
    assert "Traceback" not in logs()
    assert (logdir / "checkpoint.pt").exists()  # the learner stopped cleanly
