"""World Models' evaluation protocol, one track at a time: the exported policy and a random policy on
the tracks the `eval` stage uses (seed + 100000 + k), one JSON line per track as it finishes, so a
run stopped early still counts the tracks it did.

    python benchmarks/bench_worldmodels_eval.py --config worldmodels_carracing --logdir RUN \
        --first 10 --tracks 90 --random-every 2 [--set key=value ...]

`--random-every N` runs the random policy on every Nth track too (1 = every track, 0 = never).
Lines: {"track": k, "policy": "onnx"|"random", "return": R}; `--summary FILE...` instead reads such
lines (and eval.json files) and prints the mean, std and count per policy.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def evaluate(args: argparse.Namespace) -> None:
    from daydream.config import load_config
    from daydream.worldmodels.pipeline import WorldModelsRun
    from daydream.worldmodels.policy import RandomActing

    config = load_config(args.config, [*args.overrides, f"logdir={args.logdir}"])
    run = WorldModelsRun(config, progress=False)
    policy = run.acting(args.runtime)
    low, high = run.action_box()
    random = RandomActing(low, high, config.seed + args.first)
    for k in range(args.first, args.first + args.tracks):
        seed = config.seed + 100_000 + k
        print(json.dumps({"track": k, "policy": args.runtime,
                          "return": run.episode(policy, seed, config.worldmodels.eval_steps)}), flush=True)
        if args.random_every and k % args.random_every == 0:
            print(json.dumps({"track": k, "policy": "random",
                              "return": run.episode(random, seed, config.worldmodels.eval_steps)}), flush=True)


def summary(paths: list[str]) -> None:
    returns: dict[str, dict[int, float]] = {}
    for path in paths:
        if path.endswith(".json"):  # an eval stage's eval.json: tracks 0..n-1
            with open(path) as f:
                data = json.load(f)
            returns.setdefault(data["runtime"], {}).update(enumerate(data["returns"]))
            returns.setdefault("random", {}).update(enumerate(data.get("random_returns", [])))
            continue
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.startswith("{")]
        for row in rows:
            returns.setdefault(row["policy"], {})[row["track"]] = row["return"]
    for policy, by_track in returns.items():
        values = np.array(list(by_track.values()))
        print(json.dumps({"policy": policy, "tracks": len(values), "mean": round(float(values.mean()), 1),
                          "std": round(float(values.std()), 1), "min": round(float(values.min()), 1),
                          "max": round(float(values.max()), 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="worldmodels_carracing")
    parser.add_argument("--logdir")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--tracks", type=int, default=100)
    parser.add_argument("--random-every", type=int, default=1)
    parser.add_argument("--runtime", choices=["onnx", "torch"], default="onnx")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--summary", nargs="+", help="summarise these JSON-lines outputs / eval.json files")
    args = parser.parse_args()
    if args.summary:
        summary(args.summary)
    elif not args.logdir:
        sys.exit("--logdir is required to evaluate")
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
