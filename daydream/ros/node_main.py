"""The command line shared by daydream's ROS 2 node executables.

`--config` and `--set` select the same YAML config every other process reads (one source
of truth); ROS 2's own arguments (`--ros-args ...`, added by `ros2 launch`/`ros2 run`)
are left to the rclpy backend. The node spins until Ctrl-C or SIGTERM, then closes what
it owns (a driver goes to its safe mode on close) with further signals logged and
ignored (`StopSignals`), then destroys the node (rclpy is shut down with its last node).
One path for both signals: rclpy's own signal handlers are not installed (`rclpy_backend`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

from daydream.config import Config, ConfigError, load_config
from daydream.ros.port import Node, make_node
from daydream.runtime.interrupts import dump_stacks_on_sigusr1

log = logging.getLogger(__name__)


def split_ros_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(ours, ROS 2's): everything from `--ros-args` on belongs to ROS 2."""
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        return argv[:i], argv[i:]
    return argv, []


def node_parser(role: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=role, description=f"daydream's {role} ROS 2 node")
    parser.add_argument("--config", required=True, help="task config: a YAML path or a name under configs/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable)")
    parser.add_argument("--logdir", help="run directory (overrides the config's logdir)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def load_node_config(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides) + ([f"logdir={args.logdir}"] if args.logdir else [])
    return load_config(args.config, overrides)


def open_node(role: str, config: Config) -> Node:
    return make_node(role, config.ros.backend, namespace=config.ros.namespace, domain_id=config.ros.domain_id,
                     remap=config.ros.remap)


class StopSignals:
    """SIGINT and SIGTERM, one path: the first raises KeyboardInterrupt (the node stops spinning and
    closes what it owns); later ones are logged and ignored, so a second Ctrl-C or the launcher's
    SIGTERM cannot cut a driver's way into its safe mode short. Only inside `interruptible()`
    (an actor draining its experience) does a later signal raise again. SIGKILL still stops the
    process. SIGINT gets a handler even where it was inherited ignored (background jobs).
    """

    def __init__(self, role: str) -> None:
        self.role = role
        self.stopping = False
        self._interruptible = False

    def install(self) -> "StopSignals":
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt
        if self._interruptible:
            self._interruptible = False
            raise KeyboardInterrupt
        log.warning("%s: %s while stopping; finishing the shutdown first", self.role, signal.Signals(signum).name)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Within the block, a signal after the first raises KeyboardInterrupt (e.g. to cut a drain short)."""
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False


def start_node(role: str, parser: argparse.ArgumentParser,
               argv: list[str] | None) -> tuple[argparse.Namespace, StopSignals]:
    """What every node executable does first: our arguments (ROS 2's left aside), logging, signals."""
    ours, _ = split_ros_args(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(ours)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s")
    dump_stacks_on_sigusr1()  # `kill -USR1 PID`: where a node that stopped ticking stands, in its log
    return args, StopSignals(role).install()


def run_node(role: str, build: Callable[[Config, Node], Any], argv: list[str] | None = None,
             parser: argparse.ArgumentParser | None = None) -> int:
    """Parse arguments, build the node with `build(config, node)` and spin it until stopped."""
    args, _ = start_node(role, parser or node_parser(role), argv)
    try:
        config = load_node_config(args)
        node = open_node(role, config)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"{role}: error: {exc}", file=sys.stderr)
        return 2
    owned = None
    try:
        owned = build(config, node)
        log.info("%s up in namespace %s", role, node.namespace)
        node.spin()
    except KeyboardInterrupt:
        log.info("%s stopping", role)
    finally:  # signals from here on are logged, not raised (StopSignals)
        close = getattr(owned, "close", None)
        if callable(close):
            close()  # the driver goes to its safe mode
        node.destroy()  # the last rclpy node also shuts rclpy down
    log.info("%s stopped", role)
    return 0
