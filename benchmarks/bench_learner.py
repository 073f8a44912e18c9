"""Learner speed per model size preset: updates/s at batch B x T, the env steps/s that
sustains at the train ratio, and policy-step latency. Prints one JSON object per line.

    python benchmarks/bench_learner.py --sizes tiny size12m --updates 5 --obs image
    python benchmarks/bench_learner.py --device cuda --precision bfloat16 --compile
    python benchmarks/bench_learner.py --sizes tiny --obs proprio --against /work/baseline --rounds 4
    python benchmarks/bench_learner.py --sizes tiny --obs proprio --against . --set-new behavior.actor_grad=reinforce

Inputs are synthetic (random observations of the right shapes), so this measures the
learner alone; replay sampling runs in a prefetch thread during training.

`--against TREE` times another checkout of this repository (e.g. a `git worktree` of the
commit before a change) side by side: each round runs this script once in a fresh
process per tree (PYTHONPATH = that tree, so each imports its own `daydream`),
alternating, so drift of a shared machine hits both alike; it prints each round and the
ratios of the medians (`speedup` = the other tree's update time / this tree's; also in
process CPU time, which a busy machine distorts far less than wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from daydream.agent import Agent
from daydream.agent.synthetic import synthetic_batch
from daydream.config import load_config

try:
    from daydream.runtime.host_memory import configure_host_memory
except ImportError:  # an older tree, timed side by side: its allocator as it was
    configure_host_memory = None


def spaces_for(obs: str) -> tuple[gym.spaces.Dict, gym.spaces.Box]:
    if obs == "image":
        obs_space = {"image": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)}
    else:  # walker-walk's proprio sizes
        obs_space = {"orientations": gym.spaces.Box(-np.inf, np.inf, (14,), np.float32),
                     "height": gym.spaces.Box(-np.inf, np.inf, (1,), np.float32),
                     "velocity": gym.spaces.Box(-np.inf, np.inf, (9,), np.float32)}
    obs_space["is_first"] = gym.spaces.Box(0, 1, (), bool)
    return gym.spaces.Dict(obs_space), gym.spaces.Box(-1, 1, (6,), np.float32)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_agent(size: str, args: argparse.Namespace) -> tuple[Agent, dict[str, np.ndarray], gym.spaces.Dict]:
    """The agent of one size preset as `args` set it up, a synthetic batch, the obs space."""
    overrides = [f"size={size}", f"device={args.device}", f"precision={args.precision}",
                 f"compile={str(args.compile).lower()}",
                 f"replay.batch_size={args.batch}", f"replay.batch_length={args.length}", *args.set]
    if args.obs == "image":
        overrides += ["model.mlp_keys=^$", "model.cnn_keys=^image$"]
    config = load_config(None, overrides)
    if configure_host_memory is not None:
        configure_host_memory(config.host_memory)  # as the learner does (open_run)
    obs_space, act_space = spaces_for(args.obs)
    agent = Agent(config, obs_space, act_space)
    batch = synthetic_batch(obs_space, act_space.shape[0], args.batch, args.length)
    return agent, batch, obs_space


def bench(size: str, args: argparse.Namespace) -> dict:
    agent, batch, obs_space = make_agent(size, args)
    config = agent.config
    first = None
    for _ in range(args.warmup):
        start = time.perf_counter()
        agent.train(batch)
        sync(agent.device)
        first = time.perf_counter() - start if first is None else first
    times, cpu_times = [], []
    for _ in range(args.updates):
        start, cpu_start = time.perf_counter(), time.process_time()
        metrics = agent.train(batch)
        sync(agent.device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    assert all(np.isfinite(float(v)) for v in metrics.values())

    obs = {k: v[:1, 0] for k, v in batch.items() if k in obs_space.spaces}
    state = None
    latencies = []
    for i in range(args.policy_steps + 10):
        start = time.perf_counter()
        _, state = agent.policy(obs, state)
        sync(agent.device)
        if i >= 10:
            latencies.append(time.perf_counter() - start)
    update_s = statistics.median(times)
    graph = getattr(agent, "update_graph", None)
    steps_per_update = args.batch * args.length / config.train.train_ratio
    return {
        "bench": "learner",
        "size": size,
        "obs": args.obs,
        "device": str(agent.device),
        "precision": str(agent.dtype).replace("torch.", ""),
        "compile": config.compile,  # --compile or --set compile=true
        "cuda_graph": getattr(config, "cuda_graph", False),  # getattr: an older tree's package (--against)
        # seconds the update's CUDA graph capture took (within the warm-up, whose first update is eager)
        "capture_s": round(graph.capture_s, 2) if graph and graph.capture_s else None,
        "params_m": round(sum(p.numel() for p in agent.nets.parameters() if p.requires_grad) / 1e6, 2),
        "batch": [args.batch, args.length],
        "update_ms": round(update_s * 1000, 1),
        # CPU time of this process per update: on a shared machine far steadier than wall time
        # (it leaves out the time other processes hold the cores), comparable at one thread
        "update_cpu_ms": round(statistics.median(cpu_times) * 1000, 1),
        "first_update_s": round(first, 2) if first is not None else None,  # with compile: compile + run
        "updates_per_s": round(1 / update_s, 3),
        "env_steps_per_s_at_ratio": round(steps_per_update / update_s, 2),
        "train_ratio": config.train.train_ratio,
        # the most replayed steps per env step the learner keeps up with for one robot acting at 20 Hz
        "max_train_ratio_at_20hz": round(args.batch * args.length / update_s / 20.0, 1),
        "policy_ms_p50": round(1000 * float(np.percentile(latencies, 50)), 3),
        "policy_ms_p99": round(1000 * float(np.percentile(latencies, 99)), 3),
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }


def side_by_side(args: argparse.Namespace, passthrough: list[str], new_only: list[str]) -> None:
    """Alternate fresh processes of this tree and `args.against` for `args.rounds` rounds; print the ratio.
    `new_only` (--compile, --set-new) goes to this tree only: the old tree runs eager, without them."""
    trees = {"new": Path(__file__).resolve().parents[1], "old": Path(args.against).resolve()}
    runs: dict[str, list[dict]] = {"new": [], "old": []}
    for r in range(args.rounds):
        for name in (("new", "old") if r % 2 == 0 else ("old", "new")):
            tree = trees[name]
            threads = str(args.threads or torch.get_num_threads())
            env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": threads}
            argv = [sys.executable, str(Path(__file__).resolve()), *passthrough]  # this script, that tree's package
            out = subprocess.run(argv + (new_only if name == "new" else []), cwd=tree,
                                 env=env, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"bench_learner.py in {tree} failed:\n{out.stderr[-3000:]}")
            for line in out.stdout.splitlines():
                if line.startswith("{"):
                    rec = {**json.loads(line), "tree": name, "round": r}
                    runs[name].append(rec)
                    print(json.dumps(rec), flush=True)
    for size in dict.fromkeys(rec["size"] for rec in runs["new"]):
        med = {n: statistics.median(rec["update_ms"] for rec in runs[n] if rec["size"] == size) for n in runs}
        cpu = {n: statistics.median(rec.get("update_cpu_ms", float("nan")) for rec in runs[n] if rec["size"] == size)
               for n in runs}
        print(json.dumps({"bench": "learner_side_by_side", "size": size, "obs": args.obs,
                          "batch": [args.batch, args.length],
                          "new_tree": str(trees["new"]), "old_tree": str(trees["old"]), "rounds": args.rounds,
                          "compile_new": runs["new"][-1]["compile"], "set": args.set, "set_new": args.set_new,
                          "update_ms_new": round(med["new"], 1),
                          "update_ms_old": round(med["old"], 1),
                          "speedup": round(med["old"] / med["new"], 2), "update_cpu_ms_new": round(cpu["new"], 1),
                          "update_cpu_ms_old": round(cpu["old"], 1),
                          "speedup_cpu_time": round(cpu["old"] / cpu["new"], 2)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "size12m", "size25m", "size50m"])
    parser.add_argument("--obs", choices=["image", "proprio"], default="image")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--policy-steps", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--against", default="", help="another checkout to time side by side (see above)")
    parser.add_argument("--rounds", type=int, default=3, help="with --against: alternating runs per tree")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override (repeatable), e.g. behavior.actor_grad=reinforce")
    parser.add_argument("--set-new", action="append", default=[], metavar="KEY=VALUE",
                        help="with --against: an override for this tree only (e.g. against the same tree)")
    args = parser.parse_args()
    if args.against:
        side_by_side(args, ["--sizes", *args.sizes, "--obs", args.obs, "--batch", str(args.batch), "--length",
                            str(args.length), "--updates", str(args.updates), "--warmup", str(args.warmup),
                            "--policy-steps", str(args.policy_steps), "--device", args.device, "--precision",
                            args.precision, *[f"--set={o}" for o in args.set]],
                     (["--compile"] if args.compile else []) + [f"--set={o}" for o in args.set_new])
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    for size in args.sizes:
        print(json.dumps(bench(size, args)), flush=True)


if __name__ == "__main__":
    main()
