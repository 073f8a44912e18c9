"""The `daydream` command line.

`train` (one process) and `eval`; the asynchronous stack: `learner`, `actor`, `run`
(a learner and N actors on this machine, then a report) and `keys` (CURVE keys for the
links); `report` (learning curve, video and evaluation of a run's exported policy) and
`status` (a running learner's counters); for new robots, `driver check` (the driver
conformance kit) and `new-robot` (a driver, task, config and tests to start from).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from daydream.config import POLICY_RUNTIMES, ConfigError, load_config
from daydream.runtime.interrupts import dump_stacks_on_sigusr1, stop_on_interrupt, stop_on_sigterm


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="task config: a YAML path or a name under configs/ (e.g. dmc_walker_walk)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.steps=5000 (repeatable)")
    parser.add_argument("--logdir", help="run directory (overrides the config's logdir)")


def _load(args: argparse.Namespace, extra: list[str] = ()):
    overrides = [*args.overrides, *extra]
    if getattr(args, "logdir", None):
        overrides.append(f"logdir={args.logdir}")
    return load_config(args.config, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from daydream.runtime.train import train

    config = _load(args)
    if config.agent == "worldmodels":  # World Models trains in stages, always resumed where they were
        return _worldmodels_stage(config, "all")
    summary = train(config, resume=args.resume)
    print(f"done: {config.train.steps} env steps in {config.logdir}; final eval return "
          f"{summary.get('return', float('nan')):.1f}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from daydream.runtime.evaluate import run_eval

    result = run_eval(Path(args.checkpoint), episodes=args.episodes, video=args.video, overrides=args.overrides)
    for i, (ret, length) in enumerate(zip(result.returns, result.lengths)):
        print(f"episode {i}: return {ret:.1f} over {length} steps")
    print(f"mean return {result.mean_return:.1f}")
    return 0


def cmd_worldmodels(args: argparse.Namespace) -> int:
    config = _load(args, [f"worldmodels.eval_runtime={args.runtime}"] if args.runtime else [])
    return _worldmodels_stage(config, args.stage)


def _worldmodels_stage(config, stage: str) -> int:
    from daydream.worldmodels.pipeline import WorldModelsRun

    run = WorldModelsRun(config)
    if stage == "dream-table":
        for row in run.dream_table():
            print(f"tau {row['temperature']}: virtual {row['virtual_mean']:.1f} +- {row['virtual_std']:.1f}, actual "
                  f"{row['actual_mean']:.1f} +- {row['actual_std']:.1f} over {row['tracks']} tracks")
        return 0
    if stage == "all":
        result = run.run_all()
    else:
        run.run(stage)
        if stage != "eval":
            print(f"World Models: {stage} done in {run.directory}")
            return 0
        result = json.loads((run.directory / "eval.json").read_text())
    line = (f"World Models: mean return {result['mean_return']:.1f} +- {result['std_return']:.1f} over "
            f"{result['tracks']} tracks ({result['runtime']})")
    if "random_mean_return" in result:
        line += f"; random policy {result['random_mean_return']:.1f} over {result['random_tracks']}"
    print(f"{line} ({run.directory / 'eval.json'})")
    return 0


def cmd_learner(args: argparse.Namespace) -> int:
    from daydream.runtime.learner import run_learner

    from daydream.runtime.learner import extended_steps

    config = _load(args)
    stop_on_sigterm()
    learner = run_learner(config, resume=args.resume)
    if learner.finished_before_start:
        more = extended_steps(learner.received_steps, config.train.steps)
        print(f"the run in {config.logdir} is already finished: {learner.received_steps} steps received, train.steps "
              f"is {config.train.steps}. To train on, give it a larger budget:\n"
              f"  daydream learner --config {args.config} --logdir {config.logdir} --resume "
              f"--set train.steps={more}")
        return 0
    print(f"done: {learner.received_steps} steps received in {config.logdir}")
    return 0


def cmd_actor(args: argparse.Namespace) -> int:
    from daydream.runtime.actor import run_actor

    overrides = [f"transport.actor_id={args.id}"] if args.id else []
    config = _load(args, overrides)
    # Ctrl-C / SIGTERM also set an event the control loop checks: a robot stops even if a library swallowed the
    # KeyboardInterrupt
    stop = stop_on_interrupt()
    counters = run_actor(config, learner=args.learner, policy=args.policy, max_steps=args.steps, stop=stop)
    why = " (the learner finished the run)" if counters.get("learner_done") else ""
    print(f"actor done{why}: {counters['steps_spooled']} steps spooled in total")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from daydream.runtime.launcher import LocalRun

    config = _load(args)
    overrides = list(args.overrides)
    run = LocalRun(config, args.config, overrides, args.actors, resume=args.resume, policy=args.policy)
    code = run.run()
    if run.interrupted or code != 0:
        print(f"stopped; `daydream report {config.logdir}` makes the learning curve, video and evaluation")
        return code
    if args.report:
        return _report(Path(config.logdir), args.report_episodes, video=True)
    return 0


def _report(logdir: Path, episodes: int, video: bool) -> int:
    from daydream.runtime.report import format_report, make_report

    print(format_report(make_report(logdir, episodes=episodes, video=video)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if not Path(args.logdir).is_dir():
        raise FileNotFoundError(f"no run directory at {args.logdir}")
    return _report(Path(args.logdir), args.episodes, video=not args.no_video)


def cmd_launch(args: argparse.Namespace) -> int:
    from daydream.ros.graph_run import GraphRun
    from daydream.ros.launch_plan import make_plan

    overrides = list(args.overrides) + ([f"logdir={args.logdir}"] if args.logdir else [])
    # the Cyclone DDS backend unless --set ros.backend=... picks another (rclpy: ROS 2 installed or the ros extra)
    chosen = any(item.startswith("ros.backend=") for item in overrides)
    plan = make_plan(args.config, overrides, sim=args.sim, learner=args.learner, backend=None if chosen else "dds")
    stop_on_sigterm()  # SIGTERM stops the graph in order like Ctrl-C, instead of orphaning its processes
    return GraphRun(plan, restart=not args.no_restart).run()


def cmd_status(args: argparse.Namespace) -> int:
    from daydream.runtime.status import format_learner_status, read_status

    if not Path(args.logdir).is_dir():
        raise FileNotFoundError(f"no run directory at {args.logdir}")
    print(format_learner_status(read_status(args.logdir)))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from daydream.transport.codec import check_actor_id
    from daydream.transport.keys import make_key_folder

    for actor_id in args.actors:
        check_actor_id(actor_id)
    written = make_key_folder(args.dir, args.actors)
    for path in written:
        print(path)
    print(f"keys in {args.dir}: the learner needs learner.key_secret and allowed/; each actor needs learner.key and "
          "its own <actor_id>.key_secret. Set transport.curve.enabled=true and transport.curve.keys_dir.")
    return 0


def cmd_driver_check(args: argparse.Namespace) -> int:
    """Run the conformance kit against a driver; 0 if every check passes, 1 if one fails, 2 on usage errors."""
    from daydream.drivers.conformance import check_driver

    report = check_driver(args.target, args.config, args.overrides, args.args, args.only or None, args.verbose)
    print(report.format())
    return 0 if report.ok else 1


def cmd_new_robot(args: argparse.Namespace) -> int:
    from daydream.drivers.scaffold import class_prefix, new_robot

    for path in new_robot(args.name, args.dir):
        print(f"wrote {path}")
    name, prefix = args.name, class_prefix(args.name)
    go = "" if Path(args.dir).resolve() == Path.cwd() else f"  cd {args.dir}\n"
    print(f"next:\n{go}  export PYTHONPATH=$PWD\n"
          f"  daydream driver check {name}.driver:{prefix}Driver --config configs/{name}.yaml\n"
          f"  python -m pytest tests/test_{name}.py\n"
          f"then fill in the HARDWARE blocks of {name}/driver.py: see docs/adding-a-robot.md")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="daydream", description="Dreamer world-model learning for robots.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train an agent in one process (env, replay and learner together)")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --logdir from its last checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("worldmodels", help="World Models (V + M + C) in stages: collect, train-vae, encode, "
                       "train-rnn, train-controller, export, eval; `all` runs the unfinished ones; dream-table "
                       "trains C in M's dream at several temperatures")
    p.add_argument("stage", choices=["all", "collect", "train-vae", "encode", "train-rnn", "train-controller", "export",
                                     "eval", "dream-table"])
    p.add_argument("--runtime", choices=["onnx", "torch"], help="eval: run the exported ONNX policy or the torch one "
                   "(sets worldmodels.eval_runtime)")
    _add_config_args(p)
    p.set_defaults(func=cmd_worldmodels)

    p = sub.add_parser("eval", help="run evaluation episodes of a checkpoint")
    p.add_argument("--checkpoint", required=True, help="a checkpoint.pt or the run directory holding it")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--video", help="save the first episode as a video at this path (.mp4 or .gif)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of the checkpoint's config, e.g. --set env.time_limit=200")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("learner", help="train on experience streamed by actors; publish policies to them")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --logdir from its last checkpoint")
    p.set_defaults(func=cmd_learner)

    p = sub.add_parser("actor", help="run an env with the newest policy and stream its experience to a learner")
    _add_config_args(p)
    p.add_argument("--learner", help="the learner's address tcp://HOST:PORT (default: transport.learner); "
                                     "policies come from PORT+1")
    p.add_argument("--policy-runtime", "--policy", dest="policy", choices=POLICY_RUNTIMES,
                   help="policy runtime (default: transport.policy_runtime)")
    p.add_argument("--id", help="actor id (default: transport.actor_id, else the hostname)")
    p.add_argument("--steps", type=int, default=0, help="stop after this many env steps (0: run until stopped)")
    p.set_defaults(func=cmd_actor)

    p = sub.add_parser("run", help="start a learner and N actors on this machine as separate processes")
    _add_config_args(p)
    p.add_argument("--actors", type=int, default=1, help="number of actor processes")
    p.add_argument("--policy-runtime", "--policy", dest="policy", choices=POLICY_RUNTIMES,
                   help="actors' policy runtime (default: transport.policy_runtime)")
    p.add_argument("--resume", action="store_true", help="continue the run in --logdir")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="skip the report (learning curve, video, evaluation) after training")
    p.add_argument("--report-episodes", type=int, default=0,
                   help="evaluation episodes of the report (default: train.eval_episodes, at least 1)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("launch", help="run a robot's ROS 2 graph (robot_driver, robot_actor[, learner]) as processes "
                                      "over Cyclone DDS, without ROS 2 (what `ros2 launch daydream ...` starts)")
    p.add_argument("config", help="robot config: a YAML path or a name under configs/ (e.g. a1_walk)")
    p.add_argument("--sim", action="store_true",
                   help="the robot_driver runs the MuJoCo A1 instead of the config's driver")
    p.add_argument("--learner", help="'local' to start a learner here, or the learner's tcp://HOST:PORT "
                                     "(default: transport.learner)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key in every process (repeatable)")
    p.add_argument("--logdir", help="run directory (overrides the config's logdir)")
    p.add_argument("--no-restart", action="store_true", help="do not restart a process that exits")
    p.set_defaults(func=cmd_launch)

    p = sub.add_parser("status", help="show a learner's counters and its connected actors (rates, policy lag)")
    p.add_argument("logdir", help="the learner's run directory")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("report", help="a run's learning curve (PNG), a video and an evaluation of its exported policy")
    p.add_argument("logdir", help="the run directory")
    p.add_argument("--episodes", type=int, default=0,
                   help="evaluation episodes (the video shows the first; default: the run's train.eval_episodes)")
    p.add_argument("--no-video", action="store_true", help="evaluate without rendering a video")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("driver", help="robot driver tools: `driver check` runs the conformance kit against one")
    driver_sub = p.add_subparsers(dest="driver_command", required=True)
    c = driver_sub.add_parser("check", help="run the driver conformance kit; prints a report, exits 1 if a check "
                                            "fails")
    c.add_argument("target", help="the driver: a registry name (mujoco_a1), a `daydream.drivers` entry point, or "
                                  "package.module:Class")
    c.add_argument("--config", help="robot config (a YAML path or a name under configs/): the constructor "
                                    "arguments come from robot.driver_args (plus seed, control_hz, camera where the "
                                    "driver takes them) and the watchdog's safe mode from robot.safety.safe_mode")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of --config (repeatable)")
    c.add_argument("--arg", dest="args", action="append", default=[], metavar="KEY=VALUE",
                   help="a driver constructor argument (YAML value), over the config's (repeatable)")
    c.add_argument("--only", action="append", metavar="CHECK",
                   help="run only this check (repeatable): spec, health, read, stamps, rate, command_shape, "
                        "command_limits, close_reopen, safe_modes, watchdog")
    c.set_defaults(func=cmd_driver_check)

    p = sub.add_parser("new-robot", help="scaffold a robot: driver (with a simulated stand-in), task, config, tests")
    p.add_argument("name", help="the robot's package name: a lowercase Python identifier, e.g. myarm")
    p.add_argument("--dir", default=".", help="where to write NAME/, configs/ and tests/ (default: here)")
    p.set_defaults(func=cmd_new_robot)

    p = sub.add_parser("keys", help="make CURVE keys for a learner and its actors")
    p.add_argument("--dir", default="keys", help="key folder (default: keys)")
    p.add_argument("--actors", nargs="+", default=[], metavar="ACTOR_ID", help="actor ids to make and admit keys for")
    p.set_defaults(func=cmd_keys)
    return parser


def restore_sigint() -> None:
    """Make Ctrl-C / SIGINT raise KeyboardInterrupt even if this process inherited it ignored.

    A shell starts background jobs (`cmd &` in a script, nohup) with SIGINT ignored and
    Python then keeps it ignored, so a launcher's SIGINT would never reach its children's
    clean shutdown (spool, drain, checkpoint).
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    restore_sigint()
    dump_stacks_on_sigusr1()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, FileExistsError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"daydream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
