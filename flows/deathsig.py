"""Child processes die with their parent, even when the parent is killed with SIGKILL (Linux).

Called in the extraction pool's forkserver (its preload module flows/deathsig_preload.py) and as
the initializer of its worker: each asks the kernel for SIGKILL when its parent goes (PR_SET_PDEATHSIG), so a killed run
leaves no forkserver or worker behind, reparented to PID 1.
"""
from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


PARENT_VARIABLE = "NEWSMON_RUN_PID"  # set by the run for its forkserver: the parent it must die with


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (a no-op where prctl is missing)."""
    parent = int(os.environ.get(PARENT_VARIABLE) or 0)
    if parent != os.getppid():
        parent = os.getppid()  # a worker: its parent is the forkserver
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: nothing to ask for
        return
    if os.getppid() != parent or parent == 1:  # the parent died before the request took effect
        os._exit(1)

