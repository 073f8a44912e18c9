"""The ROS 2 package (ros2_ws/src/daydream), the launch file and the launch plan, without ROS 2.

ROS 2 is not installed where these run, so the package is checked the way colcon and
launch_ros will read it: package.xml through catkin_pkg; CMakeLists.txt's install rules
parsed here (every executable a launch plan names must land in lib/daydream, where
launch_ros looks, and run the module the plan says); the launch file loaded with fake
`launch` / `launch_ros` modules that record what it builds. The launch plan itself is
tested for every robot config.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

from daydream.config import ConfigError, config_dir, load_config
from daydream.ros import topics
from daydream.ros.launch_plan import EXECUTABLES, PACKAGE, SIM_DRIVER, make_plan
from daydream.ros.node_main import node_parser
from daydream.runtime.launcher import MAX_RESTARTS

REPO = Path(__file__).resolve().parents[1]
PKG_DIR = REPO / "ros2_ws" / "src" / "daydream"
LAUNCH_FILE = REPO / "launch" / "a1_walk.launch.py"
LEARNERS = (None, "local", "tcp://10.0.0.2:5555")


def robot_configs() -> list[str]:
    """Every task config that describes a robot graph (env.backend: robot)."""
    names = [p.stem for p in sorted(config_dir().glob("*.yaml")) if p.stem != "defaults"]
    return [n for n in names if load_config(n).env.backend == "robot"]


ROBOT_CONFIGS = robot_configs()


def test_there_is_a_robot_config():
    assert "a1_walk" in ROBOT_CONFIGS


# -- CMakeLists.txt, read as colcon's cmake would ------------------------------------------------


def cmake_commands(path: Path) -> list[tuple[str, list[str]]]:
    """(command, arguments) of every command in a CMakeLists (no nested parentheses, as here)."""
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    return [(m.group(1).lower(), shlex.split(m.group(2))) for m in re.finditer(r"(\w+)\s*\(([^()]*)\)", text)]


def cmake_installs(path: Path) -> list[tuple[str, list[str], str, list[str]]]:
    """The install() rules: (kind, sources, destination, options), variables expanded, sources absolute."""
    variables = {"CMAKE_CURRENT_SOURCE_DIR": str(path.parent)}

    def expand(word: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], word)

    rules = []
    for command, args in cmake_commands(path):
        if command == "project":
            variables["PROJECT_NAME"] = args[0]
        elif command == "set":
            variables[args[0]] = expand(" ".join(args[1:]))
        elif command == "install":
            args = [expand(a) for a in args]
            kind, rest = args[0], args[1:]
            i = rest.index("DESTINATION")
            sources = [str(path.parent / s) if not os.path.isabs(s) else s for s in rest[:i]]
            rules.append((kind, sources, rest[i + 1], rest[i + 2:]))
    return rules


INSTALLS = cmake_installs(PKG_DIR / "CMakeLists.txt")


def installed_programs() -> dict[str, Path]:
    """Executable name in lib/daydream -> its source file."""
    return {Path(src).name: Path(src) for kind, sources, dest, _ in INSTALLS if kind == "PROGRAMS"
            and dest == f"lib/{PACKAGE}" for src in sources}


def installed_directory(dest: str) -> tuple[Path, list[str]]:
    """The source folder installed into `dest` and its FILES_MATCHING patterns (empty: everything)."""
    for kind, sources, destination, options in INSTALLS:
        if kind == "DIRECTORY" and destination == dest:
            assert len(sources) == 1 and sources[0].endswith("/"), \
                f"install(DIRECTORY {sources}) must name one folder with a trailing / (its contents, not the folder)"
            patterns = [options[i + 1] for i, o in enumerate(options) if o == "PATTERN"]
            return Path(sources[0]).resolve(), patterns
    raise AssertionError(f"CMakeLists.txt installs nothing into {dest}")


# -- (a) package.xml ---------------------------------------------------------------------------


def test_package_xml_validates():
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(PKG_DIR))
    warnings: list[str] = []
    pkg.validate(warnings=warnings)
    assert warnings == []
    assert pkg.package_format == 3
    assert pkg.name == PACKAGE == "daydream"
    assert pkg.get_build_type() == "ament_cmake"
    assert [d.name for d in pkg.buildtool_depends] == ["ament_cmake"]
    assert [lic for lic in pkg.licenses] == ["Apache-2.0"]
    assert pkg.maintainers and all(m.email for m in pkg.maintainers)
    # one version for the Python package and the ROS 2 package
    assert pkg.version == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_package_xml_depends_on_every_message_package_the_topics_use():
    from catkin_pkg.package import parse_package

    exec_depends = {d.name for d in parse_package(str(PKG_DIR)).exec_depends}
    message_packages = {t.type.split("/")[0] for t in topics.ALL_TOPICS} | {"builtin_interfaces"}  # header stamps
    assert message_packages <= exec_depends
    assert {"rclpy", "launch", "launch_ros", "ament_index_python"} <= exec_depends
    assert {"std_srvs", "rcl_interfaces"} <= exec_depends  # ~/clear_estop (Trigger), /rosout (Log)


# -- (b) executables -----------------------------------------------------------------------------


@pytest.mark.parametrize("config", ROBOT_CONFIGS)
@pytest.mark.parametrize("sim", [False, True])
@pytest.mark.parametrize("learner", LEARNERS)
def test_every_executable_of_a_plan_is_installed(config, sim, learner):
    programs = installed_programs()
    plan = make_plan(config, sim=sim, learner=learner)
    nodes = [p for p in plan.processes if p.ros_node]
    assert {p.name for p in nodes} == {"robot_driver", "robot_actor"}
    for p in nodes:
        assert p.executable in programs, f"{p.executable} is not installed into lib/{PACKAGE} by CMakeLists.txt"
        script = programs[p.executable]
        assert script.is_file() and os.access(script, os.X_OK), f"{script} must exist and be executable"
        assert p.module == EXECUTABLES[p.executable]
        text = script.read_text()
        assert text.startswith("#!/usr/bin/env python3\n")
        assert f"from {p.module} import main" in text, f"{script} does not run {p.module}"


def test_every_known_executable_is_installed_and_nothing_else():
    assert set(installed_programs()) == set(EXECUTABLES)


@pytest.mark.parametrize("executable", sorted(EXECUTABLES))
def test_script_without_daydream_says_what_to_install(executable):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # -S: no site-packages, so no daydream (as in a ROS 2 Python it was never pip-installed into)
    result = subprocess.run([sys.executable, "-S", str(PKG_DIR / "scripts" / executable)], capture_output=True,
                            text=True, env=env, cwd="/", timeout=30)
    assert result.returncode == 1
    assert "daydream Python package is not installed" in result.stderr and "pip install" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("executable", sorted(EXECUTABLES))
def test_script_runs_its_node(executable):
    result = subprocess.run([sys.executable, str(PKG_DIR / "scripts" / executable), "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout and executable in result.stdout


# -- (c) launch/ and configs/ ----------------------------------------------------------------------


def test_launch_files_and_configs_are_installed():
    launch_dir, launch_patterns = installed_directory(f"share/{PACKAGE}/launch")
    assert launch_dir == REPO / "launch"
    configs_dir, config_patterns = installed_directory(f"share/{PACKAGE}/configs")
    assert configs_dir == REPO / "configs"

    def installed(folder: Path, patterns: list[str]) -> set[str]:
        return {p.name for p in folder.iterdir() if p.is_file()
                and (not patterns or any(fnmatch.fnmatch(p.name, pat) for pat in patterns))}

    assert LAUNCH_FILE.name in installed(launch_dir, launch_patterns)
    # defaults.yaml too: the installed configs are a complete config folder
    assert {"defaults.yaml", *(f"{c}.yaml" for c in ROBOT_CONFIGS)} <= installed(configs_dir, config_patterns)


# -- (d) the launch file, with fake launch / launch_ros modules --------------------------------------


class Recorded:
    """A fake launch class: records its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class PackageNotFoundError(KeyError):
    pass


