"""Child processes: die with the app, and read the end of their logs.

    subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent)
    print(tail(Path("data/engine.log"), 20))
"""

from __future__ import annotations

import signal
from pathlib import Path


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def die_with_parent() -> None:
    """In the child: get SIGTERM when the app dies, even by kill -9 (Linux), so no engine is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
