"""daydream's ROS 2 graph: a small middleware port (`port`) with rclpy and Cyclone DDS backends,
ROS 2 messages (`messages`), the topic table (`topics`), the robot_driver and robot_actor
nodes, and the launch plan that both `ros2 launch` and `daydream launch` run."""
