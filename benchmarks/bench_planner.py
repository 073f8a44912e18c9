"""PlaNet planning-step latency on one CPU core: the robot's numpy + onnxruntime CEM (and the torch planner).

    python benchmarks/bench_planner.py                      # PlaNet's 1000 x 12 x 10, then smaller settings
    python benchmarks/bench_planner.py --models tiny --torch-steps 0

One planning step = the filter step for one observation, then CEM: `iterations` times,
`candidates` sequences rolled `horizon` steps through the imagination graph, refit to the
top 10%. onnxruntime runs with one intra-op thread, torch with one thread. Models: `tiny`
(size tiny, Gaussian latent of 16: configs/planet_pendulum.yaml) and `planet` (the model of
configs/planet_cartpole_swingup.yaml: deter 200, stoch 30, units 300, 2-layer reward head),
both on cartpole's proprio observation (5 numbers) and one action. Prints one JSON line per
(model, setting) with p50/p99 wall ms, p50 CPU ms and whether the CPU time fits a 20 Hz control period (50 ms).
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch

from daydream.agent import Agent
from daydream.agent.synthetic import synthetic_batch
from daydream.config import load_config
from daydream.export.onnx_export import export_onnx
from daydream.export.onnx_planner import OnnxPlanner

# (candidates, horizon, iterations): PlaNet's first, then what a 50 ms budget may take instead
SETTINGS = [(1000, 12, 10), (1000, 12, 5), (500, 12, 10), (500, 12, 5), (300, 12, 5), (200, 12, 4), (100, 12, 5),
            (1000, 8, 5), (300, 8, 3), (100, 12, 2), (100, 8, 3), (50, 12, 4)]
MODELS = {
    "tiny": ["size=tiny", "model.latent=gaussian", "model.stoch=16"],
    "planet": ["model.latent=gaussian", "model.stoch=30", "model.deter=200", "model.hidden=200", "model.blocks=1",
               "model.units=300", "model.head_layers=2"],
}


def spaces() -> tuple[gym.spaces.Dict, gym.spaces.Box]:
    obs = {"position": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
           "velocity": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
           "is_first": gym.spaces.Box(0, 1, (), bool)}
    return gym.spaces.Dict(obs), gym.spaces.Box(-1, 1, (1,), np.float32)


def time_steps(step, obs_seq: list[dict[str, np.ndarray]], steps: int, warmup: int) -> dict[str, float]:
    """p50/p99 wall ms per planning step, and p50 process CPU ms (on a shared, loaded machine the CPU time
    of this single-threaded step is what it would take on a core of its own)."""
    state, wall, cpu = None, [], []
    for i in range(steps + warmup):
        start, start_cpu = time.perf_counter(), time.process_time()
        _, state = step(obs_seq[i % len(obs_seq)], state)
        if i >= warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    ms, cpu_ms = np.array(wall) * 1000, np.array(cpu) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "cpu_p50_ms": round(float(np.percentile(cpu_ms, 50)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=20, help="timed planning steps per setting (onnxruntime)")
    parser.add_argument("--torch-steps", type=int, default=3, help="timed steps of the torch planner (0: skip)")
    parser.add_argument("--settings", nargs="*", default=None, metavar="CxHxI",
                        help="only these settings, e.g. 100x12x2 (default: all of SETTINGS)")
    parser.add_argument("--budget-ms", type=float, default=50.0, help="the control period to fit (20 Hz: 50 ms)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    obs_space, act_space = spaces()
    batch = synthetic_batch(obs_space, 1, 1, 16)
    obs_seq = [{k: v[:, t] for k, v in batch.items() if k in obs_space.spaces} for t in range(16)]
    for model in args.models:
        chosen = [tuple(int(x) for x in s.split("x")) for s in args.settings] if args.settings else SETTINGS
        for candidates, horizon, iterations in chosen:
            top_k = max(1, candidates // 10)
            knobs = [f"behavior.planner.candidates={candidates}", f"behavior.planner.horizon={horizon}",
                     f"behavior.planner.iterations={iterations}", f"behavior.planner.top_k={top_k}"]
            config = load_config(None, ["device=cpu", "behavior.kind=planet", *MODELS[model], *knobs])
            agent = Agent(config, obs_space, act_space)
            planner = OnnxPlanner(export_onnx(agent), config.behavior.planner, threads=1, seed=0)
            row = {"model": model, "candidates": candidates, "horizon": horizon, "iterations": iterations,
                   "top_k": top_k, "threads": 1,
                   "onnx": time_steps(planner.policy, obs_seq, args.steps, warmup=2)}
            row["fits_budget"] = row["onnx"]["cpu_p50_ms"] <= args.budget_ms
            if args.torch_steps:
                row["torch"] = time_steps(agent.policy, obs_seq, args.torch_steps, warmup=1)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
