"""The full loop on the simulated A1: a learner process and an actor process acting with
the exported ONNX policy (onnxruntime) through the robot env (safety layer, MuJoCo A1 at
1 kHz physics, 20 Hz control), streaming chunks over ZMQ on loopback. Prints one JSON
object per mode.

    MUJOCO_GL=egl python benchmarks/bench_a1_loop.py --seconds 60

Modes:
- `unpaced` (`transport.pace_actors=false`, as on a robot): how fast the actor side of
  the loop runs (env + policy + spool + send) while the learner trains beside it;
- `paced` (the sim default): env steps/s that the learner's train ratio lets through,
  i.e. what a sim experiment actually gets on this machine at the config's ratio.
Both start measuring once the actor acts with a learned (ONNX) policy, not random actions.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from daydream.runtime.local_run import actor_status, free_port_pair, learner_status, start, wait_until


def measure(tmp: Path, mode: str, args: argparse.Namespace) -> dict[str, object]:
    logdir, port = tmp / mode, free_port_pair()
    overrides = [f"logdir={logdir}", f"size={args.size}", f"transport.bind=tcp://127.0.0.1:{port}",
                 f"transport.learner=tcp://127.0.0.1:{port}", "device=cpu", "train.progress=false", "train.steps=0",
                 f"train.prefill={args.prefill}", "transport.status_every_s=0.5", "transport.publish_every=20",
                 f"transport.pace_actors={'true' if mode == 'paced' else 'false'}",
                 *([f"threads={args.learner_threads}"] if args.learner_threads is not None else []), *args.set]
    learner = start(tmp / f"{mode}-learner.log", "learner", args.config, overrides)
    actor = start(tmp / f"{mode}-actor.log", "actor", args.config, overrides, "--id", "bench", "--policy", "onnx")
    try:
        wait_until(lambda: actor_status(logdir, "bench").get("policy_version", 0) >= 1, 900, "a first policy",
                   learner, actor)
        a0, l0, t0 = actor_status(logdir, "bench"), learner_status(logdir), time.time()
        time.sleep(args.seconds)
        a1, l1, t1 = actor_status(logdir, "bench"), learner_status(logdir), time.time()
    finally:
        for p in (actor, learner):
            if p.alive():
                p.stop(120)
    dt = t1 - t0
    env_steps_per_s = (a1["steps_spooled"] - a0["steps_spooled"]) / dt
    return {"bench": "a1_loop", "mode": mode, "config": args.config, "size": args.size, "set": args.set,
            "learner_threads": "config" if args.learner_threads is None else args.learner_threads,
            "seconds": round(dt, 1),
            "actor_env_steps_per_s": round(env_steps_per_s, 1),
            "real_time_factor": round(env_steps_per_s / 20.0, 2),  # the A1 acts at 20 Hz
            "learner_received_steps_per_s": round((l1["received_steps"] - l0["received_steps"]) / dt, 1),
            "learner_updates_per_s": round((l1["updates"] - l0["updates"]) / dt, 2),
            "policy_versions_seen": a1["policy_version"] - a0["policy_version"] + 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="a1_walk")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--prefill", type=int, default=1000)
    parser.add_argument("--learner-threads", type=int, default=None,
                        help="the learner's torch threads (default: the config's own, as a run gets them)")
    parser.add_argument("--modes", nargs="+", default=["unpaced", "paced"], choices=["unpaced", "paced"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for both processes (repeatable), e.g. model.bins=63")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            print(json.dumps(measure(Path(tmp), mode, args)), flush=True)


if __name__ == "__main__":
    main()
