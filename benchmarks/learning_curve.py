"""Train a named task for N env steps and write its learning curve (JSONL and PNG).

    python benchmarks/learning_curve.py --config dmc_walker_walk --steps 100000 --out runs/curve_walker
    python benchmarks/learning_curve.py --config pendulum_tiny --steps 8000 --out runs/curve_pendulum

Writes <out>/metrics.jsonl (every training record), <out>/curve.jsonl (env step, episode
return, eval return) and <out>/curve.png, and prints one JSON summary line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from daydream.config import load_config
from daydream.runtime.metrics import read_metrics
from daydream.runtime.train import train


def plot_curve(rows: list[dict], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    episodes = [r for r in rows if r["kind"] == "episode"]
    if episodes:
        steps = np.array([r["step"] for r in episodes])
        returns = np.array([r["return"] for r in episodes])
        ax.plot(steps, returns, ".", alpha=0.3, label="training episodes")
        window = max(1, len(returns) // 20)
        if len(returns) >= window:
            smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, label=f"mean of {window}")
    evals = [r for r in rows if r["kind"] == "eval"]
    if evals:
        ax.plot([r["step"] for r in evals], [r["return"] for r in evals], "o-", label="evaluation")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--out", required=True, help="run directory (must be new)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    out = Path(args.out)
    config = load_config(args.config, [f"logdir={out}", f"train.steps={args.steps}", *args.overrides])
    start = time.time()
    summary = train(config)
    seconds = time.time() - start
    rows = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] in ("episode", "eval")]
    with open(out / "curve.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({"kind": r["kind"], "step": r["step"], "return": r["return"]}) + "\n")
    plot_curve(rows, f"{args.config} ({config.size})", out / "curve.png")
    episodes = [r["return"] for r in rows if r["kind"] == "episode"]
    print(json.dumps({
        "bench": "learning_curve", "config": args.config, "size": config.size, "steps": args.steps,
        "seconds": round(seconds, 1), "final_eval_return": summary.get("return"),
        "first_episodes_mean": float(np.mean(episodes[:5])) if episodes else None,
        "last_episodes_mean": float(np.mean(episodes[-5:])) if episodes else None,
        "plot": str(out / "curve.png"),
    }))


if __name__ == "__main__":
    main()
