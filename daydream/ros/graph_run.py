"""`daydream launch CONFIG`: a launch plan run as plain processes, without ROS 2.

The nodes talk over the Cyclone DDS backend (ROS 2 wire-compatible, so `ros2 topic
echo` on the same network and domain sees them); the learner, when the plan has one,
over ZMQ as always. Each process logs to `<logdir>/ros/<name>.log`, and
`<logdir>/ros/pids.json` names their process ids (for monitoring and fault drills).

A process that fails is restarted (a robot_driver that crashed should come back, and
the actor recovers once its sensors are fresh), up to `launcher.MAX_RESTARTS` times; one
that exits 0 finished on purpose (the learner's run is over) and is not. Ctrl-C
stops the actor first (it spools and drains its experience), then the driver (its
actuators go to their safe mode on close), then the learner (it checkpoints).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path

from daydream.atomic import atomic_write_bytes
from daydream.config import load_config
from daydream.ros.launch_plan import LaunchPlan
from daydream.runtime.launcher import Child

log = logging.getLogger(__name__)

STOP_ORDER = ("robot_actor", "robot_driver", "learner")


class GraphRun:
    def __init__(self, plan: LaunchPlan, restart: bool = True) -> None:
        self.plan = plan
        config = load_config(plan.config_path, list(plan.overrides))
        self.dir = Path(config.logdir) / "ros"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.restart = restart
        self.drain_timeout_s = config.transport.drain_timeout_s
        self.children = {p.name: Child(p.name, p.argv(sys.executable), self.dir / f"{p.name}.log")
                         for p in plan.processes}

    def run(self) -> int:
        # the learner first (actors retry until it is up anyway), then the robot, then its actor
        for name in ("learner", "robot_driver", "robot_actor"):
            if name in self.children:
                self.children[name].start()
        self._write_pids()
        log.info("launched %s; logs in %s", ", ".join(self.children), self.dir)
        try:
            while True:
                time.sleep(0.5)
                if any([c.restart_if_exited(self.restart) for c in self.children.values()]):
                    self._write_pids()
                if all(c.process.poll() is not None for c in self.children.values()):
                    log.error("every process of the graph has exited")
                    return 1
        except KeyboardInterrupt:
            log.warning("stopping: the actor first (it drains), then the driver (safe mode), then the learner")
        self.stop()
        return 0

    def _write_pids(self) -> None:
        pids = {name: c.process.pid for name, c in self.children.items() if c.process is not None}
        atomic_write_bytes(self.dir / "pids.json", json.dumps(pids).encode())

    def stop(self) -> None:
        try:
            for name in STOP_ORDER:
                child = self.children.get(name)
                if child is not None:
                    child.signal(signal.SIGINT)
                    child.wait(self.drain_timeout_s + 30)
        except KeyboardInterrupt:
            log.warning("second interrupt: killing every process of the graph")
            for child in self.children.values():
                child.signal(signal.SIGKILL)
                if child.process is not None:
                    child.process.wait()
