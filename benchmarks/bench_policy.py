"""Policy-step latency on CPU: onnxruntime versus torch eager, batch 1, one thread.

    python benchmarks/bench_policy.py --sizes tiny size12m --steps 500

For each size preset and observation kind (vector: walker-like proprio; image: 64x64x3)
prints one JSON line with p50/p99 step latency in ms for both runtimes.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from daydream.agent import Agent
from daydream.config import load_config
from daydream.export.onnx_export import export_onnx
from daydream.export.onnx_policy import OnnxPolicy

from daydream.agent.synthetic import synthetic_batch

from bench_learner import spaces_for


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1000
    return {"p50": round(float(np.percentile(ms, 50)), 3), "p99": round(float(np.percentile(ms, 99)), 3)}


def time_steps(step, obs_seq, steps: int, warmup: int = 20) -> list[float]:
    state, times = None, []
    for i in range(steps + warmup):
        obs = obs_seq[i % len(obs_seq)]
        start = time.perf_counter()
        _, state = step(obs, state)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "size12m"])
    parser.add_argument("--obs", nargs="+", default=["proprio", "image"])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for size in args.sizes:
        for kind in args.obs:
            overrides = [f"size={size}", "device=cpu"]
            if kind == "image":
                overrides += ["model.mlp_keys=^$", "model.cnn_keys=^image$"]
            obs_space, act_space = spaces_for(kind)
            agent = Agent(load_config(None, overrides), obs_space, act_space)
            batch = synthetic_batch(obs_space, act_space.shape[0], 1, 64)
            obs_seq = [{k: v[:, t] for k, v in batch.items() if k in obs_space.spaces} for t in range(64)]
            onnx_policy = OnnxPolicy(export_onnx(agent), threads=args.threads)
            torch_ms = percentiles(time_steps(agent.policy, obs_seq, args.steps))
            onnx_ms = percentiles(time_steps(onnx_policy.policy, obs_seq, args.steps))
            print(json.dumps({"bench": "policy_latency", "size": size, "obs": kind, "threads": args.threads,
                              "torch_ms": torch_ms, "onnx_ms": onnx_ms,
                              "speedup_p50": round(torch_ms["p50"] / onnx_ms["p50"], 2)}), flush=True)


if __name__ == "__main__":
    main()
