"""Fault soak of the asynchronous stack: a learner, a sim actor and a robot actor on loopback,
SIGKILLed and paused (SIGSTOP/SIGCONT) at random moments, the robot's spool filled to its
bound; then every step is accounted for. Prints one JSON object.

    nice -n 19 python benchmarks/soak.py --seconds 600 --seed 1 > soak.json

Events, one every --gap-s seconds on average (exponential), drawn with --seed:
`learner_kill` (SIGKILL, restart with --resume after 1-8 s), `learner_pause` (1-10 s),
`actor_kill` (SIGKILL, restart after 0.5-3 s), `actor_pause` (1-5 s) and `spool_fill`
(the learner paused until the robot's spool is full and it has dropped chunks).

Accounting, after stopping everything cleanly (actors drain, the learner checkpoints):
* `steps_produced`: steps the actors handed to their spools (status.json `steps_spooled`,
  exact across SIGKILL) plus steps they gave up before writing (a full disk);
* `steps_in_replay`: steps of distinct chunks in the learner's replay (chunk files are
  labelled `<actor>-<seq>`), `steps_duplicated`: steps of chunks held more than once;
* `steps_lost`: produced minus in replay minus still spooled; `lost_by_cause`: the part the
  actors' `dropped.jsonl` accounts for (chunks dropped by the full-spool policy that never
  reached the learner); `lost_unexplained` must be 0.
* `max_pause_in_acting_s`: per actor kind, the longest time its step counter stood still
  while the process was running (not killed or paused by the soak), sampled every 0.25 s;
  a sim pauses on purpose while its learner is away, a robot should not;
* `max_ratio_drift_steps`: the most env steps the learner held beyond what its updates had
  trained on at train.train_ratio (sampled), and `sim_max_steps_past_credit`: the most
  records a sim made past the learner's last credit (bounded by one reset record).
An actor SIGKILLed loses the steps of its unfinished chunk (fewer than chunk_length), which
never reached its spool: they are not in `steps_produced` (`actor_kills` says how often).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import signal
import tempfile
import time
from pathlib import Path

from daydream.runtime.local_run import Proc, actor_status, free_port_pair, learner_status, start, wait_until

from daydream.replay.chunkfile import ChunkName  # noqa: E402
from daydream.runtime.status import read_status
from daydream.transport.spool import Spool  # noqa: E402

BATCH_STEPS, PREFILL = 64, 200  # replay.batch_size * batch_length, train.prefill


class Soak:
    def __init__(self, tmp: Path, seconds: float, gap_s: float, spool_mb: float, seed: int,
                 actors: tuple[str, ...] = ("sim", "robot"), train_ratio: float = 0.05) -> None:
        self.tmp, self.seconds, self.gap_s, self.ratio = tmp, seconds, gap_s, train_ratio
        self.rng = random.Random(seed)
        self.logdir, port = tmp / "run", free_port_pair()
        # a low train_ratio (the default) lets the learner keep up with an unpaced robot on a CPU
        self.common = [f"logdir={self.logdir}", f"transport.bind=tcp://127.0.0.1:{port}",
                       f"transport.learner=tcp://127.0.0.1:{port}", "threads=1", "replay.batch_size=4",
                       "replay.batch_length=16", f"train.prefill={PREFILL}", f"train.train_ratio={train_ratio}",
                       "replay.capacity=100000000", "train.steps=0", "train.progress=false", "train.log_every=1000",
                       "train.checkpoint_every=500", "transport.publish_every=20", "transport.status_every_s=0.2",
                       "transport.heartbeat_interval_s=0.2", "transport.learner_timeout_s=1.5",
                       "transport.resend_timeout_s=1.0", "transport.drain_timeout_s=60",
                       "transport.pace_slack_steps=256", "transport.chunk_length=32"]
        kinds = {"sim": [], "robot": ["transport.pace_actors=false", "transport.chunk_length=128",
                                      f"transport.spool_max_mb={spool_mb}"]}
        self.kinds = {k: kinds[k] for k in actors}
        self.procs: dict[str, Proc] = {}
        self.suspended: set[str] = set()  # stopped or dead by the soak's hand
        self.events: list[dict] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.last_change: dict[str, float | None] = {}
        self.last_steps: dict[str, int] = {}
        self.max_pause = {k: 0.0 for k in self.kinds}
        self.max_drift = 0.0
        self.max_past_credit = -10**9

    def start(self, name: str, resume: bool = False) -> None:
        if name == "learner":
            extra = ("--resume",) if resume else ()
            self.procs[name] = start(self.tmp / "learner.log", "learner", "pendulum_tiny", self.common, *extra)
        else:
            self.procs[name] = start(self.tmp / f"{name}.log", "actor", "pendulum_tiny",
                                     [*self.common, *self.kinds[name]], "--id", name)
        self.suspended.discard(name)
        self.last_change[name] = None

    def sample(self) -> None:
        now = time.monotonic()
        for name in self.kinds:
            s = actor_status(self.logdir, name)
            if not s:
                continue
            steps = int(s.get("steps_acted", 0))
            if name in self.suspended:
                self.last_change[name] = None
            elif steps != self.last_steps.get(name) or self.last_change[name] is None:
                self.last_change[name] = now
            else:
                self.max_pause[name] = max(self.max_pause[name], now - self.last_change[name])
            self.last_steps[name] = steps
            if name == "sim" and s.get("credit_granted") is not None:
                self.max_past_credit = max(self.max_past_credit,
                                           s["steps_since_credit"] - max(s["credit_granted"], 0))
        ls = learner_status(self.logdir)
        if ls and "learner" not in self.suspended and ls.get("received_steps", 0) > PREFILL:
            trained_for = PREFILL + ls["updates"] * BATCH_STEPS / self.ratio
            self.max_drift = max(self.max_drift, ls["received_steps"] - trained_for)

    def wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.sample()
            except (OSError, ValueError, KeyError):
                pass  # a status file mid-replace
            time.sleep(0.25)

    def pause(self, name: str, seconds: float) -> None:
        self.procs[name].signal(signal.SIGSTOP)
        self.suspended.add(name)
        self.wait(seconds)
        self.procs[name].signal(signal.SIGCONT)
        self.suspended.discard(name)
        self.last_change[name] = None

    def kill(self, name: str, down_s: float) -> None:
        self.procs[name].kill()
        self.suspended.add(name)
        self.wait(down_s)
        self.start(name, resume=name == "learner")

    def spool_fill(self) -> float:
        """Pause the learner until the robot has dropped chunks (its spool is at its bound); returns the pause."""
        dropped = int(actor_status(self.logdir, "robot").get("spool_dropped_chunks", 0))  # only with a robot
        self.procs["learner"].signal(signal.SIGSTOP)
        self.suspended.add("learner")
        began = time.monotonic()
        while time.monotonic() - began < 120:
            self.wait(0.5)
            if int(actor_status(self.logdir, "robot").get("spool_dropped_chunks", 0)) > dropped:
                break
        self.wait(2.0)
        self.procs["learner"].signal(signal.SIGCONT)
        self.suspended.discard("learner")
        return time.monotonic() - began

    def event(self) -> None:
        kinds = ["learner_kill", "learner_pause", "actor_kill", "actor_pause"]
        kind = self.rng.choice(kinds + (["spool_fill"] if "robot" in self.kinds else []))
        t = time.monotonic() - self.t0
        if kind == "learner_kill":
            down = self.rng.uniform(1, 8)
            self.kill("learner", down)
            detail = {"target": "learner", "down_s": round(down, 1)}
        elif kind == "learner_pause":
            down = self.rng.uniform(1, 10)
            self.pause("learner", down)
            detail = {"target": "learner", "paused_s": round(down, 1)}
        elif kind == "actor_kill":
            name, down = self.rng.choice(list(self.kinds)), self.rng.uniform(0.5, 3)
            self.kill(name, down)
            detail = {"target": name, "down_s": round(down, 1)}
        elif kind == "actor_pause":
            name, down = self.rng.choice(list(self.kinds)), self.rng.uniform(1, 5)
            self.pause(name, down)
            detail = {"target": name, "paused_s": round(down, 1)}
        else:
            detail = {"target": "learner", "paused_s": round(self.spool_fill(), 1)}
        self.counts[kind] += 1
        self.events.append({"t_s": round(t, 1), "event": kind, **detail})

    def run(self) -> dict:
        self.start("learner")
        for name in self.kinds:
            self.start(name)
        wait_until(lambda: learner_status(self.logdir).get("policy_version", 0) >= 1, 600, "a first policy",
                   *self.procs.values())
        self.t0 = time.monotonic()
        while time.monotonic() - self.t0 < self.seconds:
            self.wait(self.rng.expovariate(1 / self.gap_s))
            for name, proc in self.procs.items():
                if not proc.alive():  # a crash, not one of ours: that is a finding
                    raise RuntimeError(f"{name} exited by itself with {proc.process.returncode}:\n{proc.log()}")
            self.event()
        # stop cleanly: actors drain into the learner, then the learner checkpoints
        for name in self.kinds:
            self.procs[name].stop(180)
        self.procs["learner"].stop(180)
        return self.account()

    def account(self) -> dict:
        replay: collections.Counter[tuple[str, str]] = collections.Counter()
        lengths: dict[tuple[str, str], int] = {}
        for path in (self.logdir / "replay").glob("*.npz"):
            name = ChunkName.parse(path.name)
            if name is None or not name.label:
                continue
            key = (name.stream, name.label)
            replay[key] += 1
            lengths[key] = name.length
        out: dict = {"bench": "soak", "seconds": self.seconds, "actors": list(self.kinds), "train_ratio": self.ratio,
                     "pace_slack_steps": 256, "events": dict(self.counts),
                     "actor_kills": self.counts["actor_kill"], "per_actor": {}}
        totals = collections.Counter()
        for name in self.kinds:
            status = read_status(self.logdir / "actors" / name)
            dropped = self.logdir / "actors" / name / "dropped.jsonl"
            drops = [json.loads(x) for x in dropped.read_text().splitlines()] if dropped.exists() else []
            held = {label for stream, label in replay if stream == name}
            in_replay = sum(n for (stream, _), n in lengths.items() if stream == name)
            duplicated = sum(lengths[k] * (c - 1) for k, c in replay.items() if k[0] == name and c > 1)
            unwritten = sum(d["steps"] for d in drops if not d["written"])
            produced = int(status["steps_spooled"]) + unwritten
            spool = Spool(self.logdir / "actors" / name / "spool", name)
            spooled_left = sum(spool.steps_of(seq) for seq in spool.seqs())  # not drained: neither lost nor in replay
            lost_by_cause: collections.Counter[str] = collections.Counter()
            for d in drops:
                if d["seq"] is None or f"{name}-{d['seq']}" not in held:
                    lost_by_cause[d["cause"]] += d["steps"]
            lost = produced - in_replay - spooled_left
            row = {"steps_produced": produced, "steps_in_replay": in_replay, "steps_duplicated": duplicated,
                   "steps_still_spooled": spooled_left, "steps_lost": lost, "lost_by_cause": dict(lost_by_cause),
                   "lost_unexplained": lost - sum(lost_by_cause.values()),
                   "dropped_chunks": int(status.get("spool_dropped_chunks", 0)),
                   "max_pause_in_acting_s": round(self.max_pause[name], 2)}
            out["per_actor"][name] = row
            for k in ("steps_produced", "steps_in_replay", "steps_duplicated", "steps_still_spooled", "steps_lost",
                      "lost_unexplained"):
                totals[k] += row[k]
            for cause, n in lost_by_cause.items():
                totals[f"lost_{cause}"] += n
        out.update(dict(totals))
        out["max_ratio_drift_steps"] = round(self.max_drift)
        out["sim_max_steps_past_credit"] = self.max_past_credit
        out["event_log"] = self.events
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600, help="how long to inject faults")
    parser.add_argument("--gap-s", type=float, default=12, help="mean seconds between two faults")
    parser.add_argument("--spool-mb", type=float, default=0.25, help="the robot's transport.spool_max_mb")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-ratio", type=float, default=0.05, help="train.train_ratio (batch 4 x 16 steps)")
    parser.add_argument("--actors", default="sim,robot", help="which actors: sim (paced), robot (unpaced, bounded "
                        "spool) or both")
    parser.add_argument("--keep", help="keep the run in this folder instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        soak = Soak(folder, args.seconds, args.gap_s, args.spool_mb, args.seed, tuple(args.actors.split(",")),
                    args.train_ratio)
        try:
            result = soak.run()
        finally:
            for proc in soak.procs.values():
                proc.signal(signal.SIGCONT)
                if proc.alive():
                    proc.kill()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
