"""The A1's graph: `ros2 launch daydream a1_walk.launch.py [sim:=true] [learner:=local|tcp://HOST:PORT]
[config:=PATH] [overrides:='key=value;key=value']`.

Which processes run, with which arguments, is daydream's launch plan
(`daydream.ros.launch_plan.make_plan`), computed from the YAML config: the plan that
`daydream launch a1_walk` runs without ROS 2. This file only turns it into launch actions,
so the two launchers cannot drift apart. See docs/ros2.md.
"""

import sys
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction

CONFIG_FILE = "a1_walk.yaml"
# ros2 launch sends SIGINT, then SIGTERM after this long (its default, 5 s, would cut short
# the actor draining its experience and the learner writing its checkpoint)
STOP_TIMEOUT_S = "60"
RESPAWN_DELAY_S = 1.0  # seconds before a process that exited is started again


def default_config() -> str:
    """The installed share/daydream/configs/a1_walk.yaml, else (run from a checkout) the repository's."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return str(Path(get_package_share_directory("daydream")) / "configs" / CONFIG_FILE)
    except (ImportError, LookupError):  # PackageNotFoundError is a KeyError
        return str(Path(__file__).resolve().parents[1] / "configs" / CONFIG_FILE)


def respawn_arguments(actions) -> dict:
    """Restart a process that exits, at most `MAX_RESTARTS` times, as `daydream launch` does.

    `respawn_max_retries` came with launch 3 (Jazzy); an older launch (Humble) could only
    respawn without a limit, so there a dead process stays dead (and the robot's watchdog
    or the actor's staleness check makes the robot safe).
    """
    import inspect

    from daydream.runtime.launcher import MAX_RESTARTS

    local = getattr(actions, "ExecuteLocal", None)
    if local is None or "respawn_max_retries" not in inspect.signature(local.__init__).parameters:
        print("a1_walk.launch.py: this launch version cannot limit respawns; processes that exit are not restarted",
              file=sys.stderr)
        return {}
    return {"respawn": True, "respawn_delay": RESPAWN_DELAY_S, "respawn_max_retries": MAX_RESTARTS}


def plan_to_actions(plan, actions, ros_actions) -> list:
    """The plan's processes as launch actions (`actions`: launch.actions, `ros_actions`: launch_ros.actions)."""
    from daydream.ros.launch_plan import PACKAGE

    respawn = respawn_arguments(actions)
    out = []
    for p in plan.processes:
        if p.ros_node:
            out.append(ros_actions.Node(package=PACKAGE, executable=p.executable, name=p.name,
                                        namespace=p.namespace or None, arguments=list(p.arguments), output="screen",
                                        sigterm_timeout=STOP_TIMEOUT_S, **respawn))
        else:  # the learner: a plain process in the Python running ros2 launch (daydream is installed there)
            out.append(actions.ExecuteProcess(cmd=p.argv(sys.executable), name=p.name, output="screen",
                                              sigterm_timeout=STOP_TIMEOUT_S, **respawn))
    return out


def parse_bool(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"launch argument {name}:={value!r} must be true or false")
    return text in ("true", "1", "yes")


def launch_setup(context, *args, **kwargs) -> list:
    import launch.actions
    import launch_ros.actions
    from daydream.ros.launch_plan import make_plan

    conf = context.launch_configurations
    overrides = [item.strip() for item in conf.get("overrides", "").split(";") if item.strip()]
    plan = make_plan(conf["config"], overrides, sim=parse_bool(conf["sim"], "sim"), learner=conf["learner"] or None)
    return plan_to_actions(plan, launch.actions, launch_ros.actions)


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("sim", default_value="false",
                              description="true: the robot_driver runs the MuJoCo A1 instead of the config's driver"),
        DeclareLaunchArgument("learner", default_value="",
                              description="the learner: '' (the config's transport.learner), 'local' (start one "
                                          "here) or tcp://HOST:PORT"),
        DeclareLaunchArgument("config", default_value=default_config(), description="the robot's YAML config"),
        DeclareLaunchArgument("overrides", default_value="",
                              description="config overrides for every process, 'key=value;key=value'"),
        OpaqueFunction(function=launch_setup),
    ])
