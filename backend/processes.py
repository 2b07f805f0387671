"""Child processes: die with the app, yield the CPU to it, and read the end of their logs.

    subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent)
    print(tail(Path("data/engine.log"), 20))
    resident_gib(engine.pid())   # the memory an engine's server and every process it started hold
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

_PSS = re.compile(r"^Pss:\s+(\d+) kB", re.M)


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


def group_members(pgid: int) -> list[int]:
    """The pids of process group ``pgid`` (an engine's server and every process it started: they
    share its group, since it is started in a session of its own)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone in between
        if int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def resident_gib(pgid: int | None) -> float:
    """Memory held by process group ``pgid``, in GiB: the sum of its processes' proportional set
    size (PSS: a page shared by n processes counts 1/n in each, so forked workers are not counted
    twice, as a sum of RSS would). 0 for no group or one that is gone."""
    if not pgid:
        return 0.0
    kib = 0
    for pid in group_members(pgid):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        match = _PSS.search(text)
        kib += int(match.group(1)) if match else 0
    return kib / 2**20
