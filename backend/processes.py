"""Child processes: die with the app, yield the CPU to it, and read the end of their logs.

    subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent)
    print(tail(Path("data/engine.log"), 20))
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def engine_child(nice: int) -> None:
    """In the engine's child, before it runs: die with the app, at CPU priority ``nice``."""
    die_with_parent()
    lower_priority(nice)


def lower_priority(nice: int) -> None:
    """In a child: run at ``nice`` (0-19), it and every thread and process it starts.

    Linux with autogroup scheduling (many kernels' default) first shares the CPU between sessions,
    and a child started in a new session is a group of its own: its threads' nice only orders them
    among themselves. The group's own nice is set too, where the kernel has one."""
    if nice <= 0:
        return
    os.nice(nice)
    try:
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
    except OSError:  # no autogroup scheduling here: the nice above is what counts
        pass


def die_with_parent() -> None:
    """In the child: get SIGTERM when the app dies, even by kill -9 (Linux), so no engine is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
