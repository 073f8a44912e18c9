"""Time from a policy's export to its use by an actor, with a real learner and actor process
on loopback. Prints one JSON object per config.

    python benchmarks/bench_async.py --config pendulum_tiny --seconds 60
    python benchmarks/bench_async.py --config dmc_walker_walk --size size12m --seconds 90

For each policy version v: `export_s` (export_onnx + weights + store, on the learner),
`fetch_s` (published -> swapped in by the actor: the pull interval, the transfer and the
onnxruntime session build) and their sum `export_to_use_s`. Learner and actor share this
machine's clock, so the differences are exact up to the status files' timestamps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from daydream.runtime.local_run import actor_status, free_port_pair, learner_status, start, wait_until


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pendulum_tiny")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--publish-every", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        logdir, port = tmp / "run", free_port_pair()
        overrides = [f"logdir={logdir}", f"size={args.size}", f"transport.bind=tcp://127.0.0.1:{port}",
                     f"transport.learner=tcp://127.0.0.1:{port}", "device=cpu", "train.progress=false", "train.steps=0",
                     "train.prefill=100", "replay.batch_size=4", "replay.batch_length=16", "train.train_ratio=16",
                     "transport.chunk_length=16", f"transport.publish_every={args.publish_every}",
                     "transport.status_every_s=0.2"]
        lrn = start(tmp / "learner.log", "learner", args.config, overrides)
        act = start(tmp / "actor.log", "actor", args.config, overrides, "--id", "bench")
        try:
            wait_until(lambda: actor_status(logdir, "bench").get("policy_version", 0) >= 1, 600, "a first policy",
                       lrn, act)
            time.sleep(args.seconds)
            learner_s, actor_s = learner_status(logdir), actor_status(logdir, "bench")
        finally:
            for p in (act, lrn):
                if p.alive():
                    p.stop(120)
    exported, published, loaded = (learner_s["export_started_at"], learner_s["published_at"],
                                   actor_s["policy_loaded_at"])
    versions = sorted((v for v in loaded if v in published and v in exported), key=int)
    export = [published[v] - exported[v] for v in versions]
    fetch = [loaded[v] - published[v] for v in versions]
    total = [loaded[v] - exported[v] for v in versions]
    print(json.dumps({
        "bench": "export_to_use", "config": args.config, "size": args.size, "versions": len(versions),
        "export_s_p50": round(statistics.median(export), 3), "fetch_s_p50": round(statistics.median(fetch), 3),
        "fetch_s_max": round(max(fetch), 3), "export_to_use_s_p50": round(statistics.median(total), 3),
        "export_to_use_s_max": round(max(total), 3), "policy_request_interval_s": 0.25,
    }))


if __name__ == "__main__":
    main()
