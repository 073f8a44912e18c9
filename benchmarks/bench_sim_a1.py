"""Speed of the simulated A1 (`mujoco_a1` driver): policy steps per second and real-time factor.

    MUJOCO_GL=egl python benchmarks/bench_sim_a1.py --steps 500

One policy step = write a target, advance one control period (50 physics steps of 1 ms
at the defaults, PD at every physics step), read every sensor (and render the 64x64
image when the camera is on). Prints one JSON line per camera setting.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from daydream.drivers import Command
from daydream.drivers.mujoco_a1 import STANDING_POSE, MuJoCoA1Driver


def run(camera: bool, steps: int, control_hz: float, physics_hz: float, warmup: int = 20) -> dict[str, object]:
    driver = MuJoCoA1Driver(camera=camera, control_hz=control_hz, physics_hz=physics_hz, start="lying_on_back")
    rng = np.random.default_rng(0)
    period = 1.0 / control_hz
    with driver:
        for i in range(steps + warmup):
            if i == warmup:
                start, sim_start = time.perf_counter(), driver.now()
            # Small random offsets around the standing pose: contacts change, as while learning.
            target = STANDING_POSE + rng.uniform(-0.5, 0.5, 12)
            driver.write(Command(np.clip(target, driver.spec.actuator.low, driver.spec.actuator.high)))
            driver.advance(period)
            driver.read()
        wall = time.perf_counter() - start
        sim = driver.now() - sim_start
    return {"bench": "sim_a1", "camera": camera, "control_hz": control_hz, "physics_hz": physics_hz,
            "steps": steps, "policy_steps_per_s": round(steps / wall, 1), "real_time_factor": round(sim / wall, 2),
            "ms_per_policy_step": round(1000 * wall / steps, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--control-hz", type=float, default=20.0)
    parser.add_argument("--physics-hz", type=float, default=1000.0)
    parser.add_argument("--camera", nargs="+", default=["off", "on"], choices=["off", "on"])
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    for setting in args.camera:
        print(json.dumps(run(setting == "on", args.steps, args.control_hz, args.physics_hz)), flush=True)


if __name__ == "__main__":
    main()
