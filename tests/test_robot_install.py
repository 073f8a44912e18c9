"""The slim robot install: a fresh venv with only the package's core dependencies (the robot set).

No torch, MuJoCo or dm_control there, yet the robot's side runs: `daydream launch` starts
the robot_driver and robot_actor nodes (on the Dynamixel arm's config, against the
emulated servo bus), and the ONNX actor streams experience to a learner running in the
full venv and acts with the policies it sends back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import yaml

from daydream.config import load_config
from daydream.drivers.dynamixel.emulator import EmulatedBus
from processes import REPO, free_port_pair, stop_in_order, wait_for_learning_graph

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

HEAVY = ("torch", "mujoco", "dm_control", "matplotlib", "tensorboard")


def robot_requirements() -> list[str]:
    """The core `dependencies` of pyproject.toml: the robot set."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


@pytest.fixture(scope="module")
def robot_python(tmp_path_factory) -> Path:
    """A venv with the robot set only, and the checkout on its path (what an editable install does: a .pth)."""
    venv = tmp_path_factory.mktemp("robot") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # pip of the test venv installs into the new one (it has no pip of its own: faster to make)
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile",
                           *robot_requirements()], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "daydream_checkout.pth").write_text(f"{REPO}\n")
    assert sysconfig.get_path("purelib") != purelib
    return python


def test_the_robot_set_has_no_torch_and_the_robot_path_imports_none_of_it(robot_python):
    missing = subprocess.run([str(robot_python), "-c", "import importlib.util as u; print([m for m in "
                              f"{HEAVY!r} if u.find_spec(m) is not None])"], capture_output=True, text=True)
    assert missing.stdout.strip() == "[]", f"the robot venv has {missing.stdout}"
    code = ("import sys, daydream.cli, daydream.ros.driver_node, daydream.ros.actor_node, daydream.runtime.actor, "
            "daydream.export.onnx_policy, daydream.envs.factory, daydream.drivers.dynamixel.arm; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    imported = subprocess.run([str(robot_python), "-c", code], capture_output=True, text=True, cwd="/")
    assert imported.returncode == 0 and imported.stdout.strip() == "[]", imported.stderr[-3000:] + imported.stdout


def test_the_robot_graph_runs_in_the_robot_venv_against_a_full_learner(robot_python, tmp_path):
    logdir, port = tmp_path / "arm", free_port_pair()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    env.pop("ROS_LOCALHOST_ONLY", None)
    with EmulatedBus(ids=[1, 2, 3, 4]) as bus:
        # the emulator is a process on a busy CI box: give it the time a real bus would not need
        driver_args = yaml.safe_dump({**load_config("dynamixel_arm").robot.driver_args, "port": bus.port,
                                      "usb_vid": None, "usb_pid": None, "timeout_s": 0.2},
                                     default_flow_style=True).strip()
        sets = [f"logdir={logdir}", "size=tiny", "threads=1", f"robot.driver_args={driver_args}",
                f"transport.bind=tcp://127.0.0.1:{port}", "transport.pace_actors=false", "train.steps=0",
                "train.progress=false", "train.prefill=40", "replay.batch_size=4", "replay.batch_length=16",
                "train.train_ratio=32", "transport.chunk_length=20", "transport.publish_every=5",
                "transport.status_every_s=0.2", "transport.heartbeat_interval_s=0.2", "env.time_limit=50",
                "ros.status_every_s=0.2", "transport.actor_id=arm", "ros.backend=dds"]
        args = [a for item in sets for a in ("--set", item)]
        with open(tmp_path / "learner.log", "wb") as out:  # the full venv: torch
            learner = subprocess.Popen([sys.executable, "-m", "daydream.cli", "learner", "--config", "dynamixel_arm",
                                        *args], stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        with open(tmp_path / "launch.log", "wb") as out:  # the robot venv: the two nodes, the ONNX actor
            launch = subprocess.Popen([str(robot_python), "-m", "daydream.cli", "launch", "dynamixel_arm",
                                       "--learner", f"tcp://127.0.0.1:{port}", "--no-restart", *args],
                                      stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)

        def logs() -> str:
            parts = [f"--- {p.name}:\n{p.read_text(errors='replace')[-2500:]}" for p in
                     [tmp_path / "learner.log", tmp_path / "launch.log", *sorted((logdir / "ros").glob("*.log"))]
                     if p.exists()]
            return "\n".join(parts)

        try:
            wait_for_learning_graph(logdir, "arm", 40, 240, logs)  # the robot venv's actor
        finally:
            codes = stop_in_order([("launch", launch), ("learner", learner)])
    assert codes["launch"] == 0, logs()
    assert "ModuleNotFoundError" not in logs() and "ImportError" not in logs(), logs()
    assert "onnx" in (logdir / "ros" / "robot_actor.log").read_text()
