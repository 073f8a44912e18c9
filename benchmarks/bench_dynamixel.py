"""Round-trip rate of the Dynamixel arm driver against the emulated servo bus on a pty.

    python benchmarks/bench_dynamixel.py --servos 4 12 --cycles 2000

One cycle is what a control step costs on the bus: `read()` (one SYNC_READ of present current,
velocity and position: a request and one 21-byte status per servo) then `write()` (one SYNC_WRITE
of goal positions, no reply). Also timed alone: SYNC_READ only and SYNC_WRITE only. Prints one JSON
line per servo count.

A pty has no baud rate: bytes move as fast as the two processes exchange them, so these figures
measure the driver, pyserial and the emulator (their CPU cost and the process hand-offs), not the
wire. `wire_limit_cycles_per_s` is what the wire itself would allow at `--baudrate` (10 bits per
byte, Return Delay Time 0, no USB latency); on real hardware the lower of the two (and the USB
adapter's latency timer: 16 ms by default on FTDI, set it to 1 ms) bounds the rate.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from daydream.drivers import Command
from daydream.drivers.dynamixel.arm import DynamixelArm
from daydream.drivers.dynamixel.emulator import EmulatedBus


def wire_bytes(n: int) -> int:
    sync_read = 14 + n              # header 4, id, length 2, instruction, addr 2, len 2, ids, crc 2
    status = 21 * n                 # per servo: 11 bytes of framing and error + 10 data bytes
    sync_write = 14 + 5 * n         # per servo: id + 4 bytes of goal position
    return sync_read + status + sync_write


def run(n: int, cycles: int, baudrate: int, warmup: int = 100) -> dict[str, object]:
    ids = list(range(1, n + 1))
    with EmulatedBus(ids=ids) as bus:
        arm = DynamixelArm(ids=ids, port=bus.port, baudrate=baudrate, position_limits=[-1.0, 1.0],
                           velocity_limit=6.0, timeout_s=0.2, retries=2)
        rng = np.random.default_rng(0)
        targets = rng.uniform(-0.5, 0.5, (cycles + warmup, n))
        with arm:
            for i in range(warmup):
                arm.read()
                arm.write(Command(targets[i]))
            start = time.perf_counter()
            for i in range(warmup, warmup + cycles):
                arm.read()
                arm.write(Command(targets[i]))
            both = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(cycles):
                arm.read()
            reads = time.perf_counter() - start
            start = time.perf_counter()
            for i in range(cycles):
                arm.write(Command(targets[i]))
            writes = time.perf_counter() - start
            link = dict(arm.link.counters)
    nbytes = wire_bytes(n)
    return {"bench": "dynamixel", "servos": n, "baudrate": baudrate, "cycles": cycles,
            "transport": "pty (no baud limit)",
            "cycles_per_s": round(cycles / both, 1), "ms_per_cycle": round(1000 * both / cycles, 3),
            "sync_reads_per_s": round(cycles / reads, 1), "sync_writes_per_s": round(cycles / writes, 1),
            "wire_bytes_per_cycle": nbytes, "wire_limit_cycles_per_s": round(baudrate / (10 * nbytes), 1),
            "retries": link["retries"], "timeouts": link["timeouts"], "crc_errors": link["crc_errors"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servos", type=int, nargs="+", default=[4, 12])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--baudrate", type=int, default=1_000_000)
    args = parser.parse_args()
    for n in args.servos:
        print(json.dumps(run(n, args.cycles, args.baudrate)), flush=True)


if __name__ == "__main__":
    main()
