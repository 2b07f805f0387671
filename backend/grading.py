"""Answer grader: is the model's final ``\\boxed{...}`` answer equal to the gold answer?

Usage::

    from backend.grading import grade, gold_answer

    g = grade(answer_text, gold)                       # answer_text: the part after </think>
    g = grade(answer_text, gold, full_text=whole_output)  # fall back to the whole output
    g.extracted   # the last boxed answer, or None if the model boxed nothing
    g.correct     # True / False, or None when it could not be decided
                  # (no gold, or the comparison ran past ``timeout_s``)

    gold_answer("... #### 1,234")            # -> "1234" (GSM8K worked solution)
    gold_answer("\\left( 3, \\frac{\\pi}{2} \\right)")  # MATH answers come back stripped

How a grade is decided:

1. ``extract_boxed`` takes the last ``\\boxed{...}`` / ``\\boxed ...`` / ``\\fbox{...}`` of
   ``answer_text`` (or of ``full_text`` if the answer part has none). No box -> incorrect.
2. Fast path, in-process and sympy-free: the two strings are equal after trivial LaTeX
   normalisation (spacing, ``\\left``/``\\right``, ``\\dfrac``) -> correct; both are plain
   integers (thousands commas allowed) -> correct iff the numbers are equal.
3. Otherwise math-verify (``parse`` + ``verify``) compares them in a worker process, with both
   strings wrapped as ``\\boxed{...}`` (this parses all 500 MATH-500 golds as intended; the bare
   string does not: ``3\\sqrt{13}`` parses as ``3``). Every sympy call is in the worker.

Why a worker process: math-verify 0.9.0 bounds its own work with ``signal.alarm``, which raises
``ValueError("signal only works in main thread ...")`` off the main thread (Gradio handlers,
scheduler jobs, TRL's reward loop), takes whole seconds only (a float timeout silently makes
``parse`` return ``[]`` and ``verify`` return ``False``), and reports a timeout as ``False``.
The worker calls ``parse(..., parsing_timeout=None)`` and ``verify(..., timeout_seconds=None)``,
which turns those alarms off, and the parent bounds the wall-clock time itself: a comparison that
overruns ``timeout_s`` gets its worker killed (it is replaced on the next call) and the grade is
``correct=None``. Workers are plain ``python -c`` subprocesses (a fresh interpreter like the
multiprocessing "spawn" start method, but without re-importing the caller's ``__main__``) that
speak JSON lines over pipes. They start lazily, at most ``min(4, cpu_count)`` of them, are shared by all threads through a small pool, and are killed
at interpreter exit (``atexit``); a worker also exits by itself when its parent goes away. Worker
start-up (~1 s, importing sympy) and waiting for a free worker do not count against
``timeout_s``. ``warmup()`` starts one ahead of time; ``shutdown()`` stops them all.

GSM8K conventions (all decided by math-verify, listed so nobody is surprised):
``\\boxed{18.0}``, ``\\boxed{\\$18}``, ``\\boxed{\\$18.00}``, ``\\boxed{18 \\text{ dollars}}``,
``\\boxed{18,000}`` (gold 18000) are correct; ``\\boxed{18.5}`` and ``\\boxed{17.999999}`` are
not. ``\\boxed{18\\%}`` is correct for gold 18 (math-verify accepts a percentage written with
or without the ``\\%``). A unit outside ``\\text{}`` (``18 dollars``) parses as a product of
letters and is judged incorrect.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

__all__ = [
    "Grade",
    "extract_boxed",
    "gold_answer",
    "grade",
    "verify_equivalent",
    "warmup",
    "shutdown",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BARE_BOX_ARG_RE = re.compile(r"[^\s$]+")


def _match_brace(text: str, open_at: int) -> int | None:
    """Index just past the ``}`` matching the ``{`` at ``open_at``; None if unbalanced.

    Escaped characters (``\\{``, ``\\}``, ``\\\\``) are skipped, so they never count as braces.
    """
    depth = 0
    i = open_at
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _box_argument(text: str, pos: int) -> tuple[str | None, int]:
    """The argument of a box command ending at ``pos``, and where scanning should resume."""
    i = pos
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] == "{":
        end = _match_brace(text, i)
        if end is None:
            return None, len(text)
        return text[i + 1 : end - 1].strip(), end
    # "\boxed 5" (no braces): the following run of non-space characters, up to a "$".
    m = _BARE_BOX_ARG_RE.match(text, i)
    if m is None:
        return None, len(text)
    return m.group(0).rstrip(".,;") or None, m.end()


def extract_boxed(text: str) -> str | None:
    """Content of the last top-level ``\\boxed{...}`` / ``\\boxed ...`` / ``\\fbox{...}`` in ``text``.

    Braces nest (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``). Returns None when there is no box
    or when the last box is never closed (e.g. a truncated generation).
    """
    result: str | None = None
    pos = 0
    while (m := _BOX_RE.search(text, pos)) is not None:
        result, pos = _box_argument(text, m.end())
    return result


def gold_answer(gold: str) -> str:
    """The gold answer as a plain string.

    GSM8K worked solutions (``"... #### 1,234"``) give the number after the last ``####`` with
    commas removed (``"1234"``). Anything else (MATH-style LaTeX, an integer string) is returned
    stripped, unwrapped from a surrounding ``$...$`` or ``\\boxed{...}`` if it has one.
    """
    if "####" in gold:
        return gold.rsplit("####", 1)[1].strip().replace(",", "")
    s = gold.strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$" and s[-2] != "\\":
        s = s.strip("$").strip()
    m = _BOX_RE.match(s)
    if m is not None:
        inner, end = _box_argument(s, m.end())
        if inner is not None and end == len(s):
            s = inner
    return s


# ---------------------------------------------------------------------------------------------
# Fast path (pure string work, no sympy)
# ---------------------------------------------------------------------------------------------

_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_DFRAC_RE = re.compile(r"\\[dt]frac(?![A-Za-z])")
_DISPLAYSTYLE_RE = re.compile(r"\\displaystyle(?![A-Za-z])")
_SPACING_RE = re.compile(r"\\[,;: ]")
# A single space matters only between two word characters ("\cot x") or after a comma
# ("1, 234" is a list, "1,234" a number); anywhere else it is dropped.
_DROP_SPACE_RE = re.compile(r"(?<![A-Za-z0-9,]) | (?![A-Za-z0-9])")
_INT_RE = re.compile(r"[+-]?(?:\d+|\d{1,3}(?:,\d{3})+)")


def _unwrap_dollars(s: str) -> str:
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$" and s[-2] != "\\":
        return s.strip("$")
    return s


def _normalize(s: str) -> str:
    """Trivial normalisation for the string-equality fast path."""
    t = _unwrap_dollars(s.strip())
    t = t.replace("{,}", ",").replace("\\!", "")
    t = _LEFT_RIGHT_RE.sub("", t)
    t = _DFRAC_RE.sub(r"\\frac", t)
    t = _DISPLAYSTYLE_RE.sub("", t)
    t = _SPACING_RE.sub(" ", t)
    t = " ".join(t.split())
    t = _DROP_SPACE_RE.sub("", t)
    if t.endswith(".") and not t.endswith("\\."):
        t = t[:-1]
    return t


def _as_int(s: str) -> int | None:
    """``s`` as an integer if it is one ("1,234", "10,\\!080", "-7"); otherwise None."""
    t = _unwrap_dollars(s.strip()).replace("{,}", ",")
    t = re.sub(r"\\!\s*|\\,", "", t).strip()
    if _INT_RE.fullmatch(t) is None:
        return None
    return int(t.replace(",", ""))


def _fast_verdict(pred: str, gold: str) -> bool | None:
    """True/False when trivially decidable, None when math-verify must decide."""
    if _normalize(pred) == _normalize(gold):
        return True
    a, b = _as_int(pred), _as_int(gold)
    if a is not None and b is not None:
        return a == b
    return None


# ---------------------------------------------------------------------------------------------
# math-verify worker processes
# ---------------------------------------------------------------------------------------------

_STARTUP_TIMEOUT_S = 120.0
_MAX_WORKERS = min(4, os.cpu_count() or 1)
# Address-space cap of a worker (MiB): an answer like 10^{10^{10}} makes sympy try to build a
# multi-GB integer; with the cap it fails with MemoryError (-> not equal) instead of eating RAM.
_WORKER_MEM_MB = 4096

# The worker program. Protocol: one JSON line per request on stdin ({"id", "gold", "pred"}),
# one per answer on the private copy of stdout ({"id", "ok"} or {"id", "error"}); the first
# line it writes is {"ready": true}. EOF on stdin (the parent is gone) ends it.
_WORKER_SOURCE = r"""
import sys
sys.path[:] = [p for p in sys.path if p]  # no cwd: a local json.py must not shadow anything
import functools, json, logging, os
out = os.fdopen(os.dup(1), "wb", buffering=0)  # protocol channel
os.dup2(2, 1)  # anything a library prints goes to stderr
sys.stdout = sys.stderr
logging.disable(logging.WARNING)  # math-verify warns that its own timeouts are off
mem_mb = int(sys.argv[1])
if mem_mb > 0:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))
from math_verify import parse, verify