def fake_launch_modules(share: str | None) -> dict[str, types.ModuleType]:
    def module(name: str, **attrs) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        return mod

    def kind(name: str) -> type:
        return type(name, (Recorded,), {})

    def get_package_share_directory(package: str) -> str:
        if share is None:
            raise PackageNotFoundError(package)
        assert package == PACKAGE
        return share

    class ExecuteLocal:  # launch >= 3 (Jazzy): respawns can be limited
        def __init__(self, *, process_description, respawn=False, respawn_delay=None, respawn_max_retries=-1):
            pass

    actions = module("launch.actions", DeclareLaunchArgument=kind("DeclareLaunchArgument"),
                     OpaqueFunction=kind("OpaqueFunction"), ExecuteProcess=kind("ExecuteProcess"),
                     ExecuteLocal=ExecuteLocal)
    substitutions = module("launch.substitutions", LaunchConfiguration=kind("LaunchConfiguration"))
    launch = module("launch", LaunchDescription=kind("LaunchDescription"), actions=actions, substitutions=substitutions)
    ros_actions = module("launch_ros.actions", Node=kind("Node"))
    packages = module("ament_index_python.packages", get_package_share_directory=get_package_share_directory,
                      PackageNotFoundError=PackageNotFoundError)
    return {"launch": launch, "launch.actions": actions, "launch.substitutions": substitutions,
            "launch_ros": module("launch_ros", actions=ros_actions), "launch_ros.actions": ros_actions,
            "ament_index_python": module("ament_index_python", packages=packages),
            "ament_index_python.packages": packages}


