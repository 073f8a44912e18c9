"""ROS 2 graph discovery for the DDS backend: `ros_discovery_info`, so stock ROS 2 tools see our nodes.

The RMWs announce, per DDS participant, one `rmw_dds_common/msg/ParticipantEntitiesInfo`
on the DDS topic `ros_discovery_info` (reliable, transient local, depth 1, so late joiners
get it): the participant's GID and, per node, its name, namespace and the GIDs of its
readers and writers. `ros2 node list`, rclpy's `get_node_names()` and `ros2 topic info -v`
are built from it. `GraphAnnouncer` keeps that message for one participant and republishes
it whenever a node or an endpoint comes or goes.

GIDs are 16 bytes, a DDS GUID, as in ROS 2 Jazzy and later (Humble's were 24 bytes; Humble
peers cannot read this message, and only miss the node names).
"""


import dataclasses
import logging
import threading
from typing import Any

from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import array, sequence, uint8

log = logging.getLogger(__name__)

TOPIC = "ros_discovery_info"  # a DDS topic name as is: no `rt/` prefix


@dataclasses.dataclass
class Gid(IdlStruct, typename="rmw_dds_common::msg::dds_::Gid_"):
    data: array[uint8, 16] = dataclasses.field(default_factory=lambda: [0] * 16)


@dataclasses.dataclass
class NodeEntitiesInfo(IdlStruct, typename="rmw_dds_common::msg::dds_::NodeEntitiesInfo_"):
    node_namespace: str = ""
    node_name: str = ""
    reader_gid_seq: sequence[Gid] = dataclasses.field(default_factory=list)
    writer_gid_seq: sequence[Gid] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ParticipantEntitiesInfo(IdlStruct, typename="rmw_dds_common::msg::dds_::ParticipantEntitiesInfo_"):
    gid: Gid = dataclasses.field(default_factory=Gid)
    node_entities_info_seq: sequence[NodeEntitiesInfo] = dataclasses.field(default_factory=list)


def gid(entity: Any) -> Gid:
    """The GID of a DDS entity: its 16-byte GUID."""
    return Gid(data=list(entity.guid.bytes))


@dataclasses.dataclass
class _NodeEntry:
    namespace: str
    name: str
    readers: list[Gid] = dataclasses.field(default_factory=list)
    writers: list[Gid] = dataclasses.field(default_factory=list)


class GraphAnnouncer:
    """The `ros_discovery_info` writer of one participant and the nodes it announces."""

    def __init__(self, participant: Any) -> None:
        from cyclonedds.pub import DataWriter, Publisher
        from cyclonedds.qos import Policy, Qos
        from cyclonedds.topic import Topic
        from cyclonedds.util import duration

        from daydream.ros.dds_typeinfo import LOCK, no_type_information
        from daydream.ros.messages import type_hash_user_data

        self._lock = threading.Lock()
        self._nodes: dict[int, _NodeEntry] = {}
        self._participant_gid = gid(participant)
        qos = Qos(Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100)), Policy.History.KeepLast(1),
                  Policy.Durability.TransientLocal, Policy.DataRepresentation(use_cdrv0_representation=True),
                  Policy.DurabilityService(cleanup_delay=0, history=Policy.History.KeepLast(1), max_samples=-1,
                                           max_instances=-1, max_samples_per_instance=-1),
                  Policy.Userdata(data=type_hash_user_data("rmw_dds_common/msg/ParticipantEntitiesInfo")))
        with LOCK:
            self.topic = Topic(participant, TOPIC, ParticipantEntitiesInfo)
        self.publisher = Publisher(participant)
        with no_type_information(self.topic):
            self.writer = DataWriter(self.publisher, self.topic, qos)

    def add_node(self, key: int, namespace: str, name: str) -> None:
        with self._lock:
            self._nodes[key] = _NodeEntry(namespace, name)
        self._publish()

    def add_endpoint(self, key: int, entity: Any, reader: bool) -> None:
        with self._lock:
            entry = self._nodes.get(key)
            if entry is None:
                return
            (entry.readers if reader else entry.writers).append(gid(entity))
        self._publish()

    def remove_node(self, key: int) -> None:
        with self._lock:
            self._nodes.pop(key, None)
        self._publish()

    def _publish(self) -> None:
        with self._lock:
            msg = ParticipantEntitiesInfo(gid=self._participant_gid, node_entities_info_seq=[
                NodeEntitiesInfo(node_namespace=e.namespace, node_name=e.name, reader_gid_seq=list(e.readers),
                                 writer_gid_seq=list(e.writers)) for e in self._nodes.values()])
        try:
            self.writer.write(msg)
        except Exception:  # the graph view is a courtesy to ROS 2 tools; never fail a node over it
            log.exception("could not publish %s", TOPIC)
