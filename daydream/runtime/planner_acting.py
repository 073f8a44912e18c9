"""Acting with PlaNet's planner on onnxruntime (`transport.policy_runtime: planner`): no torch on the actor.

`PlannerActing` is an `ActingPolicy` (see `acting.py`) over `OnnxPlanner`: the policy's
`onnx` bytes are the planner bundle a `behavior.kind: planet` learner exports. The
planner's knobs (candidates, iterations, horizon, ...) are the actor's own
`behavior.planner`, so a robot can plan with fewer candidates than the learner's config
names when its control period demands it (benchmarks/bench_planner.py measures them).
"""

from __future__ import annotations

from daydream.config import Config, PlannerConfig
from daydream.export.planner_bundle import is_planner_bundle
from daydream.runtime.acting import ActingPolicy, OnnxActing, RecurrentActing


def wire_format(runtime: str) -> str:
    """The policy format an actor with this runtime asks the learner for (the planner comes as `onnx` bytes)."""
    return "torch" if runtime == "torch" else "onnx"


class PlannerActing(RecurrentActing):
    """PlaNet's planner bundle run by `OnnxPlanner` (numpy CEM over the exported model steps)."""

    def __init__(self, bundle: bytes, cfg: PlannerConfig, threads: int = 1, seed: int | None = None) -> None:
        from daydream.export.onnx_planner import OnnxPlanner

        super().__init__(OnnxPlanner(bundle, cfg, threads=threads, seed=seed))


def exported_acting(onnx_bytes: bytes, config: Config, seed: int | None = None) -> ActingPolicy:
    """The acting policy for exported policy bytes, whichever the learner made: a planner bundle or an acting graph."""
    threads = config.transport.policy_threads
    if is_planner_bundle(onnx_bytes):
        return PlannerActing(onnx_bytes, config.behavior.planner, threads=threads, seed=seed)
    return OnnxActing(onnx_bytes, threads=threads, seed=seed)
