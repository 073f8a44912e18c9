"""Ctrl-C and SIGTERM as a clean shutdown: `stop_on_sigterm` for any long-running command, and
`stop_on_interrupt` for a process that runs a control loop (the actor); and SIGUSR1 as a dump of
every thread's stack (`dump_stacks_on_sigusr1`), for every daydream process.

In a control loop the signal raises KeyboardInterrupt as Python's default handler does, so blocking waits end at
once, and it also sets a stop event that the loop checks at every step. A KeyboardInterrupt can
be lost on its way up: C++ extensions that run Python's signal check inside their own calls may
turn it into another error or drop it (CI saw actors act on for minutes after SIGINT), and then
the event still stops the loop at its next step, through the same spool-and-drain shutdown.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType


def stop_on_sigterm() -> None:
    """SIGTERM (systemd, docker stop, the launcher) shuts down like Ctrl-C: spool, drain, checkpoint.
    A second SIGTERM kills at once."""
    signal.signal(signal.SIGTERM, _shutdown_handler(None))


def stop_on_interrupt() -> threading.Event:
    """Install SIGINT and SIGTERM handlers (main thread only) that set the returned event and raise
    KeyboardInterrupt. A second SIGTERM kills at once (a stuck shutdown can still be ended)."""
    stop = threading.Event()
    handler = _shutdown_handler(stop)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _shutdown_handler(stop: threading.Event | None) -> Callable[[int, FrameType | None], None]:
    """A handler that sets `stop` (where given) and raises KeyboardInterrupt; after a SIGTERM the next one kills."""
    def handler(signum: int, frame: FrameType | None) -> None:
        if stop is not None:
            stop.set()
        if signum == signal.SIGTERM:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt

    return handler


def dump_stacks_on_sigusr1() -> None:
    """`kill -USR1 PID` prints every thread's stack to stderr: how to see where a process that will not stop is."""
    if hasattr(signal, "SIGUSR1"):
        # the process's own stderr: under pytest's capture sys.stderr has no file descriptor
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