@functools.lru_cache(maxsize=1024)
def parse_answer(s):
    # parsing_timeout=None: no signal.alarm; the parent kills us if we take too long.
    for text in ("\\boxed{%s}" % s, "$%s$" % s, s):
        parsed = parse(text, parsing_timeout=None)
        if parsed:
            return tuple(parsed)
    return ()

# Pay the one-off costs (ANTLR grammar, sympy's lazy imports: ~1 s) before saying "ready", so
# they never count against a comparison's timeout.
for a, b in (("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"), ("(1, 2]", "x \\in [1, 2]"),
             ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\{1, 2\\}"), ("x^2 - 1", "0.5")):
    verify(list(parse_answer(a)), list(parse_answer(b)), timeout_seconds=None)
parse_answer.cache_clear()
out.write(b'{"ready": true}\n')
for line in sys.stdin.buffer:
    req = json.loads(line)
    try:
        ok = verify(list(parse_answer(req["gold"])), list(parse_answer(req["pred"])),
                    timeout_seconds=None)
        resp = {"id": req["id"], "ok": bool(ok)}
    except Exception as e:  # verify catches its own errors; this is belt and braces
        resp = {"id": req["id"], "error": repr(e)[:500]}
    out.write((json.dumps(resp) + "\n").encode())
"""


class _WorkerDied(Exception):
    """The worker closed its pipe or answered something unexpected."""


class _Worker:
    """One math-verify subprocess. Not thread-safe: the pool hands it to one thread at a time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_SOURCE, str(_WORKER_MEM_MB)],
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


