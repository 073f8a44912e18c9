"""The Cyclone DDS backend of the middleware port: daydream nodes without ROS 2, on ROS 2's wire.

`DdsNode` speaks DDS the way ROS 2 does (rmw_cyclonedds_cpp): topic `/a1/joint_states` is
the DDS topic `rt/a1/joint_states`, types are ROS 2's DDS type names
(`daydream.ros.messages`), samples are XCDR1, the domain is `ROS_DOMAIN_ID`, and
QoS maps one to one, and USER_DATA carries ROS 2's type hash (`typehash=RIHS01_...;`) as
the RMWs write it. Readers and writers announce no XTypes type information, so peers
match them by type name as the RMWs do (`daydream.ros.dds_typeinfo` says why: Fast DDS 3
peers would not match otherwise). So ROS 2 tools on the same network see and talk to
these nodes, whichever RMW they use.

This module owns:
- one DomainParticipant per process and domain, shared by the nodes on it (as ROS 2 has
  one per context) and deleted with the last of them, announcing its nodes and their
  endpoints on `ros_discovery_info` as the RMWs do (`daydream.ros.discovery`), so
  `ros2 node list` shows them;
- the node: a DDS publisher and subscriber per node, a WaitSet that wakes `spin_once` as
  soon as a sample arrives (tens of microseconds on loopback), and timers scheduled on a
  drift-free grid and run by `spin_once` on the spinning thread.

`ROS_LOCALHOST_ONLY=1` (or `ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`) keeps discovery and
traffic on 127.0.0.1 as ROS 2 does, unless `CYCLONEDDS_URI` configures Cyclone explicitly.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cyclonedds.core import DDSException, GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.pub import Publisher as DdsPublisher
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader, Subscriber
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from daydream.ros import messages
from daydream.ros.discovery import GraphAnnouncer
from daydream.ros.dds_typeinfo import LOCK as _TYPE_LOCK
from daydream.ros.dds_typeinfo import no_type_information
from daydream.ros.port import DEFAULT_QOS, Node, Publisher, QoS, Timer

log = logging.getLogger(__name__)

MAX_DOMAIN_ID = 232  # the highest id whose RTPS ports fit (7400 + 250 * id + offsets < 65536)
TOPIC_PREFIX = "rt"  # ROS 2's prefix for topics (services use rq/rr)
_TAKE_BATCH = 64

_LOCALHOST_CONFIG = """<CycloneDDS><Domain Id="any"><General>
  <Interfaces><NetworkInterface address="127.0.0.1"/></Interfaces>
  <AllowMulticast>false</AllowMulticast>
</General><Discovery>
  <Peers><Peer address="127.0.0.1"/></Peers>
  <ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>32</MaxAutoParticipantIndex>