@pytest.fixture
def load_launch_file(monkeypatch):
    def load(share: str | None = None) -> types.ModuleType:
        for name, mod in fake_launch_modules(share).items():
            monkeypatch.setitem(sys.modules, name, mod)
        spec = importlib.util.spec_from_file_location("a1_walk_launch", LAUNCH_FILE)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


def describe(mod: types.ModuleType) -> tuple[dict[str, str], object]:
    """generate_launch_description(): the declared arguments' defaults and the OpaqueFunction's function."""
    description = mod.generate_launch_description()
    entities = description.args[0]
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    opaque = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    return declared, opaque[0].kwargs["function"]


def run_launch(mod: types.ModuleType, **arguments: str) -> list[Recorded]:
    """The actions the launch file makes for `arguments` (the rest at their declared defaults)."""
    declared, function = describe(mod)
    assert set(arguments) <= set(declared), f"undeclared launch arguments {set(arguments) - set(declared)}"
    context = types.SimpleNamespace(launch_configurations={**declared, **arguments})
    return function(context)


def test_launch_arguments_and_default_config(load_launch_file, tmp_path):
    declared, _ = describe(load_launch_file())
    assert set(declared) == {"sim", "learner", "config", "overrides"}
    assert declared["sim"] == "false" and declared["learner"] == "" and declared["overrides"] == ""
    # not installed (no ament index entry): the checkout's config
    assert Path(declared["config"]) == REPO / "configs" / "a1_walk.yaml"
    # installed: share/daydream/configs
    declared, _ = describe(load_launch_file(share=str(tmp_path)))
    assert Path(declared["config"]) == tmp_path / "configs" / "a1_walk.yaml"


@pytest.mark.parametrize("sim", ["false", "true"])
@pytest.mark.parametrize("learner", LEARNERS)
def test_launch_file_builds_the_plan(load_launch_file, sim, learner):
    mod = load_launch_file()
    actions = run_launch(mod, sim=sim, learner=learner or "")
    plan = make_plan(REPO / "configs" / "a1_walk.yaml", sim=sim == "true", learner=learner)
    assert len(actions) == len(plan.processes)
    for action, p in zip(actions, plan.processes):
        if p.ros_node:
            assert type(action).__name__ == "Node"
            kw = action.kwargs
            assert (kw["package"], kw["executable"], kw["name"]) == (PACKAGE, p.executable, p.name)
            assert kw["namespace"] == (p.namespace or None) and kw["namespace"] == "robot"
            assert kw["arguments"] == list(p.arguments)
            assert kw["output"] == "screen" and kw["sigterm_timeout"] == mod.STOP_TIMEOUT_S
        else:
            assert type(action).__name__ == "ExecuteProcess"
            assert action.kwargs["cmd"] == [sys.executable, "-m", "daydream.cli", *p.arguments]
            assert action.kwargs["name"] == "learner" and action.kwargs["sigterm_timeout"] == mod.STOP_TIMEOUT_S
        # a process that exits comes back, a limited number of times, as under `daydream launch`
        assert action.kwargs["respawn"] is True and action.kwargs["respawn_max_retries"] == MAX_RESTARTS
    kinds = [type(a).__name__ for a in actions]
    assert kinds.count("ExecuteProcess") == (1 if learner == "local" else 0)
    assert kinds.count("Node") == 2
    driver_args = actions[0].kwargs["arguments"]
    assert (f"robot.driver={SIM_DRIVER}" in driver_args) == (sim == "true")


