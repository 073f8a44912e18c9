"""CUDA checks of the learner: update time per size and precision, torch.compile, host syncs.

Prints one JSON object per line. Meant for a GPU machine; `--device cpu` with tiny sizes
runs the same code paths (less the sync detection, which needs CUDA) as a dry run.

    python benchmarks/check_cuda.py --part eager     # bench() per size/obs/precision, syncs, launch probe
    python benchmarks/check_cuda.py --part compile   # compile=true for size12m: compile time, then update time
    python benchmarks/check_cuda.py --part eager --device cpu --sizes tiny --batch 2 --length 8 --updates 1

Sync detection runs `agent.train(batch)` under torch.cuda.set_sync_debug_mode("warn") and
records every "synchronizing operation" warning with the daydream source lines on its
Python stack (warnings from the backward pass are replayed at the autograd.grad call).
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
import traceback
import warnings
from collections import Counter

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_learner import bench, make_agent, sync  # noqa: E402

from daydream.agent.math import ReturnNormalizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def ns(args: argparse.Namespace, **changes) -> argparse.Namespace:
    out = argparse.Namespace(**vars(args))
    for k, v in changes.items():
        setattr(out, k, v)
    return out


def env_record(device: str) -> dict:
    rec = {"check": "env", "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
           "device": device, "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        rec["gpu"] = torch.cuda.get_device_name(0)
        try:
            rec["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            rec["nvidia_smi"] = f"unavailable: {exc}"
    return rec


def peak_mib() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# -- host-sync detection -----------------------------------------------------------------

def _site(stack: list[traceback.FrameSummary]) -> str:
    """The innermost daydream frames of a stack, innermost last (repo-relative file:line)."""
    ours = [f for f in stack if f.filename.startswith(os.path.join(ROOT, "daydream"))]
    return " <- ".join(f"{os.path.relpath(f.filename, ROOT)}:{f.lineno} {(f.line or '').strip()[:90]}"
                       for f in reversed(ours[-3:]))


def count_syncs(fn, calls: int) -> dict:
    """Run fn() `calls` times with CUDA sync debugging; count the syncs per call and their sites."""
    if not torch.cuda.is_available():
        for _ in range(calls):
            fn()
        return {"syncs_per_call": None, "sites": {}, "note": "no CUDA: sync detection skipped"}
    per_call: list[int] = []
    sites: Counter = Counter()
    messages: Counter = Counter()
    others: Counter = Counter()
    hits: list[int] = [0]

    def hook(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        text = str(message)
        if "synchroniz" not in text:
            others[text.split("\n")[0][:160]] += 1
            return
        hits[0] += 1
        sites[_site(traceback.extract_stack()[:-1]) or f"{filename}:{lineno}"] += 1
        messages[text.split("\n")[0][:120]] += 1

    torch.cuda.synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = hook
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(calls):
                hits[0] = 0
                fn()
                per_call.append(hits[0])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return {"syncs_per_call": per_call, "sites": {k: v / calls for k, v in sites.items()},
            "messages": dict(messages), "other_warnings": dict(others)}


def _legacy_update(self: ReturnNormalizer, returns: torch.Tensor) -> None:
    """ReturnNormalizer.update as it was before the quantile levels became a buffer."""
    with torch.no_grad():
        flat = returns.detach().float().flatten()
        quantiles = torch.quantile(flat, torch.tensor([self.low_q, self.high_q], device=flat.device))
        self.low.mul_(self.decay).add_((1 - self.decay) * quantiles[0])
        self.high.mul_(self.decay).add_((1 - self.decay) * quantiles[1])


def time_updates(agent, batch: dict, updates: int) -> dict:
    """Median wall time per update, and how long train() takes to return before the device is synced."""
    enqueue, total = [], []
    for _ in range(updates):
        sync(agent.device)
        start = time.perf_counter()
        agent.train(batch)
        enqueue.append(time.perf_counter() - start)
        sync(agent.device)
        total.append(time.perf_counter() - start)
    return {"update_ms": round(1000 * statistics.median(total), 1),
            "enqueue_ms": round(1000 * statistics.median(enqueue), 1)}


def sync_check(args: argparse.Namespace, size: str, obs: str, legacy: bool) -> dict:
    original = ReturnNormalizer.update
    if legacy:
        ReturnNormalizer.update = _legacy_update
    try:
        a = ns(args, obs=obs, precision=args.precision)
        agent, batch, obs_space = make_agent(size, a)
        for _ in range(args.warmup):
            agent.train(batch)
        sync(agent.device)
        rec = {"check": "syncs", "what": "agent.train", "size": size, "obs": obs, "precision": a.precision,
               "compile": a.compile,
               "variant": "legacy quantile levels (torch.tensor per update)" if legacy else "working tree"}
        rec.update(count_syncs(lambda: agent.train(batch), args.sync_calls))
        rec.update(time_updates(agent, batch, args.updates))
        obs1 = {k: v[:1, 0] for k, v in batch.items() if k in obs_space.spaces}
        state = {"s": None}

        def step():
            _, state["s"] = agent.policy(obs1, state["s"])

        step()
        pol = count_syncs(step, 3)
        rec["policy_syncs_per_call"] = pol["syncs_per_call"]
        rec["policy_sites"] = pol["sites"]
        return rec
    finally:
        ReturnNormalizer.update = original


# -- parts ----------------------------------------------------------------------------------

def part_eager(args: argparse.Namespace) -> None:
    for legacy in (False, True):  # first: short, and the point of the check
        try:
            emit(sync_check(ns(args, compile=False), args.sync_size, args.obs[0], legacy))
        except Exception as exc:
            emit({"check": "syncs", "legacy": legacy, "error": repr(exc)[:500],
                  "trace": traceback.format_exc()[-1500:]})
    runs = []
    for obs in args.obs:
        runs += [(obs, size, args.precision) for size in args.sizes]
        runs += [(obs, size, "float32") for size in args.fp32_sizes]
    for obs, size, precision in runs:
        reset_peak()
        try:
            rec = bench(size, ns(args, obs=obs, precision=precision, compile=False))
            rec["peak_mib"] = peak_mib()
        except Exception as exc:  # one failing config must not lose the others
            rec = {"bench": "learner", "size": size, "obs": obs, "precision": precision, "error": repr(exc)[:500]}
        emit(rec)


def part_compile(args: argparse.Namespace) -> None:
    for obs in args.compile_obs:
        for size in args.compile_sizes:
            try:
                compile_one(args, size, obs)
            except Exception as exc:
                emit({"check": "compile", "size": size, "obs": obs, "error": repr(exc)[:500],
                      "trace": traceback.format_exc()[-1500:]})


def compile_one(args: argparse.Namespace, size: str, obs: str) -> None:
    a = ns(args, obs=obs, compile=True)
    reset_peak()
    agent, batch, obs_space = make_agent(size, a)
    start = time.perf_counter()
    agent.train(batch)
    sync(agent.device)
    first = time.perf_counter() - start
    emit({"check": "compile", "stage": "first update (compile + run)", "size": size, "obs": obs,
          "precision": a.precision, "compile_s": round(first, 1)})
    start = time.perf_counter()
    agent.train(batch)
    sync(agent.device)
    second = time.perf_counter() - start
    for _ in range(max(0, args.warmup - 2)):
        agent.train(batch)
    rec = {"check": "compile", "stage": "steady", "size": size, "obs": obs, "precision": a.precision,
           "compile_s": round(first, 1), "second_update_s": round(second, 2)}
    rec.update(time_updates(agent, batch, args.updates))
    rec["peak_mib"] = peak_mib()
    emit(rec)
    try:
        s = count_syncs(lambda: agent.train(batch), 2)
        emit({"check": "syncs", "what": "agent.train", "size": size, "obs": obs, "compile": True, **s})
    except Exception as exc:
        emit({"check": "syncs", "compile": True, "error": repr(exc)[:500]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["eager", "compile"], required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bfloat16")
    parser.add_argument("--sizes", nargs="+", default=["size12m", "size25m", "size50m"])
    parser.add_argument("--fp32-sizes", nargs="*", default=["size12m"])
    parser.add_argument("--compile-sizes", nargs="*", default=["size12m"])
    parser.add_argument("--compile-obs", nargs="*", default=["image"])
    parser.add_argument("--sync-size", default="size12m")
    parser.add_argument("--sync-calls", type=int, default=3)
    parser.add_argument("--obs", nargs="+", default=["image", "proprio"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--policy-steps", type=int, default=200)
    args = parser.parse_args()
    args.compile = False
    torch.manual_seed(0)
    np.random.seed(0)
    emit(env_record(args.device))
    (part_eager if args.part == "eager" else part_compile)(args)


if __name__ == "__main__":
    main()
