"""math-verify in worker processes: answer equivalence that is safe from any thread and bounded in time.

math-verify 0.9.0 bounds its own work with ``signal.alarm``, which raises ``ValueError("signal
only works in main thread ...")`` off the main thread (Gradio handlers, scheduler jobs, TRL's reward
loop), takes whole seconds only (a float timeout silently makes ``parse`` return ``[]`` and
``verify`` return ``False``), and reports a timeout as ``False``. So every comparison runs in a
worker process (`backend.evaluation.verify_worker`) with those alarms off, and this module bounds
the wall-clock time itself: a comparison that overruns ``timeout_s`` gets its worker killed (it is
replaced on the next call) and the verdict is None.

Workers are fresh interpreters (``python -I verify_worker.py``: like multiprocessing's "spawn"
start method, without re-importing the caller's ``__main__``) that speak JSON lines over pipes.
They start lazily, at most ``min(4, cpu_count)`` of them, are shared by all threads through a
small pool, and are killed at interpreter exit (``atexit``); a worker also exits by itself when its
parent goes away. Worker start-up (~1 s, importing sympy) and waiting for a free worker do not
count against ``timeout_s``.

    verify_equivalent("\\frac{1}{2}", "0.5", timeout_s=5.0)   # True
    warmup()      # start a worker ahead of time
    shutdown()    # stop them all (later calls start new ones)
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

# Seconds one comparison may take by default (the grade_timeout_s setting's default).
GRADE_TIMEOUT_S = 5.0
WORKER_SCRIPT = Path(__file__).with_name("verify_worker.py")
_STARTUP_TIMEOUT_S = 120.0
_MAX_WORKERS = min(4, os.cpu_count() or 1)
# Address-space cap of a worker (MiB): an answer like 10^{10^{10}} makes sympy try to build a
# multi-GB integer; with the cap it fails with MemoryError (-> not equal) instead of eating RAM.
_WORKER_MEM_MB = 4096


class _WorkerDied(Exception):
    """The worker closed its pipe or answered something unexpected."""


class _Worker:
    """One math-verify subprocess. Not thread-safe: the pool hands it to one thread at a time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(WORKER_SCRIPT), str(_WORKER_MEM_MB)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
            start_new_session=True,  # a Ctrl-C in the terminal is the parent's business
        )
        self._buf = b""
        self._next_id = 0
        try:
            line = self._read_line(time.monotonic() + _STARTUP_TIMEOUT_S)
            if line is None or json.loads(line).get("ready") is not True:
                raise _WorkerDied(f"grading worker did not start (got {line!r})")
        except BaseException:
            self.kill()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_line(self, deadline: float) -> bytes | None:
        """The next line from the worker, or None if ``deadline`` passes first."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        poller = select.poll()  # poll, not select: fds above 1024 are common in servers
        poller.register(fd, select.POLLIN)
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not poller.poll(math.ceil(remaining * 1000)):
                continue  # woke early or timed out: the loop re-checks the deadline
            chunk = os.read(fd, 65536)
            if not chunk:
                raise _WorkerDied("grading worker exited")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def compare(self, gold: str, pred: str, timeout_s: float) -> bool | None:
        """math-verify's verdict; raises TimeoutError past ``timeout_s`` (the worker is then stale)."""
        assert self.proc.stdin is not None
        self._next_id += 1
        req_id = self._next_id
        data = (json.dumps({"id": req_id, "gold": gold, "pred": pred}) + "\n").encode()
        deadline = time.monotonic() + timeout_s
        try:
            view = memoryview(data)
            while view:
                view = view[self.proc.stdin.write(view) or 0 :]
        except OSError as e:  # BrokenPipeError: it died
            raise _WorkerDied(str(e)) from e
        line = self._read_line(deadline)
        if line is None:
            raise TimeoutError(f"math-verify comparison ran past {timeout_s:g} s")
        try:
            resp = json.loads(line)
        except ValueError as e:
            raise _WorkerDied(f"bad answer from grading worker: {line[:200]!r}") from e
        if resp.get("id") != req_id:
            raise _WorkerDied(f"grading worker answered request {resp.get('id')}, not {req_id}")
        if "error" in resp:
            logger.warning("math-verify failed: %s", resp["error"])
            return None
        return bool(resp["ok"])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL not delivered?
            logger.warning("grading worker %d did not die", self.proc.pid)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


class _WorkerPool:
    """At most ``size`` workers, started on demand, each lent to one thread at a time."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._starting = 0

    def acquire(self) -> _Worker:
        with self._cond:
            while not self._idle and len(self._all) + self._starting >= self.size:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._starting += 1
        worker: _Worker | None = None
        try:
            worker = _Worker()  # slow (~1 s): outside the lock
            return worker
        finally:
            with self._cond:
                self._starting -= 1
                if worker is not None:
                    self._all.add(worker)
                else:
                    self._cond.notify()

    def release(self, worker: _Worker, healthy: bool) -> None:
        with self._cond:
            if worker not in self._all:  # shutdown() already killed it
                healthy = False
            elif healthy:
                self._idle.append(worker)
            else:
                self._all.discard(worker)
            self._cond.notify()
        if not healthy:
            worker.kill()

    def pids(self) -> list[int]:
        with self._cond:
            return [w.pid for w in self._all]

    def forget(self) -> None:
        """In a forked child: drop the parent's workers without killing them (they are its)."""
        self._cond = threading.Condition()  # the old lock may have been held at fork time
        for w in self._all:
            for pipe in (w.proc.stdin, w.proc.stdout):
                if pipe is not None:
                    try:
                        pipe.close()  # our copies only; otherwise a worker never sees EOF
                    except OSError:
                        pass
        self._idle = []
        self._all = set()
        self._starting = 0

    def shutdown(self) -> None:
        with self._cond:
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._cond.notify_all()
        for w in workers:
            w.kill()


_POOL = _WorkerPool(_MAX_WORKERS)
atexit.register(_POOL.shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.forget)


def verify_equivalent(pred: str, gold: str, timeout_s: float = GRADE_TIMEOUT_S) -> bool | None:
    """math-verify's verdict on two answer strings (no fast path), or None if undecided.

    Runs in a worker process; safe to call from any thread. None means the comparison ran past
    ``timeout_s`` (its worker is killed and replaced) or the worker failed.
    """
    try:
        worker = _POOL.acquire()
    except Exception:
        logger.exception("could not start a grading worker")
        return None
    healthy = False
    try:
        result = worker.compare(gold, pred, timeout_s)
        healthy = True
        return result
    except TimeoutError:
        logger.warning("grading timed out after %g s: pred=%.200r gold=%.200r", timeout_s, pred, gold)
        return None
    except _WorkerDied as e:
        logger.warning("grading worker failed (%s): pred=%.200r gold=%.200r", e, pred, gold)
        return None
    finally:
        _POOL.release(worker, healthy)


def warmup(workers: int = 1) -> None:
    """Start up to ``workers`` grading workers now, so the first grades don't pay for it."""
    held: list[_Worker] = []
    try:
        for _ in range(min(workers, _POOL.size)):
            held.append(_POOL.acquire())
    finally:
        for w in held:
            _POOL.release(w, True)


def shutdown() -> None:
    """Kill all grading workers (done automatically at exit); later calls start new ones."""
    _POOL.shutdown()


def _worker_pids() -> list[int]:
    """PIDs of the live workers (for tests)."""
    return _POOL.pids()
