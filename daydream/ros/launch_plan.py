"""The launch plan: which processes make up a robot's graph, computed from the YAML config.

One plan serves both launchers: `ros2 launch daydream a1_walk.launch.py` turns it into
`launch_ros` actions (the launch file stays a thin adapter), and `daydream launch
a1_walk` runs it as plain processes over the DDS backend, without ROS 2.

The graph: `robot_driver` (the robot's driver behind the safety layer, publishing its
sensors) and `robot_actor` (env bridge + ONNX actor, streaming to a learner) as ROS 2
nodes, plus, with `learner="local"`, a `daydream learner` process on this machine (on a
robot the learner usually runs on a GPU workstation: `learner="tcp://HOST:PORT"`).
Every process reads the same config file with the same overrides.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from daydream.config import Config, load_config, resolve_config_path
from daydream.drivers import SimulatedDriver, driver_class
from daydream.transport.endpoints import check_endpoint, local_connect_address

log = logging.getLogger(__name__)

PACKAGE = "daydream"
SIM_DRIVER = "mujoco_a1"
# executables the ROS 2 package installs (lib/daydream/<name>) and the module each runs
EXECUTABLES = {"robot_driver": "daydream.ros.driver_node", "robot_actor": "daydream.ros.actor_node"}


@dataclasses.dataclass(frozen=True)
class ProcessPlan:
    name: str                    # node (or process) name
    executable: str              # ROS 2 nodes: the package's executable; the learner: "daydream"
    module: str                  # what `python -m` runs for it
    arguments: tuple[str, ...]   # command-line arguments after the executable / module
    ros_node: bool               # False: a plain process (the learner)
    namespace: str = ""

    def argv(self, python: str) -> list[str]:
        """The command `daydream launch` runs for this process."""
        return [python, "-m", self.module, *self.arguments]


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    config_path: Path
    overrides: tuple[str, ...]
    sim: bool
    learner: str | None          # the actor's learner address; None: transport.learner of the config
    processes: tuple[ProcessPlan, ...]

    def process(self, name: str) -> ProcessPlan:
        for p in self.processes:
            if p.name == name:
                return p
        raise KeyError(f"no process {name!r} in this plan; it has {[p.name for p in self.processes]}")


def make_plan(config: str | Path, overrides: list[str] | tuple[str, ...] = (), sim: bool = False,
              learner: str | None = None, backend: str | None = None) -> LaunchPlan:
    """The plan for `config` (a path or a name under configs/) with `--set` overrides.

    `sim`: the robot_driver runs the MuJoCo A1 instead of the config's driver.
    `learner`: None (the config's `transport.learner`), "local" (start one here) or tcp://HOST:PORT.
    `backend`: force `ros.backend` (`daydream launch` uses dds).
    """
    path = resolve_config_path(config).resolve()
    sets = list(overrides)
    if sim:
        sets.append(f"robot.driver={SIM_DRIVER}")
    if backend is not None:
        sets.append(f"ros.backend={backend}")
    # a robot's control loop never waits for the learner (it runs in real time, simulated or not)
    sets.append("transport.pace_actors=false")
    resolved = load_config(path, sets)
    _check(resolved, sim)
    common = ("--config", str(path), *(a for item in sets for a in ("--set", item)))
    processes = [ProcessPlan("robot_driver", "robot_driver", EXECUTABLES["robot_driver"], common, True,
                             resolved.ros.namespace),
                 ]
    actor_args = list(common)
    if learner == "local":
        address = local_connect_address(resolved.transport.bind)
        # --resume: a restarted (or relaunched) learner continues its run; with no checkpoint yet it starts afresh
        processes.append(ProcessPlan("learner", "daydream", "daydream.cli", ("learner", *common, "--resume"), False))
        actor_args += ["--learner", address]
    elif learner is not None:
        actor_args += ["--learner", check_endpoint(learner, "learner")]
    processes.append(ProcessPlan("robot_actor", "robot_actor", EXECUTABLES["robot_actor"], tuple(actor_args), True,
                                 resolved.ros.namespace))
    return LaunchPlan(path, tuple(sets), sim, learner, tuple(processes))


def _check(config: Config, sim: bool) -> None:
    if config.env.backend != "robot":
        raise ValueError(f"a robot graph needs env.backend: robot; this config has {config.env.backend!r}")
    simulated = issubclass(driver_class(config.robot.driver), SimulatedDriver)
    if simulated and not sim:
        log.warning("robot.driver %s is a simulator: the graph drives the simulated robot (pass sim:=true to say "
                    "so, or set robot.driver to your hardware's driver)", config.robot.driver)
