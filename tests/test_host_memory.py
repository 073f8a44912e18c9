"""`host_memory`: a training process keeps freed C-heap memory for its next large tensors.

Each case runs in a fresh interpreter: the allocator's settings are process-wide and
must not leak into the test worker."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from daydream.config import ConfigError, load_config
from daydream.runtime.host_memory import configure_host_memory

# What an update does, in small: several large blocks live at once, then all are freed,
# then the next update asks for them again. Prints (whether retain took effect, minor faults).
CHURN = """
import json, resource, sys
import numpy as np
from daydream.runtime.host_memory import configure_host_memory
took = configure_host_memory(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    blocks = [np.ones(4 * 1024 * 1024, np.float32) for _ in range(4)]  # 4 x 16 MiB, touched
    del blocks
print(json.dumps([took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before]))
"""

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def churn(mode: str) -> tuple[bool, int]:
    done = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    took, faults = json.loads(done.stdout.strip().splitlines()[-1])
    return took, faults


@pytest.mark.skipif(not GLIBC, reason="host_memory=retain tunes glibc's malloc; elsewhere it is a no-op")
def test_retain_keeps_freed_blocks_for_the_next_update():
    took, retained = churn("retain")
    system_took, system = churn("system")
    assert took and not system_took
    # glibc's own defaults adapt after the first blocks and still fault ~5 blocks' pages back in here (20k);
    # retained, only the first iteration's blocks fault in (about 2k: the heap grows with them)
    assert retained * 4 < system, f"{retained} minor faults with retain, {system} without"


def test_bad_mode_is_refused_by_the_config_and_the_function():
    with pytest.raises(ConfigError, match="host_memory"):
        load_config(None, ["host_memory=keep"])
    with pytest.raises(ValueError, match="retain"):
        configure_host_memory("keep")
    assert configure_host_memory("system") is False  # leaves the allocator alone, in any process
