"""A stock ROS 2 node for interop tests: plain rclpy on its default RMW (Fast DDS), no daydream code.

Run as a script with one JSON argument:

    {"subscribe": [[topic, type, qos], ...],           # qos: sensor | default | latched
     "publish": [[topic, type, qos, fields], ...],      # fields: the message as nested dicts/lists
     "seconds": 8, "publish_hz": 50, "until": 5, "node": "stock_peer", "services": [[name, type], ...],
     "nodes": ["/ns/name", ...],                        # with until: also wait until these nodes are seen
     "endpoint_info": [topic, ...],                     # report each topic's endpoints: [node, type hash]
     "phases": [{"seconds": 2, "publish": [...], "services": [...]}, ...]}

It subscribes with rclpy's stock profiles (`qos_profile_sensor_data` for sensors, depth 10
reliable for the rest, reliable transient-local depth 1 for latched topics), publishes each
message `publish_hz` times a second, calls each (std_srvs/Trigger) service once it is
available, and stops after `seconds` or once every subscription has `until` messages.
With `phases`, it runs them one after the other instead (each for its `seconds`, with its
own publications and service calls), keeping its subscriptions throughout. The last line
it prints is JSON: per topic the message count and the first message as a dict, per
service the response, and the fully qualified node names it saw in the graph.
"""

from __future__ import annotations

import importlib
import json
import sys
import time


def ros_class(name: str):
    package, kind, cls = name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), cls)


def to_dict(msg):
    if hasattr(msg, "get_fields_and_field_types"):
        return {name: to_dict(getattr(msg, name)) for name in msg.get_fields_and_field_types()}
    if isinstance(msg, (list, tuple)) or type(msg).__name__ in ("array", "ndarray"):
        return [to_dict(v) for v in msg]
    if isinstance(msg, bytes):
        return list(msg)
    return msg


def fill(msg, fields):
    for name, value in fields.items():
        if isinstance(value, dict):
            fill(getattr(msg, name), value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            kind = msg.get_fields_and_field_types()[name]  # e.g. sequence<trajectory_msgs/JointTrajectoryPoint>
            cls = ros_class(kind.split("<")[1].rstrip(">").replace("/", "/msg/", 1))
            items = []
            for item in value:
                child = cls()
                fill(child, item)
                items.append(child)
            setattr(msg, name, items)
        else:
            setattr(msg, name, value)
    return msg


def main(spec: dict) -> dict:
    import rclpy
    from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)

    profiles = {"sensor": qos_profile_sensor_data, "default": 10,
                "latched": QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                      durability=DurabilityPolicy.TRANSIENT_LOCAL)}
    rclpy.init(args=[])
    node = rclpy.create_node(spec.get("node", "stock_peer"))
    got: dict[str, dict] = {}
    for topic, kind, qos in spec.get("subscribe", []):
        got[topic] = {"count": 0, "first": None}

        def on_message(msg, topic=topic):
            entry = got[topic]
            if entry["first"] is None:
                entry["first"] = to_dict(msg)
            entry["count"] += 1

        node.create_subscription(ros_class(kind), topic, on_message, profiles[qos])
    publishers: dict[tuple[str, str, str], object] = {}

    def publisher(topic: str, kind: str, qos: str):
        if (topic, kind, qos) not in publishers:
            publishers[topic, kind, qos] = node.create_publisher(ros_class(kind), topic, profiles[qos])
        return publishers[topic, kind, qos]

    clients: dict[str, object] = {}
    responses: dict[str, dict] = {}
    names: set[str] = set()
    period = 1.0 / spec.get("publish_hz", 50)
    phases = spec.get("phases") or [{"seconds": spec.get("seconds", 8), "publish": spec.get("publish", []),
                                     "services": spec.get("services", []), "until": spec.get("until", 0),
                                     "nodes": spec.get("nodes", [])}]
    for phase in phases:
        sends = [(publisher(topic, kind, qos), fill(ros_class(kind)(), fields))
                 for topic, kind, qos, fields in phase.get("publish", [])]
        calls = []
        for name, kind in phase.get("services", []):
            clients.setdefault(name, node.create_client(ros_class(kind), name))
            calls.append((name, clients[name], ros_class(kind)))
        pending: dict[str, object] = {}
        deadline = time.monotonic() + phase.get("seconds", 8)
        until = phase.get("until", 0)
        next_publish = time.monotonic()
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.005)
            now = time.monotonic()
            if now >= next_publish:
                next_publish = now + period
                for pub, msg in sends:
                    pub.publish(msg)
            for name, client, kind in calls:
                if name not in pending and client.service_is_ready():
                    pending[name] = client.call_async(kind.Request())
                future = pending.get(name)
                if future is not None and future.done() and name not in responses:
                    responses[name] = to_dict(future.result())
            names.update(f"{ns.rstrip('/')}/{name}" for name, ns in node.get_node_names_and_namespaces())
            if (until and all(v["count"] >= until for v in got.values()) and all(c[0] in responses for c in calls)
                    and set(phase.get("nodes", [])) <= names):
                break
    endpoints = {}
    for topic in spec.get("endpoint_info", []):  # who publishes / subscribes, by node, with the type hash seen
        endpoints[topic] = {
            kind: sorted([f"{i.node_namespace.rstrip('/')}/{i.node_name}", str(i.topic_type_hash)] for i in infos)
            for kind, infos in (("publishers", node.get_publishers_info_by_topic(topic)),
                                ("subscriptions", node.get_subscriptions_info_by_topic(topic)))}
    node.destroy_node()
    rclpy.shutdown()
    return {"topics": got, "services": responses, "nodes": sorted(names), "endpoints": endpoints}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
