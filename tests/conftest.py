"""Test set-up: headless MuJoCo, the tests folder on sys.path, torch threads, and ordering.

The suite runs on two xdist workers (`make test`). The longest test (the learning check)
is moved to the front so that one worker runs it while the other works through the rest;
each worker then gets one torch thread, so the two do not fight over the two cores.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

FIRST = ("test_tiny_agent_learns_pendulum",)  # by duration: start the longest first


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.name not in FIRST)  # stable: everything else keeps its order
