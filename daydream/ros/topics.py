"""The topics of daydream's ROS 2 graph: names (relative, under the robot's namespace) and types.

One table, read by the nodes, the launch plan and the docs, so a remapping or a new
sensor is changed in one place. Types are ROS 2's standard messages, so `ros2 topic echo`
and `ros2 bag record` work on them unchanged (rviz would also need TF and a robot
description, which nothing publishes yet).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str        # relative: resolved under the node's namespace
    type: str        # ROS 2 message type
    qos: str         # "sensor" (best effort, depth 5), "default" (reliable, depth 10) or "latched"
    publisher: str   # the node that publishes it
    about: str


JOINT_STATES = Topic("joint_states", "sensor_msgs/msg/JointState", "sensor", "robot_driver",
                     "joint positions (rad), velocities (rad/s) and efforts (N·m), in the driver's joint order")
IMU = Topic("imu", "sensor_msgs/msg/Imu", "sensor", "robot_driver",
            "orientation (quaternion), angular velocity (rad/s), linear acceleration (m/s², gravity included)")
FOOT_CONTACTS = Topic("foot_contacts", "std_msgs/msg/Float64MultiArray", "sensor", "robot_driver",
                      "1.0 per foot in contact, else 0.0, in the driver's foot order (layout label \"feet\")")
BASE_VELOCITY = Topic("base_velocity", "geometry_msgs/msg/TwistStamped", "sensor", "robot_driver",
                      "body-frame linear velocity (m/s; a state estimator's on hardware) for rewards")
IMAGE = Topic("camera/image_raw", "sensor_msgs/msg/Image", "sensor", "robot_driver",
              "rgb8 camera frames (only with robot.camera: true)")
JOINT_COMMANDS = Topic("joint_commands", "std_msgs/msg/Float64MultiArray", "default", "robot_actor",
                       "joint position targets (rad) in the driver's joint order")
JOINT_TRAJECTORY = Topic("joint_trajectory", "trajectory_msgs/msg/JointTrajectory", "default", "(any)",
                         "alternative command input: the first point's positions, joints matched by name")
ESTOP = Topic("estop", "std_msgs/msg/Bool", "default", "(operator)",
              "true latches the e-stop (safe mode); false is ignored (clear with ~/clear_estop)")
CLEAR_ESTOP = "~/clear_estop"  # std_srvs/srv/Trigger served by the robot_driver (rclpy backend): clears the e-stop
SAFETY_MODE = Topic("safety_mode", "std_msgs/msg/String", "latched", "robot_driver",
                    "the actuators' mode: active, damping, hold or estop, with the reason")

SENSOR_TOPICS = (JOINT_STATES, IMU, FOOT_CONTACTS, BASE_VELOCITY)
ALL_TOPICS = (*SENSOR_TOPICS, IMAGE, JOINT_COMMANDS, JOINT_TRAJECTORY, ESTOP, SAFETY_MODE)
TYPE_OF = {t.name: t.type for t in ALL_TOPICS}  # topic name -> ROS 2 message type
