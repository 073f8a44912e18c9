"""This project's update side by side with NM512/dreamerv3-torch's, same shapes, one process.

    python benchmarks/bench_vs_anchor.py --anchor /work/anchor/src --rounds 3
    python benchmarks/bench_vs_anchor.py --anchor /path/to/dreamerv3-torch --device cuda --rounds 10

The anchor is a scratch checkout of https://github.com/NM512/dreamerv3-torch outside this
repository (nothing of it is copied here): its model modules (`models`, `networks`,
`tools`) are imported from `--anchor`, configured from its own `configs.yaml` at the
`dmc_proprio` defaults, and one update is its `Dreamer._train(batch)`: the world model's
`_train` then the task behaviour's `_train`. Two device="cuda" keyword defaults in its
`networks.MLP` and `tools.DiscDist` are replaced at run time by `--device` (no edit of the
checkout); its `tools` imports TensorBoard's SummaryWriter, which a stub stands in for.
The anchor pins torch 2.4.1 and numpy 1.23; it runs here on this venv's torch.

This project's agent runs at the same shapes: deter 512, hidden 512, 32 x 32 latents,
units 512, a dense GRU (blocks 1), reward and continue heads of 2 layers, batch 16 x 64,
walker-walk's proprio keys. The anchor's vector encoder and decoder are 5 x 1024 at its
defaults and 2 x 512 here; `--anchor-mlp ours` sets them to this project's shape too
(variant `anchor-mlp-ours`). Updates alternate between the two (interleaved rounds, the
median of each), so drift of a shared machine hits both alike. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time
import types
from typing import Any, Callable

import numpy as np
import torch
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_learner import spaces_for  # noqa: E402

from daydream.agent import Agent  # noqa: E402
from daydream.agent.synthetic import synthetic_batch  # noqa: E402
from daydream.config import load_config  # noqa: E402

SHAPES = ["size=tiny", "model.deter=512", "model.hidden=512", "model.stoch=32", "model.classes=32", "model.blocks=1",
          "model.units=512", "model.head_layers=2"]


def ours(args: argparse.Namespace) -> tuple[Callable[[], Any], dict]:
    overrides = [*SHAPES, f"device={args.device}", "precision=float32", f"compile={str(args.compile).lower()}",
                 f"cuda_graph={str(args.cuda_graph).lower()}",
                 f"replay.batch_size={args.batch}", f"replay.batch_length={args.length}"]
    config = load_config(None, overrides)
    obs_space, act_space = spaces_for("proprio")
    agent = Agent(config, obs_space, act_space)
    batch = synthetic_batch(obs_space, act_space.shape[0], args.batch, args.length)
    params = sum(p.numel() for p in agent.nets.parameters() if p.requires_grad)
    return (lambda: agent.train(batch)), {"params_m": round(params / 1e6, 2), "cuda_graph": args.cuda_graph}


def _number(value: Any) -> Any:
    """YAML 1.2 numbers such as 1e-4, which PyYAML (YAML 1.1) leaves as strings; the anchor reads them with ruamel."""
    if isinstance(value, dict):
        return {k: _number(v) for k, v in value.items()}
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _anchor_config(root: pathlib.Path, args: argparse.Namespace, mlp: str) -> types.SimpleNamespace:
    raw = _number(yaml.safe_load((root / "configs.yaml").read_text()))
    config = dict(raw["defaults"])
    for key, value in raw["dmc_proprio"].items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    config.update(device=args.device, compile=False, batch_size=args.batch, batch_length=args.length, num_actions=6)
    if mlp == "ours":
        for part in ("encoder", "decoder"):
            config[part] = {**config[part], "mlp_layers": 2, "mlp_units": 512}
    return types.SimpleNamespace(**config)


def anchor(args: argparse.Namespace, mlp: str) -> tuple[Callable[[], Any], dict]:
    root = pathlib.Path(args.anchor).resolve()
    if not (root / "models.py").exists():
        raise SystemExit(f"--anchor {root} has no models.py: pass a checkout of NM512/dreamerv3-torch")
    if "torch.utils.tensorboard" not in sys.modules:  # the anchor's tools imports it for logging only
        stub = types.ModuleType("torch.utils.tensorboard")
        stub.SummaryWriter = object  # type: ignore[attr-defined]
        sys.modules["torch.utils.tensorboard"] = stub
    sys.path.insert(0, str(root))
    import models  # type: ignore[import-not-found]
    import networks  # type: ignore[import-not-found]
    import tools  # type: ignore[import-not-found]

    for fn in (networks.MLP.__init__, tools.DiscDist.__init__):  # device="cuda" defaults -> --device
        fn.__defaults__ = tuple(args.device if d == "cuda" else d for d in fn.__defaults__)
    import gymnasium as gym

    config = _anchor_config(root, args, mlp)
    obs_space, act_space = spaces_for("proprio")
    spaces = {k: v for k, v in obs_space.spaces.items() if k != "is_first"}
    spaces["image"] = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)  # its DMC env renders one every step
    for flag in ("is_first", "is_last", "is_terminal"):
        spaces[flag] = gym.spaces.Box(0, 1, (), bool)
    wm = models.WorldModel(gym.spaces.Dict(spaces), act_space, 0, config).to(args.device)
    behavior = models.ImagBehavior(config, wm).to(args.device)
    raw = synthetic_batch(obs_space, act_space.shape[0], args.batch, args.length)
    batch = {k: v.astype(np.float32) for k, v in raw.items()}
    batch["image"] = np.random.default_rng(0).integers(0, 256, (args.batch, args.length, 64, 64, 3), dtype=np.uint8)
    batch["is_last"] = np.zeros((args.batch, args.length), np.float32)

    def reward(feat, state, action):  # noqa: ANN001  (as dreamer.py's Dreamer._train)
        return wm.heads["reward"](wm.dynamics.get_feat(state)).mode()

    def update() -> Any:  # Dreamer._train less its metric bookkeeping
        post, _, metrics = wm._train(batch)
        metrics.update(behavior._train(post, reward)[-1])
        return metrics

    params = sum(p.numel() for m in (wm, behavior.actor, behavior.value) for p in m.parameters())
    return update, {"params_m": round(params / 1e6, 2), "torch": torch.__version__}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchor", default="", help="path of a dreamerv3-torch checkout (empty: this project only)")
    parser.add_argument("--anchor-mlp", nargs="+", default=["defaults", "ours"], choices=["defaults", "ours"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="timed updates of each, interleaved")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="this project's compile: true")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="this project's cuda_graph: true (give --warmup 4 or more: the 4th update captures)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    runs: dict[str, tuple[Callable[[], Any], dict]] = {"daydream": ours(args)}
    if args.anchor:
        for mlp in args.anchor_mlp:
            runs["anchor" if mlp == "defaults" else "anchor-mlp-ours"] = anchor(args, mlp)
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}  # process CPU time: steadier on a shared machine
    first: dict[str, float] = {}
    for name, (update, _) in runs.items():
        for i in range(args.warmup):
            start = time.perf_counter()
            update()
            sync(args.device)
            if i == 0:
                first[name] = time.perf_counter() - start
    for _ in range(args.rounds):
        for name, (update, _) in runs.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            update()
            sync(args.device)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
    base, base_cpu = statistics.median(times["daydream"]), statistics.median(cpu["daydream"])
    for name, (_, info) in runs.items():
        median, median_cpu = statistics.median(times[name]), statistics.median(cpu[name])
        print(json.dumps({"bench": "vs_anchor", "impl": name, "device": args.device, "threads": args.threads,
                          "batch": [args.batch, args.length], "update_s": round(median, 3),
                          "updates_s": [round(t, 3) for t in times[name]],
                          "first_update_s": round(first.get(name, 0), 2),
                          "ratio_to_daydream": round(median / base, 2), "update_cpu_s": round(median_cpu, 3),
                          "cpu_ratio_to_daydream": round(median_cpu / base_cpu, 2), **info}), flush=True)


if __name__ == "__main__":
    main()