def test_launch_file_does_not_respawn_without_a_limit(load_launch_file, monkeypatch):
    mod = load_launch_file()
    monkeypatch.delattr(sys.modules["launch.actions"], "ExecuteLocal")  # launch < 3 (Humble): no respawn_max_retries
    actions = run_launch(mod, sim="true", learner="local")
    assert actions and all("respawn" not in a.kwargs for a in actions)


def test_launch_file_passes_config_and_overrides(load_launch_file):
    mod = load_launch_file()
    actions = run_launch(mod, config="a1_walk", overrides=" ros.namespace=a1 ; logdir=/tmp/x;", learner="local")
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    assert {n.kwargs["namespace"] for n in nodes} == {"a1"}
    for args in [n.kwargs["arguments"] for n in nodes] + [actions[1].kwargs["cmd"]]:
        assert args[args.index("--config") + 1] == str(REPO / "configs" / "a1_walk.yaml")
        sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
        assert sets[:2] == ["ros.namespace=a1", "logdir=/tmp/x"]


def test_launch_file_rejects_bad_arguments(load_launch_file):
    mod = load_launch_file()
    with pytest.raises(ValueError, match="sim:='maybe' must be true or false"):
        run_launch(mod, sim="maybe")
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        run_launch(mod, learner="10.0.0.2:5555")
    with pytest.raises(ValueError, match="env.backend"):
        run_launch(mod, config="pendulum_tiny")


# -- (e) the launch plan, per config ------------------------------------------------------------------


def sets_of(arguments: tuple[str, ...] | list[str]) -> list[str]:
    return [arguments[i + 1] for i, a in enumerate(arguments) if a == "--set"]


def config_of(p) -> object:
    """The config a process of the plan reads."""
    return load_config(p.arguments[p.arguments.index("--config") + 1], sets_of(p.arguments))


@pytest.mark.parametrize("config", ROBOT_CONFIGS)
@pytest.mark.parametrize("sim", [False, True])
@pytest.mark.parametrize("learner", LEARNERS)
def test_plan_for_each_robot_config(config, sim, learner):
    plan = make_plan(config, ["transport.pace_actors=true"], sim=sim, learner=learner)
    names = [p.name for p in plan.processes]
    assert names == (["robot_driver", "learner", "robot_actor"] if learner == "local" else
                     ["robot_driver", "robot_actor"])
    assert plan.config_path.is_absolute() and plan.config_path.is_file()
    for p in plan.processes:
        resolved = config_of(p)
        # every process reads the same config, and a robot's loop never waits for the learner
        assert resolved.transport.pace_actors is False
        expected_driver = SIM_DRIVER if sim else load_config(config).robot.driver
        assert resolved.robot.driver == expected_driver
        assert p.namespace == (resolved.ros.namespace if p.ros_node else "")
    # the node command lines are what the nodes accept (ROS 2's own arguments come after them)
    for p in plan.processes:
        if p.ros_node:
            args, unknown = node_parser(p.name).parse_known_args(list(p.arguments))
            assert unknown == (["--learner", plan.process("robot_actor").arguments[-1]]
                               if p.name == "robot_actor" and learner else [])
        else:
            from daydream.cli import build_parser

            assert build_parser().parse_args(list(p.arguments)).command == "learner"


