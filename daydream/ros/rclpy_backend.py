"""The rclpy backend of the middleware port: daydream nodes as real ROS 2 nodes.

Everything rclpy-specific lives here and rclpy is imported lazily, so this module imports
(and its conversion helpers are tested) on machines without ROS 2.

- `to_rclpy` / `from_rclpy`: daydream.ros.messages instances <-> rclpy message instances,
  by walking the fields (`get_fields_and_field_types()` on the rclpy side), recursively.
  Pure functions: the rclpy class lookup is a parameter.
- `qos_profile`: `port.QoS` -> `rclpy.qos.QoSProfile`.
- `RclpyNode`: the `port.Node` implementation (rclpy.init once per process, one executor per
  node so nodes may be spun from different threads).
"""

from __future__ import annotations

import array
import dataclasses
import functools
import importlib
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from daydream.ros import messages
from daydream.ros.port import DEFAULT_QOS, Node, Publisher, QoS, Timer

log = logging.getLogger(__name__)

# rosidl_generator_py keeps sequences of these primitive types in array.array with these
# typecodes; its setters take such an array as is but check other sequences element by element
# (slow for an image), so conversions hand it arrays.
ARRAY_TYPECODES = {"double": "d", "float": "f", "int8": "b", "uint8": "B", "int16": "h", "uint16": "H",
                   "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q"}
_BYTE_TYPES = ("uint8", "byte", "octet")

_SEQUENCE = re.compile(r"sequence<\s*([^,>]+?)\s*(?:,\s*\d+\s*)?>")
_ARRAY = re.compile(r"(.+?)\[\d+\]")
_BOUNDED_STRING = re.compile(r"(w?string)<\d+>")


# -- field types ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)  # a handful of distinct strings, parsed for every field of every message
def parse_field_type(kind: str) -> tuple[str, str | None]:
    """(element type, container) of an rclpy field type string.

    The container is "sequence" (`sequence<double>`, `sequence<double, 5>`), "array"
    (`double[9]`) or None. Message types come back as full ROS 2 names
    (`std_msgs/Header` -> `std_msgs/msg/Header`); string bounds are dropped.
    """
    kind = kind.strip()
    container = None
    if match := _SEQUENCE.fullmatch(kind):
        kind, container = match.group(1), "sequence"
    elif match := _ARRAY.fullmatch(kind):
        kind, container = match.group(1), "array"
    if match := _BOUNDED_STRING.fullmatch(kind):
        kind = match.group(1)
    if "/" in kind:
        parts = kind.split("/")
        kind = f"{parts[0]}/msg/{parts[-1]}" if len(parts) == 2 else kind
    return kind, container


def _is_message(element: str) -> bool:
    return "/" in element


# -- message conversion -------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def rclpy_message_class(ros_name: str) -> type:
    """The rclpy class of a ROS 2 message (`sensor_msgs/msg/JointState` -> sensor_msgs.msg.JointState)."""
    package, kind, name = messages.message_type(ros_name).ros_name.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise RuntimeError(f"the ROS 2 message {ros_name} is not installed ({exc}): install "
                           f"ros-$ROS_DISTRO-{package.replace('_', '-')} and source the ROS 2 setup") from exc


def to_rclpy(msg: Any, resolve: Callable[[str], type] | None = None) -> Any:
    """The rclpy message equal to `msg` (a daydream.ros.messages instance).

    `resolve` maps a ROS 2 name to the rclpy class (default: import it). Fields the rclpy
    class has and `msg` does not keep rclpy's defaults.
    """
    resolve = resolve or rclpy_message_class
    cls = resolve(messages.ros_name(msg))
    out = cls()
    for name, kind in _shared_fields(cls, type(msg)):
        setattr(out, name, _to_rclpy_value(getattr(msg, name), kind, resolve))
    return out


@functools.lru_cache(maxsize=None)
def _shared_fields(rclpy_cls: type, ours: type) -> tuple[tuple[str, str], ...]:
    """(name, rclpy field type) of the fields both classes have, in rclpy's order (computed once per pair)."""
    names = {f.name for f in dataclasses.fields(ours)}
    return tuple((name, kind) for name, kind in rclpy_cls.get_fields_and_field_types().items() if name in names)


@functools.lru_cache(maxsize=None)
def _our_fields(rclpy_cls: type, ours: type) -> tuple[tuple[str, str], ...]:
    """(name, rclpy field type) of every field of our class; TypeError if rclpy's class lacks one."""
    kinds = rclpy_cls.get_fields_and_field_types()
    out = []
    for field in dataclasses.fields(ours):
        if field.name not in kinds:
            raise TypeError(f"the installed ROS 2 {ours.ros_name} has no field {field.name!r} (it has {list(kinds)}): "
                            "daydream.ros.messages does not match this ROS 2 distribution")
        out.append((field.name, kinds[field.name]))
    return tuple(out)


def _to_rclpy_value(value: Any, kind: str, resolve: Callable[[str], type]) -> Any:
    element, container = parse_field_type(kind)
    if _is_message(element):
        return [to_rclpy(v, resolve) for v in value] if container else to_rclpy(value, resolve)
    if container == "sequence" and element in ARRAY_TYPECODES:
        if element in _BYTE_TYPES and not isinstance(value, (bytes, bytearray)):
            value = bytes(value)  # numpy arrays, memoryviews: one copy, no per-element Python work
        return array.array(ARRAY_TYPECODES[element], value)
    if container:
        return list(value)
    return value


def from_rclpy(ros_msg: Any, msg_type: type | str) -> Any:
    """The daydream.ros.messages instance of `msg_type` equal to `ros_msg` (an rclpy message)."""
    cls = messages.message_type(msg_type)
    return cls(**{name: _from_rclpy_value(getattr(ros_msg, name), kind)
                  for name, kind in _our_fields(type(ros_msg), cls)})


def _from_rclpy_value(value: Any, kind: str) -> Any:
    element, container = parse_field_type(kind)
    if _is_message(element):
        cls = messages.message_type(element)
        return [from_rclpy(v, cls) for v in value] if container else from_rclpy(value, cls)
    if container == "sequence" and element in _BYTE_TYPES:
        return bytes(value)  # daydream keeps uint8 sequences (image data) as bytes
    if container:
        return value.tolist() if hasattr(value, "tolist") else list(value)  # array.array / numpy -> floats
    return value


def qos_profile(qos: QoS, qos_module: Any = None) -> Any:
    """`port.QoS` as an `rclpy.qos.QoSProfile` (`qos_module` stands in for rclpy.qos in tests)."""
    if qos_module is None:
        import rclpy.qos as qos_module
    reliability = {"reliable": qos_module.ReliabilityPolicy.RELIABLE,
                   "best_effort": qos_module.ReliabilityPolicy.BEST_EFFORT}[qos.reliability]
    durability = {"volatile": qos_module.DurabilityPolicy.VOLATILE,
                  "transient_local": qos_module.DurabilityPolicy.TRANSIENT_LOCAL}[qos.durability]
    return qos_module.QoSProfile(history=qos_module.HistoryPolicy.KEEP_LAST, depth=qos.depth,
                                 reliability=reliability, durability=durability)


# -- the node ----------------------------------------------------------------------------------

_init_lock = threading.Lock()
_live_nodes: list[int] = [0]  # RclpyNodes alive in this process: the last one to go shuts rclpy down


def _rclpy(domain_id: int | None = None) -> Any:
    """rclpy, initialised once per process.

    `rclpy.init` reads `--ros-args` (remapping, `__ns`, `__node`, log levels) from sys.argv.
    rclpy's own SIGINT/SIGTERM handlers are not installed: the node executables own the
    signals (`node_main`), so a Ctrl-C takes one path, which always closes the driver into
    its safe mode before rclpy is shut down. `domain_id` None: rclpy reads $ROS_DOMAIN_ID.
    """
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    with _init_lock:
        if not rclpy.ok():
            rclpy.init(domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        elif domain_id is not None and rclpy.get_default_context().get_domain_id() != domain_id:
            raise RuntimeError(f"rclpy is already initialised on domain {rclpy.get_default_context().get_domain_id()}; "
                               f"one process cannot also join domain {domain_id}")
    return rclpy


def _release_rclpy(rclpy: Any) -> None:
    with _init_lock:
        _live_nodes[0] -= 1
        if _live_nodes[0] == 0:
            rclpy.try_shutdown()


class _RclpyPublisher(Publisher):
    def __init__(self, publisher: Any, msg_type: type, topic: str) -> None:
        self._publisher, self._msg_type, self.topic = publisher, msg_type, topic

    def publish(self, msg: Any) -> None:
        if type(msg) is not self._msg_type:
            raise TypeError(f"the publisher on {self.topic} sends {self._msg_type.ros_name}, "
                            f"not {type(msg).__qualname__}")
        self._publisher.publish(to_rclpy(msg))


class _RclpyTimer(Timer):
    def __init__(self, node: Any, timer: Any) -> None:
        self._node, self._timer = node, timer

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._node.destroy_timer(self._timer)
            self._timer = None


class RclpyNode(Node):
    """A `port.Node` that is an rclpy node (see the module docstring).

    Topic names stay relative when rclpy sees them, so `-r __ns:=/a1`, `PushRosNamespace`
    and `-r joint_commands:=/forward_position_controller/commands` apply as in any ROS 2
    node; `remap` adds remappings of our own (`ros.remap`). Python `logging` records of the
    process at INFO and above also go to `/rosout`, while the node lives.
    """

    def __init__(self, name: str, namespace: str = "", parameters: dict[str, Any] | None = None,
                 domain_id: int | None = None, remap: dict[str, str] | None = None) -> None:
        super().__init__(name, namespace, parameters, remap)
        rclpy = _rclpy(domain_id)
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node as RosNode
        from rclpy.parameter import Parameter

        overrides = [Parameter(key, value=value) for key, value in self._parameters.items()]
        cli_args = ["--ros-args", *(a for old, new in self.remap.items() for a in ("-r", f"{old}:={new}"))]
        with _init_lock:
            _live_nodes[0] += 1
        try:
            self._node = RosNode(name, namespace=self.namespace, parameter_overrides=overrides,
                                 cli_args=cli_args if self.remap else None)
        except Exception:
            _release_rclpy(rclpy)
            raise
        # rclpy.spin_once's global executor must not be shared by nodes spun on different threads
        self._executor = SingleThreadedExecutor(context=self._node.context)
        self._executor.add_node(self._node)
        self._rclpy = rclpy
        self.namespace = self._node.get_namespace()  # after `-r __ns:=...`
        self._rosout = RosoutHandler(self._node)
        logging.getLogger().addHandler(self._rosout)

    def resolve(self, topic: str) -> str:
        """The full name rclpy gives `topic` (after namespaces and every remapping)."""
        return self._node.resolve_topic_name(topic)

    def create_publisher(self, msg_type: type, topic: str, qos: QoS = DEFAULT_QOS) -> Publisher:
        cls = messages.message_type(msg_type)
        publisher = self._node.create_publisher(rclpy_message_class(cls.ros_name), topic, qos_profile(qos))
        return _RclpyPublisher(publisher, cls, publisher.topic_name)

    def create_subscription(self, msg_type: type, topic: str, callback: Callable[[Any], None],
                            qos: QoS = DEFAULT_QOS) -> None:
        cls = messages.message_type(msg_type)
        full = self.resolve(topic)

        def on_message(ros_msg: Any) -> None:
            try:
                callback(from_rclpy(ros_msg, cls))
            except Exception:  # one bad message or callback must not stop the node
                log.exception("%s: callback for %s raised; the node keeps spinning", self.name, full)

        self._node.create_subscription(rclpy_message_class(cls.ros_name), topic, on_message, qos_profile(qos))

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        if not period_s > 0:
            raise ValueError(f"timer period must be positive, got {period_s}")

        def on_timer() -> None:
            try:
                callback()
            except Exception:
                log.exception("%s: timer callback raised; the node keeps spinning", self.name)

        return _RclpyTimer(self._node, self._node.create_timer(period_s, on_timer))

    def now(self) -> float:
        return self._node.get_clock().now().nanoseconds * 1e-9

    def declare_parameter(self, name: str, default: Any) -> Any:
        from rcl_interfaces.msg import ParameterDescriptor

        if self._node.has_parameter(name):
            return self._node.get_parameter(name).value
        # dynamic typing: a launch file's 50 for a 50.0 default must not be a type error
        descriptor = ParameterDescriptor(dynamic_typing=True)
        return self._node.declare_parameter(name, default, descriptor).value

    def create_trigger_service(self, name: str, callback: Callable[[], tuple[bool, str]]) -> bool:
        """A `std_srvs/srv/Trigger` service `name` (relative: `~/clear_estop` is under the node's name)."""
        from std_srvs.srv import Trigger

        def on_request(request: Any, response: Any) -> Any:
            try:
                response.success, response.message = callback()
            except Exception as exc:  # a service must answer; the node keeps spinning
                log.exception("%s: service %s raised", self.name, name)
                response.success, response.message = False, f"{type(exc).__name__}: {exc}"
            return response

        self._node.create_service(Trigger, name, on_request)
        return True

    def spin_once(self, timeout_s: float = 0.1) -> None:
        if self._node is not None:
            self._executor.spin_once(timeout_sec=timeout_s)

    def spin(self, stop: threading.Event | None = None) -> None:
        """Run callbacks until `stop` is set or the node is destroyed."""
        while self._node is not None and (stop is None or not stop.is_set()):
            self.spin_once(0.05)

    def destroy(self) -> None:
        """Destroy the node; the process's last RclpyNode also shuts rclpy down."""
        if self._node is None:
            return
        logging.getLogger().removeHandler(self._rosout)
        node, self._node = self._node, None
        self._executor.remove_node(node)
        self._executor.shutdown(timeout_sec=0.0)
        node.destroy_node()
        _release_rclpy(self._rclpy)


class RosoutHandler(logging.Handler):
    """Python log records (INFO and above) to `/rosout` as `rcl_interfaces/msg/Log`, as rclpy's loggers do."""

    LEVELS = ((logging.CRITICAL, 50), (logging.ERROR, 40), (logging.WARNING, 30), (logging.INFO, 20),
              (logging.DEBUG, 10))

    def __init__(self, node: Any, level: int = logging.INFO) -> None:
        super().__init__(level)
        from rcl_interfaces.msg import Log
        from rclpy.duration import Duration
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        # rcl's rosout QoS: reliable, transient local, depth 1000, 10 s lifespan
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL, lifespan=Duration(seconds=10))
        self._node, self._log = node, Log
        self._publisher = node.create_publisher(Log, "/rosout", qos)
        self._name = node.get_fully_qualified_name().lstrip("/").replace("/", ".")
        self._busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._busy, "on", False):  # publishing must not log into itself
            return
        self._busy.on = True
        try:
            msg = self._log()
            msg.stamp = self._node.get_clock().now().to_msg()
            msg.level = next(ros for py, ros in self.LEVELS if record.levelno >= py)
            msg.name = self._name
            msg.msg = self.format(record)
            msg.file, msg.function, msg.line = record.pathname, record.funcName or "", record.lineno
            self._publisher.publish(msg)
        except Exception:  # never let logging break the node (e.g. during shutdown)
            pass
        finally:
            self._busy.on = False
