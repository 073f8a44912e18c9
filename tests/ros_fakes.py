"""An in-memory middleware for testing daydream's nodes without DDS: a `port.Node` whose
publishers deliver to the subscriptions of every node on the same `Bus`, on the next
`spin_once` of the receiving node, and whose clock the test sets."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from daydream.ros.port import DEFAULT_QOS, Node, Publisher, QoS, Timer


class Bus:
    def __init__(self) -> None:
        self.nodes: list[FakeNode] = []
        self.published: dict[str, list[Any]] = defaultdict(list)  # full topic -> every message sent
        self.services: dict[str, Callable[[], tuple[bool, str]]] = {}  # full name -> Trigger callback
        self.time = 1000.0

    def call(self, service: str) -> tuple[bool, str]:
        """Call a Trigger service the way a client would (the answer comes back at once)."""
        return self.services[service]()


class _Publisher(Publisher):
    def __init__(self, bus: Bus, topic: str, msg_type: type) -> None:
        self.bus, self.topic, self.msg_type = bus, topic, msg_type

    def publish(self, msg: Any) -> None:
        assert isinstance(msg, self.msg_type), (f"{self.topic}: published {type(msg).__name__}, not "
                                                f"{self.msg_type.__name__}")
        self.bus.published[self.topic].append(msg)
        for node in self.bus.nodes:
            for topic, callback in node.subscriptions:
                if topic == self.topic:
                    node.inbox.append((callback, msg))


class _Timer(Timer):
    def __init__(self, period: float, callback: Callable[[], None], start: float) -> None:
        self.period, self.callback, self.next, self.cancelled = period, callback, start + period, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeNode(Node):
    def __init__(self, bus: Bus, name: str, namespace: str = "robot", parameters: dict[str, Any] | None = None) -> None:
        super().__init__(name, namespace, parameters)
        self.bus = bus
        self.subscriptions: list[tuple[str, Callable[[Any], None]]] = []
        self.inbox: deque[tuple[Callable[[Any], None], Any]] = deque()
        self.timers: list[_Timer] = []
        bus.nodes.append(self)

    def create_publisher(self, msg_type: type, topic: str, qos: QoS = DEFAULT_QOS) -> Publisher:
        return _Publisher(self.bus, self.resolve(topic), msg_type)

    def create_subscription(self, msg_type: type, topic: str, callback: Callable[[Any], None],
                            qos: QoS = DEFAULT_QOS) -> None:
        self.subscriptions.append((self.resolve(topic), callback))

    def create_trigger_service(self, name: str, callback: Callable[[], tuple[bool, str]]) -> bool:
        self.bus.services[self.resolve(name)] = callback
        return True

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        timer = _Timer(period_s, callback, self.bus.time)
        self.timers.append(timer)
        return timer

    def now(self) -> float:
        return self.bus.time

    def spin_once(self, timeout_s: float = 0.1) -> None:
        while self.inbox:
            callback, msg = self.inbox.popleft()
            callback(msg)
        for timer in self.timers:
            if not timer.cancelled and self.bus.time >= timer.next:
                timer.next += timer.period
                timer.callback()

    def destroy(self) -> None:
        self.bus.nodes.remove(self)
