"""The `robot_actor` node: the env bridge and the actor, on the robot's computer.

It subscribes to the robot_driver's sensor topics and presents them as the usual
`RobotEnv` (through `TopicsDriver`: time-synchronised observations at the control rate,
staleness checks), runs the ONNX policy (onnxruntime) and publishes joint commands, and
streams experience to / takes policies from the learner over ZMQ exactly as
`daydream actor` does (it *is* that `Actor`, with this env).

When the sensors go stale (the robot_driver died, the network dropped), the actor says
so, stops commanding (the robot's watchdog takes over) and waits for fresh data, then
starts a new episode. The middleware spins on a background thread; the control loop
runs on the main thread.

Run: `python -m daydream.ros.actor_node --config a1_walk --learner tcp://HOST:5555`.
"""

from __future__ import annotations

import logging
import sys
import threading

from daydream.config import POLICY_RUNTIMES, Config, ConfigError
from daydream.drivers import DriverError, DriverSpec, driver_class
from daydream.ros.conversions import sensor_topics
from daydream.ros.node_main import load_node_config, node_parser, open_node, start_node
from daydream.ros.topics_driver import TopicsDriver

log = logging.getLogger(__name__)


def robot_spec(config: Config) -> DriverSpec:
    """The robot's declared spec, from its driver class (constructed, never opened: no device is touched)."""
    from daydream.drivers.registry import driver_arguments

    driver = driver_class(config.robot.driver)(**driver_arguments(config.robot, config.seed))
    return driver.spec


def wait_for_robot(driver: TopicsDriver, config: Config, stop: threading.Event) -> None:
    """Block until the robot's sensors are fresh (the robot_driver may start after us)."""
    while not stop.is_set():
        try:
            driver.wait_for_sample(config.ros.sensor_timeout_s, config.robot.stale_timeout_s)
            return
        except DriverError as exc:
            log.warning("waiting for the robot: %s", exc)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from daydream.envs import make_env
    from daydream.runtime.actor import Actor

    parser = node_parser("robot_actor")
    parser.add_argument("--learner", help="the learner's address tcp://HOST:PORT (default: transport.learner)")
    parser.add_argument("--policy-runtime", "--policy", dest="policy", choices=POLICY_RUNTIMES,
                        help="policy runtime (default: transport.policy_runtime)")
    parser.add_argument("--id", help="actor id (default: transport.actor_id, else the hostname)")
    args, stops = start_node("robot_actor", parser, argv)
    try:
        config = load_node_config(args)
        if args.id:
            config = config.replace(**{"transport.actor_id": args.id})
        if config.env.backend != "robot":
            raise ConfigError(f"the robot actor needs env.backend: robot, the config has {config.env.backend!r}")
        spec = robot_spec(config)
        node = open_node("robot_actor", config)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"robot_actor: error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    spinner = threading.Thread(target=node.spin, args=(stop,), name="ros-spin", daemon=True)
    actor = None
    try:
        driver = TopicsDriver(node, spec, sensor_topics(spec, config.robot.camera), config.ros.sync_tolerance_s,
                              config.ros.command_type)
        spinner.start()
        log.info("robot actor waiting for the robot's sensor topics under %s", node.namespace)
        wait_for_robot(driver, config, stop)
        env = make_env(config.env, seed=config.seed, robot=config.robot, driver=driver)
        actor = Actor(config, args.learner, args.policy, env=env)
        actor.run()
    except KeyboardInterrupt:
        log.info("robot actor stopping")
    finally:
        try:
            with stops.interruptible():
                if actor is not None:
                    actor.close()  # drains its experience; a second Ctrl-C may cut that short (it is spooled)
        except KeyboardInterrupt:
            log.warning("robot actor: drain interrupted; unsent experience stays in the spool")
        finally:
            stop.set()
            spinner.join(timeout=2.0)
            node.destroy()
    log.info("robot_actor stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
