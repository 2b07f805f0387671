"""Hold Ctrl-C (and SIGTERM) back while a command shuts down, then deliver it.

    with interrupts_held():
        service.close()   # stops the engine child
        store.close()     # checkpoints DuckDB

A signal that lands inside `close()` would abandon the store half-closed and print a traceback
instead of the command's own message and exit code (130 for a sweep). Inside the block the signal
is only recorded; when the block ends it is raised as `KeyboardInterrupt`, where the command's
usual handler turns it into its message.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Record SIGINT/SIGTERM during the block; raise KeyboardInterrupt after it if one came.

    Python lets only the main thread set signal handlers; elsewhere (a Gradio handler, a test
    thread) signals are not delivered to that thread anyway, so the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in HELD_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt
