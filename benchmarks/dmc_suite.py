"""Train DMC proprio tasks x seeds and compare the scores with DreamerV3's at equal env steps.

    # CPU, reduced budget (one run at a time; each run is a `daydream train` subprocess)
    nice -n 19 python benchmarks/dmc_suite.py --out runs/dmc_cpu --tasks cartpole_swingup reacher_easy \
        --budget 100000 --seeds 0 --set size=tiny --set train.train_ratio=64
    # GPU workstation, full budget
    python benchmarks/dmc_suite.py --out runs/dmc_gpu --budget 500000 --seeds 0 1 2 --set size=size12m
    # rebuild curves, figure and table from finished (or running) runs
    python benchmarks/dmc_suite.py --out runs/dmc_cpu --report-only

Env steps are simulator steps (agent steps x env.action_repeat), as DreamerV3's score files
count them. Writes <out>/curves.json (per task and seed: [env step, eval return] pairs),
<out>/curves.png and <out>/table.md (ours beside DreamerV3's mean ± std over 5 seeds at 50k,
100k, 250k and 500k env steps, benchmarks/data/dreamerv3_dmc_proprio.json, and a uniform-random
policy's score, cached in <out>/random.json), and prints one JSON line per finished run and one
for the table.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ANCHORS = REPO / "benchmarks" / "data" / "dreamerv3_dmc_proprio.json"
DEFAULT_TASKS = ("cartpole_swingup", "reacher_easy", "ball_in_cup_catch", "walker_walk")

Curve = list[tuple[float, float]]  # (env step, eval return)


def load_anchors(path: Path = ANCHORS) -> dict:
    """DreamerV3's per-task {budget: (mean, std)} and the averaging window, from the data file."""
    data = json.loads(path.read_text())
    tasks = {t: {int(b): (float(v[0]), float(v[1])) for b, v in row.items()} for t, row in data["tasks"].items()}
    return {"tasks": tasks, "window": int(data["window"]), "budgets": [int(b) for b in data["budgets"]],
            "source": data["source"]}


def score_at(curve: Curve, budget: int, window: int) -> float | None:
    """Mean eval return logged within `window` env steps of `budget` (as the anchors are made); None if none."""
    near = [ret for step, ret in curve if abs(step - budget) <= window]
    return float(np.mean(near)) if near else None


def random_score(task: str, episodes: int = 5, seed: int = 123, action_repeat: int = 2) -> tuple[float, float]:
    """(mean, std) return of a uniform-random policy over `episodes` episodes, with the suite's env settings."""
    from daydream.config import load_config
    from daydream.envs import make_env
    from daydream.envs.contract import random_action

    config = load_config("dmc_walker_walk", [f"env.task={task}", f"env.action_repeat={action_repeat}"])
    env = make_env(config.env, seed=seed)
    rng = np.random.default_rng(seed)
    returns = []
    try:
        for i in range(episodes):
            env.reset(seed=seed + i)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(random_action(env.action_space, rng))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return float(np.mean(returns)), float(np.std(returns))


def random_scores(out: Path, tasks: list[str], episodes: int) -> dict[str, tuple[float, float]]:
    """Random-policy (mean, std) per task, computed once and cached in <out>/random.json (0 episodes: cache only)."""
    path = out / "random.json"
    cache = {t: tuple(v) for t, v in json.loads(path.read_text()).items()} if path.exists() else {}
    missing = [t for t in tasks if t not in cache]
    if episodes > 0 and missing:
        for task in missing:
            cache[task] = random_score(task, episodes)
        path.write_text(json.dumps(cache, indent=1) + "\n")
    return cache


def compare(curves: dict[str, dict[str, Curve]], anchors: dict,
            random: dict[str, tuple[float, float]] | None = None) -> list[dict]:
    """One row per (task, budget) that some run reached: ours (mean ± std over seeds) beside DreamerV3's
    and, where known, a uniform-random policy's."""
    rows = []
    for task, seeds in sorted(curves.items()):
        official = anchors["tasks"].get(task)
        if official is None:
            continue
        for budget in anchors["budgets"]:
            reached = [c for c in seeds.values() if c and max(s for s, _ in c) >= budget]
            scores = [score_at(c, budget, anchors["window"]) for c in reached]
            scores = [s for s in scores if s is not None]
            if not scores:
                continue
            mean, std = official[budget]
            ours = float(np.mean(scores))
            rows.append({
                "task": task, "env_steps": budget, "ours": ours, "ours_std": float(np.std(scores)),
                "seeds": len(scores),
                "dreamerv3": mean, "dreamerv3_std": std, "diff": ours - mean,
                "z": ((ours - mean) / std if std > 0
                      else (0.0 if ours == mean else math.copysign(math.inf, ours - mean))),
                "within_band": abs(ours - mean) <= std,
                "random": (random or {}).get(task, (None, None))[0],
                "random_std": (random or {}).get(task, (None, None))[1],
            })
    return rows


def markdown_table(rows: list[dict]) -> str:
    head = ("| task | env steps | ours (mean ± std, seeds) | DreamerV3 (mean ± std, 5 seeds) | ours − DreamerV3 "
            "| in band | random policy |\n"
            "| --- | ---: | ---: | ---: | ---: | :---: | ---: |\n")
    lines = [
        f"| {r['task']} | {r['env_steps'] // 1000}k | {r['ours']:.0f} ± {r['ours_std']:.0f} ({r['seeds']}) | "
        f"{r['dreamerv3']:.0f} ± {r['dreamerv3_std']:.0f} | {r['diff']:+.0f} ({r['z']:+.1f} std) | "
        f"{'yes' if r['within_band'] else 'no'} | "
        + (f"{r['random']:.0f} ± {r['random_std']:.0f} |" if r.get("random") is not None else "– |")
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def read_curve(run_dir: Path, action_repeat: int) -> Curve:
    """Eval returns of one run, at simulator env steps."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    curve = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if row.get("kind") == "eval" and "return" in row:
            curve.append((float(row["step"]) * action_repeat, float(row["return"])))
    return curve


def collect(out: Path) -> dict[str, dict[str, Curve]]:
    curves: dict[str, dict[str, Curve]] = {}
    for run in sorted(out.glob("*/seed*")):
        meta_path = run / "suite_run.json"
        repeat = json.loads(meta_path.read_text())["action_repeat"] if meta_path.exists() else 2
        curves.setdefault(run.parent.name, {})[run.name] = read_curve(run, repeat)
    return curves


def plot(curves: dict[str, dict[str, Curve]], anchors: dict, path: Path,
         random: dict[str, tuple[float, float]] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(curves)
    cols = min(4, max(1, len(tasks)))
    rows = math.ceil(len(tasks) / cols) if tasks else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for seed, curve in sorted(curves[task].items()):
            if curve:
                steps, rets = zip(*curve)
                ax.plot(np.array(steps) / 1000, rets, ".-", alpha=0.7, label=f"daydream {seed}")
        official = anchors["tasks"].get(task)
        if official:
            budgets = sorted(official)
            ax.errorbar([b / 1000 for b in budgets], [official[b][0] for b in budgets],
                        [official[b][1] for b in budgets],
                        fmt="s", color="black", capsize=3, label="DreamerV3 (5 seeds)")
        if task in (random or {}):
            ax.axhline(random[task][0], color="gray", linestyle="--", linewidth=1, label="random policy")
        ax.set_title(task)
        ax.set_xlabel("env steps (k)")
        ax.set_ylabel("eval return")
        ax.set_ylim(-20, 1020)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(out: Path, random_episodes: int = 5) -> list[dict]:
    anchors = load_anchors()
    curves = collect(out)
    (out / "curves.json").write_text(json.dumps(curves, indent=1) + "\n")
    random = random_scores(out, [t for t in sorted(curves) if t in anchors["tasks"]], random_episodes)
    rows = compare(curves, anchors, random)
    note = (f"Scores: mean eval return within ±{anchors['window'] // 1000}k env steps of each budget (runs that stop "
            f"at the budget have only the half window before it). DreamerV3: {anchors['source']}. Random policy: "
            f"uniform actions, mean ± std over {random_episodes or 'the cached'} episodes (seed 123).\n\n")
    (out / "table.md").write_text(note + markdown_table(rows))
    plot(curves, anchors, out / "curves.png", random)
    print(json.dumps({"table": rows}), flush=True)
    return rows


def train_one(out: Path, task: str, seed: int, budget: int, eval_every: int, eval_episodes: int, action_repeat: int,
              overrides: list[str]) -> dict:
    run = out / task / f"seed{seed}"
    run.mkdir(parents=True, exist_ok=True)
    (run / "suite_run.json").write_text(json.dumps({"task": task, "seed": seed, "action_repeat": action_repeat,
                                                    "budget": budget, "overrides": overrides}) + "\n")
    cmd = [sys.executable, "-m", "daydream.cli", "train", "--config", "dmc_walker_walk", "--logdir", str(run),
           "--set", f"env.task={task}", "--set", f"seed={seed}", "--set", f"env.action_repeat={action_repeat}",
           "--set", f"train.steps={budget // action_repeat}",
           "--set", f"train.eval_every={eval_every // action_repeat}",
           "--set", f"train.eval_episodes={eval_episodes}", "--set", "train.progress=false"]
    resume = (run / "checkpoint.pt").exists()
    if resume:
        cmd.append("--resume")
    for item in overrides:
        cmd += ["--set", item]
    start = time.time()
    with open(run / "train.log", "a") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        code = subprocess.call(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    curve = read_curve(run, action_repeat)
    result = {"task": task, "seed": seed, "exit": code, "minutes": round((time.time() - start) / 60, 1),
              "final": curve[-1][1] if curve else None, "command": " ".join(cmd[1:])}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="suite directory: <out>/<task>/seed<k> per run")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--budget", type=int, default=500000, help="simulator env steps per run")
    parser.add_argument("--eval-every", type=int, default=10000, help="simulator env steps between evaluations")
    # 10: on tasks whose episodes succeed or fail outright (reacher_easy: 0 or ~900 by target),
    # 2-5 episodes per evaluation made the score mostly noise (benchmarks/RESULTS.md, issue 12)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--action-repeat", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every run (e.g. size=tiny, train.train_ratio=64, recipe=dreamerv3)")
    parser.add_argument("--random-episodes", type=int, default=5,
                        help="episodes of a uniform-random policy per task for the table (cached in <out>/random.json)")
    parser.add_argument("--report-only", action="store_true", help="only rebuild curves.json, curves.png and table.md")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    unknown = [t for t in args.tasks if t not in load_anchors()["tasks"]]
    if unknown:
        parser.error(f"no DreamerV3 anchors for {unknown}; known: {sorted(load_anchors()['tasks'])}")
    if not args.report_only:
        for task in args.tasks:
            for seed in args.seeds:
                train_one(out, task, seed, args.budget, args.eval_every, args.eval_episodes, args.action_repeat,
                          args.overrides)
                report(out, args.random_episodes)
    report(out, args.random_episodes)


if __name__ == "__main__":
    main()