</Discovery></Domain></CycloneDDS>"""


# -- names and QoS ------------------------------------------------------------------------------

def resolve_domain_id(domain_id: int | None = None) -> int:
    """The DDS domain: `domain_id` if given, else $ROS_DOMAIN_ID, else 0 (as ROS 2)."""
    source = "domain_id"
    if domain_id is None:
        text = os.environ.get("ROS_DOMAIN_ID", "").strip()
        if not text:
            return 0
        source = "ROS_DOMAIN_ID"
        try:
            domain_id = int(text)
        except ValueError:
            raise ValueError(f"ROS_DOMAIN_ID={text!r} is not an integer; set it to 0..{MAX_DOMAIN_ID} or unset it") \
                from None
    if isinstance(domain_id, bool) or not isinstance(domain_id, int) or not 0 <= domain_id <= MAX_DOMAIN_ID:
        raise ValueError(f"{source} must be an integer in 0..{MAX_DOMAIN_ID}, got {domain_id!r}")
    return domain_id


def dds_topic_name(topic: str) -> str:
    """The DDS topic of a fully qualified ROS 2 topic: `/a1/joint_states` -> `rt/a1/joint_states`."""
    if not topic.startswith("/"):
        raise ValueError(f"topic {topic!r} is not fully qualified (resolve it under the node's namespace first)")
    return TOPIC_PREFIX + topic


def dds_qos(qos: QoS, user_data: bytes = b"") -> Qos:
    """`port.QoS` as Cyclone QoS for a reader or writer, as rmw_cyclonedds_cpp sets it.

    `user_data`: the endpoint's USER_DATA (the RMWs put the type hash there, `messages.type_hash_user_data`).
    """
    reliability = (Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100))
                   if qos.reliability == "reliable" else Policy.Reliability.BestEffort)
    history = Policy.History.KeepLast(qos.depth)
    policies = [reliability, history,
                # XCDR1 as ROS 2 writes it; a writer that offered XCDR2 would not match ROS 2 readers
                Policy.DataRepresentation(use_cdrv0_representation=True)]
    if qos.durability == "transient_local":
        # Cyclone keeps a transient-local writer's history for late joiners per the durability
        # service's history, not the writer's: make them the same (as rmw_cyclonedds does)
        policies += [Policy.Durability.TransientLocal,
                     Policy.DurabilityService(cleanup_delay=0, history=history, max_samples=-1, max_instances=-1,
                                              max_samples_per_instance=-1)]
    else:
        policies.append(Policy.Durability.Volatile)
    if user_data:
        policies.append(Policy.Userdata(data=user_data))
    return Qos(*policies)


# -- shared participants --------------------------------------------------------------------------

@dataclass
class _Shared:
    participant: DomainParticipant
    domain: Domain | None  # an explicitly configured domain (localhost only), else None
    announcer: GraphAnnouncer | None = None  # ros_discovery_info of this participant's nodes
    users: int = 0


_participants: dict[int, _Shared] = {}
_participants_lock = threading.Lock()


def _localhost_only() -> bool:
    return (os.environ.get("ROS_LOCALHOST_ONLY", "").strip() == "1"
            or os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").strip().upper() == "LOCALHOST")


def _acquire_participant(domain_id: int) -> _Shared:
    with _participants_lock:
        shared = _participants.get(domain_id)
        if shared is None:
            domain = None
            if _localhost_only():
                if os.environ.get("CYCLONEDDS_URI"):
                    log.info("ROS_LOCALHOST_ONLY is set but CYCLONEDDS_URI configures Cyclone DDS; using the latter")
                else:
                    domain = Domain(domain_id, _LOCALHOST_CONFIG)
            participant = DomainParticipant(domain_id)
            shared = _participants[domain_id] = _Shared(participant, domain, GraphAnnouncer(participant))
        shared.users += 1
        return shared


def _release_participant(domain_id: int) -> None:
    with _participants_lock:
        shared = _participants[domain_id]
        shared.users -= 1
        if shared.users == 0:
            del _participants[domain_id]
            _delete(shared.participant)
            if shared.domain is not None:
                _delete(shared.domain)


def _delete(entity: Any) -> None:
    # cyclonedds-python deletes a DDS entity when its wrapper is finalised; finalise now so that
    # destroy() releases readers and writers deterministically (the later finaliser is a no-op)
    try:
        entity.__del__()
    except DDSException as exc:  # already gone with its parent
        log.debug("deleting %r: %s", entity, exc)


# -- publishers, subscriptions, timers ------------------------------------------------------------

class _DdsPublisher(Publisher):
    def __init__(self, node: DdsNode, writer: DataWriter, msg_type: type, topic: str) -> None:
        self._node, self._writer, self._msg_type, self.topic = node, writer, msg_type, topic

    def publish(self, msg: Any) -> None:
        if type(msg) is not self._msg_type:
            raise TypeError(f"the publisher on {self.topic} sends {self._msg_type.ros_name}, "
                            f"not {type(msg).__qualname__}")
        self._node._check_alive()
        try:
            self._writer.write(msg)
        except DDSException:
            raise
        except Exception as exc:  # cyclonedds reports bad field values as bare Exceptions
            raise ValueError(f"cannot publish {self._msg_type.ros_name} on {self.topic}: {exc} "
                             f"({exc.__cause__}); check field types, array lengths and integer ranges") from exc


@dataclass
class _Subscription:
    topic: str
    reader: DataReader
    condition: ReadCondition
    callback: Callable[[Any], None]


class _DdsTimer(Timer):
    def __init__(self, node: DdsNode, period_s: float, callback: Callable[[], None]) -> None:
        self._node, self.period_s, self.callback = node, period_s, callback
        self.next_due = time.monotonic() + period_s
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self._node._remove_timer(self)


# -- the node --------------------------------------------------------------------------------------

class DdsNode(Node):
    """A `port.Node` on Cyclone DDS (see the module docstring).

    Publishing is thread-safe; callbacks run only on the thread calling `spin_once`.
    """

    def __init__(self, name: str, namespace: str = "", parameters: dict[str, Any] | None = None,
                 domain_id: int | None = None, remap: dict[str, str] | None = None) -> None:
        super().__init__(name, namespace, parameters, remap)
        self.domain_id = resolve_domain_id(domain_id)
        self._lock = threading.Lock()          # the entity lists (entities may be added from any thread)
        self._spin_lock = threading.RLock()    # one spin_once at a time; destroy waits for it
        self._topics: dict[str, Topic] = {}
        self._writers: list[DataWriter] = []
        self._subscriptions: list[_Subscription] = []
        self._timers: list[_DdsTimer] = []
        self._destroyed = False
        shared = _acquire_participant(self.domain_id)
        participant = shared.participant
        self._announcer = shared.announcer
        try:
            self._participant = participant
            self._publisher = DdsPublisher(participant)
            self._subscriber = Subscriber(participant)
            self._waitset = WaitSet(participant)
            self._guard = GuardCondition(participant)  # wakes spin_once for new entities and destroy
            self._waitset.attach(self._guard)
        except Exception:
            _release_participant(self.domain_id)
            raise
        self._announcer.add_node(id(self), self.namespace, self.name)

    # -- graph -------------------------------------------------------------------------------------

    def _topic(self, msg_type: type, full: str) -> Topic:
        name = dds_topic_name(full)
        topic = self._topics.get(name)
        if topic is None:
            try:
                with _TYPE_LOCK:  # not while another thread hides the type's information (see dds_typeinfo)
                    topic = Topic(self._participant, name, msg_type)
            except DDSException as exc:
                raise TypeError(f"cannot create DDS topic {name} with type {msg_type.ros_name} ({exc}); "
                                "is the topic already used with another type in this process?") from exc
            self._topics[name] = topic
        elif topic.data_type is not msg_type:
            raise TypeError(f"topic {full} is used with {topic.data_type.ros_name} by node {self.name}; "
                            f"cannot also use it with {msg_type.ros_name}")
        return topic

    def create_publisher(self, msg_type: type | str, topic: str, qos: QoS = DEFAULT_QOS) -> Publisher:
        cls = messages.message_type(msg_type)
        full = self.resolve(topic)
        with self._lock:
            self._check_alive()
            topic_entity = self._topic(cls, full)
            with no_type_information(topic_entity):  # match by type name, as the RMWs do (see dds_typeinfo)
                writer = DataWriter(self._publisher, topic_entity,
                                    dds_qos(qos, messages.type_hash_user_data(cls.ros_name)))
            self._writers.append(writer)
        self._announcer.add_endpoint(id(self), writer, reader=False)
        return _DdsPublisher(self, writer, cls, full)

    def create_subscription(self, msg_type: type | str, topic: str, callback: Callable[[Any], None],
                            qos: QoS = DEFAULT_QOS) -> None:
        cls = messages.message_type(msg_type)
        full = self.resolve(topic)
        with self._lock:
            self._check_alive()
            topic_entity = self._topic(cls, full)
            with no_type_information(topic_entity):
                reader = DataReader(self._subscriber, topic_entity,
                                    dds_qos(qos, messages.type_hash_user_data(cls.ros_name)))
            # any sample state: invalid samples (a writer went away) must be taken too, or the
            # condition would stay triggered and spin_once would never wait
            condition = ReadCondition(reader, SampleState.NotRead | ViewState.Any | InstanceState.Any)
            self._waitset.attach(condition)
            self._subscriptions.append(_Subscription(full, reader, condition, callback))
        self._announcer.add_endpoint(id(self), reader, reader=True)
        self._guard.set(True)

    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        if not (isinstance(period_s, (int, float)) and math.isfinite(period_s) and period_s > 0):
            raise ValueError(f"timer period must be a positive number of seconds, got {period_s!r}")
        timer = _DdsTimer(self, float(period_s), callback)
        with self._lock:
            self._check_alive()
            self._timers.append(timer)
        self._guard.set(True)  # a spin_once waiting elsewhere must recompute its deadline
        return timer

    def _remove_timer(self, timer: _DdsTimer) -> None:
        with self._lock:
            if timer in self._timers:
                self._timers.remove(timer)

    # -- clock -------------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time()

    # -- running -----------------------------------------------------------------------------------

    def spin_once(self, timeout_s: float = 0.1) -> None:
        """Wait up to `timeout_s` for a sample or a due timer, then run every callback that is due.

        A destroyed node returns at once (so a spin loop racing a shutdown ends quietly).
        """
        with self._spin_lock:
            if self._destroyed:
                return
            with self._lock:
                subscriptions, timers = list(self._subscriptions), list(self._timers)
            wait_s = min(max(0.0, timeout_s), 86400.0)  # DDS takes int64 nanoseconds
            if timers:
                wait_s = min(wait_s, max(0.0, min(t.next_due for t in timers) - time.monotonic()))
            self._waitset.wait(int(wait_s * 1e9))
            self._guard.set(False)
            for subscription in subscriptions:
                self._take(subscription)
                if self._destroyed:  # a callback destroyed the node
                    return
            self._run_timers(timers)

    def spin(self, stop: threading.Event | None = None) -> None:
        """Run callbacks until `stop` is set or the node is destroyed."""
        while not self._destroyed and (stop is None or not stop.is_set()):
            self.spin_once(0.05)

    def _take(self, subscription: _Subscription) -> None:
        while True:
            try:
                samples = subscription.reader.take(N=_TAKE_BATCH)
            except Exception:  # a sample that does not decode (a foreign writer): drop the batch, keep going
                log.exception("%s: dropped undecodable samples on %s", self.name, subscription.topic)
                return
            for sample in samples:
                info = getattr(sample, "sample_info", None)
                if info is None or not info.valid_data:
                    continue  # an instance-state change, not data
                try:
                    subscription.callback(sample)
                except Exception:  # one bad message or callback must not stop the node
                    log.exception("%s: callback for %s raised; the node keeps spinning", self.name, subscription.topic)
                if self._destroyed:
                    return
            if len(samples) < _TAKE_BATCH:
                return

    def _run_timers(self, timers: list[_DdsTimer]) -> None:
        for timer in timers:
            now = time.monotonic()
            if timer.cancelled or now < timer.next_due:
                continue
            # the next tick is on the original grid (no drift); ticks already missed are skipped
            timer.next_due += (math.floor((now - timer.next_due) / timer.period_s) + 1) * timer.period_s
            try:
                timer.callback()
            except Exception:
                log.exception("%s: timer callback raised; the node keeps spinning", self.name)
            if self._destroyed:
                return

    def _check_alive(self) -> None:
        if self._destroyed:
            raise RuntimeError(f"node {self.name} was destroyed; create a new node")

    def destroy(self) -> None:
        """Delete the node's readers, writers, topics and waitset (waiting for a running spin_once)."""
        with self._lock:
            if self._destroyed:
                return
            self._destroyed = True
        self._guard.set(True)  # wake a spin_once waiting on another thread
        self._announcer.remove_node(id(self))
        with self._spin_lock, self._lock:
            _delete(self._waitset)  # first: it detaches what is attached to it
            for subscription in self._subscriptions:
                _delete(subscription.condition)
                _delete(subscription.reader)
            for writer in self._writers:
                _delete(writer)
            for entity in (self._subscriber, self._publisher, *self._topics.values(), self._guard):
                _delete(entity)
            self._subscriptions, self._writers, self._timers, self._topics = [], [], [], {}
        _release_participant(self.domain_id)
