"""The body of a local worker process: receive cells over a pipe, run them, send results.

A worker dies with its driver: on Linux the kernel sends it SIGKILL when the driver exits
(``PR_SET_PDEATHSIG``), and everywhere a watchdog thread exits the process once its
parent has changed. It ignores SIGINT: Ctrl-C in a terminal reaches the whole process
group, and the driver alone decides what happens then (it stops the workers itself).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

PR_SET_PDEATHSIG = 1
WATCHDOG_SECONDS = 1.0


def die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the driver died before the line above
        os._exit(1)

    def watchdog() -> None:
        while True:
            time.sleep(WATCHDOG_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watchdog, name="dgbench-watchdog", daemon=True).start()


def worker_main(conn: Connection, parent_pid: int, threads: int, plugins: tuple[str, ...]) -> None:
    """Serve ``(cell, device, result_files)`` requests until ``None`` or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)
    import torch

    from dgbench.estimators.plugin import register_plugins
    from dgbench.harness.result_files import run_with_files

    torch.set_num_threads(threads)
    register_plugins(plugins)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        cell, device, files = request
        conn.send(("started", None))  # the cell's time limit counts from here, not from the worker's start
        conn.send(("result", run_with_files(cell, device, files)))
