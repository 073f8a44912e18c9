"""The `daydream` command line: `train` and `eval` (more subcommands join as the stack grows)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from daydream.config import ConfigError, load_config


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="task config: a YAML path or a name under configs/ (e.g. dmc_walker_walk)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.steps=5000 (repeatable)")
    parser.add_argument("--logdir", help="run directory (overrides the config's logdir)")


def _load(args: argparse.Namespace):
    overrides = list(args.overrides)
    if getattr(args, "logdir", None):
        overrides.append(f"logdir={args.logdir}")
    return load_config(args.config, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from daydream.runtime.train import train

    config = _load(args)
    summary = train(config, resume=args.resume)
    print(f"done: {config.train.steps} env steps in {config.logdir}; final eval return {summary.get('return', float('nan')):.1f}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from daydream.runtime.eval import run_eval

    result = run_eval(Path(args.checkpoint), episodes=args.episodes, video=args.video, overrides=args.overrides)
    for i, (ret, length) in enumerate(zip(result.returns, result.lengths)):
        print(f"episode {i}: return {ret:.1f} over {length} steps")
    print(f"mean return {result.mean_return:.1f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="daydream", description="Dreamer world-model learning for robots.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train an agent in one process (env, replay and learner together)")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --logdir from its last checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="run evaluation episodes of a checkpoint")
    p.add_argument("--checkpoint", required=True, help="a checkpoint.pt or the run directory holding it")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--video", help="save the first episode as a video at this path (.mp4 or .gif)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of the checkpoint's config, e.g. --set env.time_limit=200")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"daydream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
