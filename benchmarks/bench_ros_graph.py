"""The robot's ROS 2 graph on this machine, per middleware backend: sensor-to-command latency
and the control rates it sustains. Prints one JSON object per (control rate, backend).

    MUJOCO_GL=egl python benchmarks/bench_ros_graph.py --rates 20 50 100 200 --seconds 20 --backends dds rclpy

Backends: `dds` (daydream's Cyclone DDS backend) and `rclpy` (rclpy on Fast DDS, from the
`ros` extra's wheels), measured one after the other for each rate, in one run, so their
figures are comparable.

Each rate runs `daydream launch a1_walk --sim --learner local` (the MuJoCo A1
robot_driver, the robot_actor with the ONNX policy once the learner has published one,
and a learner; tiny model) with `ros.command_type=trajectory`, so each command carries
the stamp of the observation it answers and the robot_driver records, per command,
ROS time at arrival minus that stamp: sensor sample taken -> published -> assembled by
the actor -> policy step -> command published -> received by the driver. Measured once
the actor acts with a learned policy, over `--seconds`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from daydream.runtime.local_run import REPO, free_port_pair, wait_until_true
from daydream.runtime.status import read_status


def measure(tmp: Path, rate: float, seconds: float, backend: str = "dds") -> dict[str, object]:
    logdir, port, domain = tmp / f"rate{rate:g}_{backend}", free_port_pair(), random.randint(100, 230)
    sets = [f"logdir={logdir}", "size=tiny", "threads=1", f"ros.domain_id={domain}", "ros.command_type=trajectory",
            f"ros.backend={backend}",
            f"ros.publish_hz={max(100.0, 2 * rate)}", f"robot.control_hz={rate}", "ros.status_every_s=0.5",
            f"transport.bind=tcp://127.0.0.1:{port}", "train.steps=0", "train.progress=false", "train.prefill=100",
            "replay.batch_size=4", "replay.batch_length=16", "train.train_ratio=16", "transport.publish_every=20",
            "transport.actor_id=bench", "robot.driver_args={start: standing}", "env.time_limit=400"]
    argv = [sys.executable, "-m", "daydream.cli", "launch", "a1_walk", "--sim", "--learner", "local", "--no-restart"]
    for item in sets:
        argv += ["--set", item]
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}  # loopback, for both DDS vendors
    with open(tmp / f"launch{rate:g}_{backend}.log", "wb") as out:
        launcher = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                                    env=env)
    driver = lambda: read_status(logdir / "ros" / "robot_driver")  # noqa: E731
    actor = lambda: read_status(logdir / "actors" / "bench")  # noqa: E731
    try:
        wait_until_true(lambda: actor().get("policy_version", 0) >= 1, 600, f"a policy at rate {rate}")
        time.sleep(2.0)  # the latency window then holds policy steps only
        d0, t0 = driver(), time.time()
        time.sleep(seconds)
        d1, t1 = driver(), time.time()
    finally:
        launcher.send_signal(signal.SIGINT)
        try:
            launcher.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
    dt = t1 - t0
    commands_per_s = (d1["commands"] - d0["commands"]) / dt
    latency = d1.get("latency", {})
    return {"bench": "ros_graph", "backend": backend, "control_hz": rate, "publish_hz": max(100.0, 2 * rate),
            "seconds": round(dt, 1),
            "commands_per_s": round(commands_per_s, 1), "sustained": commands_per_s >= 0.95 * rate,
            "latency_p50_ms": round(latency.get("p50_ms", float("nan")), 2),
            "latency_p99_ms": round(latency.get("p99_ms", float("nan")), 2),
            "latency_max_ms": round(latency.get("max_ms", float("nan")), 2), "latency_n": latency.get("n", 0),
            "driver_mode": d1["mode"], "watchdog_trips": d1["safety"]["watchdog_trips"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[20.0, 50.0, 100.0, 200.0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--backends", nargs="+", choices=["dds", "rclpy"], default=["dds", "rclpy"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for rate in args.rates:
            for backend in args.backends:
                print(json.dumps(measure(Path(tmp), rate, args.seconds, backend)), flush=True)


if __name__ == "__main__":
    main()