def verify_equivalent(pred: str, gold: str, timeout_s: float = 5.0) -> bool | None:
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


# ---------------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grade:
    """``extracted``: the last boxed answer (None: none found). ``correct``: None = undecided."""

    extracted: str | None
    correct: bool | None


def grade(
    answer_text: str,
    gold: str | None,
    full_text: str | None = None,
    timeout_s: float = 5.0,
) -> Grade:
    """Grade the last boxed answer of ``answer_text`` (else of ``full_text``) against ``gold``.

    ``gold`` may be MATH-style LaTeX, an integer string or a GSM8K solution ending in ``#### N``.
    No gold -> ``correct=None``; no boxed answer -> ``correct=False``; math-verify running past
    ``timeout_s`` -> ``correct=None``. Safe to call from any thread.
    """
    extracted = extract_boxed(answer_text) if answer_text else None
    if extracted is None and full_text:
        extracted = extract_boxed(full_text)
    if gold is None or not gold.strip():
        return Grade(extracted, None)
    if not extracted:
        return Grade(extracted, False)
    gold_s = gold_answer(gold)
    verdict = _fast_verdict(extracted, gold_s)
    if verdict is None:
        verdict = verify_equivalent(extracted, gold_s, timeout_s)
    return Grade(extracted, verdict)