def test_a1_walk_sim_adds_the_sim_driver():
    real, sim = make_plan("a1_walk"), make_plan("a1_walk", sim=True)
    assert f"robot.driver={SIM_DRIVER}" in sim.overrides and f"robot.driver={SIM_DRIVER}" not in real.overrides
    for p in sim.processes:
        assert f"robot.driver={SIM_DRIVER}" in sets_of(p.arguments)
    # an explicit driver is still replaced by the simulator with sim
    plan = make_plan("a1_walk", ["robot.driver=mujoco_a1"], sim=True)
    assert sets_of(plan.process("robot_driver").arguments)[-2:] == [f"robot.driver={SIM_DRIVER}",
                                                                     "transport.pace_actors=false"]


def test_a1_walk_pace_actors_is_forced_off():
    plan = make_plan("a1_walk", ["transport.pace_actors=true"], sim=True, learner="local")
    assert plan.overrides[-1] == "transport.pace_actors=false"
    assert all(config_of(p).transport.pace_actors is False for p in plan.processes)


def test_a1_walk_learner_addresses():
    assert "--learner" not in make_plan("a1_walk").process("robot_actor").arguments
    local = make_plan("a1_walk", learner="local")
    assert list(local.process("robot_actor").arguments[-2:]) == ["--learner", "tcp://127.0.0.1:5555"]
    assert local.process("learner").module == "daydream.cli" and not local.process("learner").ros_node
    assert local.process("learner").arguments[0] == "learner"
    # a local learner bound elsewhere is reached where it binds
    moved = make_plan("a1_walk", ["transport.bind=tcp://*:6000"], learner="local")
    assert moved.process("robot_actor").arguments[-1] == "tcp://127.0.0.1:6000"
    remote = make_plan("a1_walk", learner=" tcp://10.0.0.2:5555 ")
    assert list(remote.process("robot_actor").arguments[-2:]) == ["--learner", "tcp://10.0.0.2:5555"]
    assert [p.name for p in remote.processes] == ["robot_driver", "robot_actor"]


@pytest.mark.parametrize("address", ["10.0.0.2:5555", "tcp://10.0.0.2", "tcp://host:99999", "udp://h:1", "remote"])
def test_a1_walk_bad_learner_address(address):
    with pytest.raises(ValueError, match=r"learner .* must look like tcp://HOST:PORT"):
        make_plan("a1_walk", learner=address)


def test_plan_backend_and_namespace():
    plan = make_plan("a1_walk", ["ros.namespace=a1"], backend="dds")
    assert "ros.backend=dds" in plan.overrides
    assert {p.namespace for p in plan.processes} == {"a1"}
    assert all(config_of(p).ros.backend == "dds" for p in plan.processes)


def test_plan_rejects_a_config_that_is_not_a_robot():
    with pytest.raises(ValueError, match="env.backend: robot.*'gym'"):
        make_plan("pendulum_tiny")


def test_plan_rejects_unknown_configs_and_keys():
    with pytest.raises(ConfigError, match="not found"):
        make_plan("no_such_robot")
    with pytest.raises(ConfigError, match="unknown config key"):
        make_plan("a1_walk", ["robot.no_such_key=1"])


# -- (f) the ROS 2 package never shadows the daydream Python package --------------------------------------


def test_ros_package_installs_no_python_package():
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "daydream", "__init__.py", "resource"):
        assert not (PKG_DIR / name).exists(), f"{PKG_DIR / name} would make the ROS package install Python code"
    commands = cmake_commands(PKG_DIR / "CMakeLists.txt")
    assert not [c for c, _ in commands if c.startswith("ament_python")]  # ament_python_install_package & co
    assert not [args for c, args in commands if c == "find_package" and args[0] == "ament_cmake_python"]
    assert not any("python" in dest.lower() or "site-packages" in dest for _, _, dest, _ in INSTALLS)
    # the scripts' folder is sys.path[0] when they run: no module named daydream may sit there
    assert not any(Path(src).stem == "daydream" for src in installed_programs().values())
