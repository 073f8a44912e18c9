"""Loopback throughput of the experience stream: `python -m daydream.transport.bench`.

One sender (main thread, spooling with fsync as in production) and one receiver (a
thread, no-op `on_chunk`) on tcp://127.0.0.1; prints steps/s and MB/s for a vector-obs
chunk and an image chunk of 64 steps each.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from daydream.transport.receiver import ExperienceReceiver
from daydream.transport.sender import ExperienceSender


def run(name: str, chunk: dict[str, np.ndarray], seconds: float, workdir: Path) -> None:
    received = []
    receiver = ExperienceReceiver("tcp://127.0.0.1:*", lambda a, s, e, c: received.append(s), workdir / f"{name}-state")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            receiver.poll(10)

    thread = threading.Thread(target=serve)
    thread.start()
    sender = ExperienceSender(receiver.endpoint, "bench", workdir / f"{name}-spool", max_in_flight=64)
    steps = next(iter(chunk.values())).shape[0]
    nbytes = sum(a.nbytes for a in chunk.values())
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds:
        sender.send(chunk, episode_id=0)
        sent += 1
        sender.poll()
    while sender.pending and time.monotonic() - start < seconds + 30:
        sender.poll()
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    stop.set()
    thread.join()
    sender.close()
    receiver.close()
    print(f"{name:>7}: {sent} chunks x {steps} steps ({nbytes / 1e6:.3f} MB each) in {elapsed:.2f}s: "
          f"{sent * steps / elapsed:,.0f} steps/s, {sent * nbytes / elapsed / 1e6:,.1f} MB/s, "
          f"{len(received)} received, {len(set(received))} unique")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--dir", type=Path, default=None, help="where spool/state go (default: a temp dir)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    base = {"action": rng.standard_normal((64, 6)).astype(np.float32),
            "reward": rng.standard_normal(64).astype(np.float32), "is_first": np.zeros(64, bool)}
    vector = {"obs": rng.standard_normal((64, 24)).astype(np.float32), **base}
    image = {"image": rng.integers(0, 255, (64, 64, 64, 3), dtype=np.uint8), **base}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        run("vector", vector, args.seconds, Path(tmp))
        run("image", image, args.seconds, Path(tmp))


if __name__ == "__main__":
    main()
