"""The middleware port: exactly what daydream's ROS 2 nodes need from a middleware, and no more.

Publishers, subscriptions, timers, parameters, a clock and QoS. Two backends implement it:

- `rclpy` (`daydream.ros.rclpy_backend`), wherever ROS 2 is installed: the production path;
- Cyclone DDS (`daydream.ros.dds_backend`), wire-compatible with ROS 2 (the `rt/` topic
  prefix, ROS 2's DDS type names and default QoS), so the graph runs and is tested on
  machines without ROS 2 and is still seen by `ros2 topic echo` on the same network.

Nodes only ever see the message classes of `daydream.ros.messages` (plain dataclasses
with ROS 2 field names); a backend converts at its boundary. `make_node` picks the
backend: `auto` (rclpy if importable, else dds), `rclpy` or `dds`.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

log = logging.getLogger(__name__)

Backend = Literal["auto", "rclpy", "dds"]
BACKENDS = ("auto", "rclpy", "dds")


@dataclasses.dataclass(frozen=True)
class QoS:
    """The QoS settings daydream uses; the named profiles below are ROS 2's."""

    reliability: Literal["reliable", "best_effort"] = "reliable"
    durability: Literal["volatile", "transient_local"] = "volatile"
    depth: int = 10  # history: keep last `depth`

    def __post_init__(self) -> None:
        if self.reliability not in ("reliable", "best_effort"):
            raise ValueError(f"QoS reliability must be reliable or best_effort, got {self.reliability!r}")
        if self.durability not in ("volatile", "transient_local"):
            raise ValueError(f"QoS durability must be volatile or transient_local, got {self.durability!r}")
        if self.depth < 1:
            raise ValueError(f"QoS depth must be at least 1, got {self.depth}")


DEFAULT_QOS = QoS("reliable", "volatile", 10)      # rclpy's default for publishers and subscriptions
SENSOR_QOS = QoS("best_effort", "volatile", 5)     # rclpy.qos.qos_profile_sensor_data
LATCHED_QOS = QoS("reliable", "transient_local", 1)  # late joiners get the last message (e.g. a mode)


class Publisher(abc.ABC):
    @abc.abstractmethod
    def publish(self, msg: Any) -> None:
        """Send one message (an instance of the type the publisher was made for)."""


class Timer(abc.ABC):
    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop calling the callback."""


class Node(abc.ABC):
    """One node: its publishers, subscriptions and timers, run by `spin` on the calling thread.

    Callbacks (subscriptions and timers) run on the spinning thread, one at a time, so a
    node's state needs no locks. A callback that raises is logged and the node keeps
    spinning: one bad message must not stop a robot.
    """

    def __init__(self, name: str, namespace: str = "", parameters: dict[str, Any] | None = None,
                 remap: dict[str, str] | None = None) -> None:
        check_name(name, "node name")
        self.name = name
        self.namespace = normalise_namespace(namespace)
        self._parameters = dict(parameters or {})
        # topic remappings, as `-r from:=to`: a name the node uses -> the name on the graph
        self.remap = {str(k): str(v) for k, v in (remap or {}).items()}

    # -- graph ---------------------------------------------------------------------------

    @abc.abstractmethod
    def create_publisher(self, msg_type: type, topic: str, qos: QoS = DEFAULT_QOS) -> Publisher: ...

    @abc.abstractmethod
    def create_subscription(self, msg_type: type, topic: str, callback: Callable[[Any], None],
                            qos: QoS = DEFAULT_QOS) -> None: ...

    @abc.abstractmethod
    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer: ...

    def create_trigger_service(self, name: str, callback: Callable[[], tuple[bool, str]]) -> bool:
        """Serve `std_srvs/srv/Trigger` on `name`: `callback()` gives (success, message).

        False where the backend has no services (the DDS backend); the caller says what to do instead.
        """
        return False

    # -- clock and parameters ------------------------------------------------------------

    @abc.abstractmethod
    def now(self) -> float:
        """The node's clock in seconds (ROS time: wall clock unless a sim clock drives it)."""

    def declare_parameter(self, name: str, default: Any) -> Any:
        """The parameter's value from the launch (or `parameters=`), else `default`."""
        return self._parameters.get(name, default)

    # -- running -------------------------------------------------------------------------

    @abc.abstractmethod
    def spin_once(self, timeout_s: float = 0.1) -> None:
        """Run the callbacks that are due (waiting up to `timeout_s` for one)."""

    def spin(self, stop: threading.Event | None = None) -> None:
        """Run callbacks until `stop` is set (or KeyboardInterrupt)."""
        while stop is None or not stop.is_set():
            self.spin_once(0.05)

    @abc.abstractmethod
    def destroy(self) -> None:
        """Release the node's entities; it cannot be used afterwards."""

    def resolve(self, topic: str) -> str:
        """The full topic name: remapped (`remap`), then relative names go under the node's namespace."""
        topic = self.remap.get(topic, topic)
        if topic.startswith("~"):
            topic = f"{self.namespace.rstrip('/')}/{self.name}{topic[1:]}"
        if topic.startswith("/"):
            full = topic
        else:
            full = f"{self.namespace.rstrip('/')}/{topic}" if self.namespace != "/" else f"/{topic}"
        check_name(full.strip("/").replace("/", "_") or "x", f"topic {topic!r}")
        return full

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def check_name(name: str, what: str) -> str:
    """ROS 2 names: letters, digits and underscores, not starting with a digit."""
    import re

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"{what} {name!r} is not a valid ROS 2 name (letters, digits, underscores; no leading digit)")
    return name


def normalise_namespace(namespace: str) -> str:
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else "/"
    for part in namespace.strip("/").split("/"):
        if part:
            check_name(part, f"namespace {namespace!r} part")
    return namespace


def rclpy_available() -> bool:
    import importlib

    try:
        importlib.import_module("rclpy")
    except ImportError:
        return False
    return True


def choose_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"ros.backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "rclpy" if rclpy_available() else "dds"
    if backend == "rclpy" and not rclpy_available():
        raise RuntimeError("ros.backend is rclpy but rclpy cannot be imported: source your ROS 2 setup "
                           "(e.g. /opt/ros/jazzy/setup.bash) or use ros.backend: dds")
    return backend


def make_node(name: str, backend: str = "auto", namespace: str = "", parameters: dict[str, Any] | None = None,
              domain_id: int | None = None, remap: dict[str, str] | None = None) -> Node:
    """A node on the chosen backend (see the module docstring); `domain_id` None: $ROS_DOMAIN_ID, else 0."""
    chosen = choose_backend(backend)
    if chosen == "rclpy":
        from daydream.ros.rclpy_backend import RclpyNode

        return RclpyNode(name, namespace, parameters, domain_id=domain_id, remap=remap)
    from daydream.ros.dds_backend import DdsNode

    return DdsNode(name, namespace, parameters, domain_id=domain_id, remap=remap)
