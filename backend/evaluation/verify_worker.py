"""The math-verify worker: one process that compares answers for `backend.evaluation.verifier`.

The verifier starts it as ``python -I verify_worker.py MEM_MB`` (isolated mode: neither the
working folder nor this file's folder is on ``sys.path``, so no local module can shadow a library;
it imports only the standard library and math-verify). Protocol: one JSON line per request on
stdin (``{"id", "gold", "pred"}``), one per answer on a private copy of stdout (``{"id", "ok"}`` or
``{"id", "error"}``); the first line it writes is ``{"ready": true}``, once its one-off costs are
paid. EOF on stdin (the parent is gone) ends it. Anything a library prints goes to stderr.

math-verify bounds its own work with ``signal.alarm``; here both of its timeouts are off
(``parsing_timeout=None``, ``timeout_seconds=None``) and the parent bounds the wall-clock time by
killing a worker that overruns. ``MEM_MB`` caps the address space, so an answer like
``10^{10^{10}}`` fails with MemoryError (not equal) instead of eating the machine's RAM.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from typing import BinaryIO

# Compared once before "ready": the ANTLR grammar and sympy's lazy imports cost ~1 s, which must
# never count against a comparison's timeout.
WARMUP_PAIRS = (
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
    ("(1, 2]", "x \\in [1, 2]"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\{1, 2\\}"),
    ("x^2 - 1", "0.5"),
)


@functools.lru_cache(maxsize=1024)
def parse_answer(s: str) -> tuple:
    """math-verify's parse of an answer string: as a box first (MATH golds parse as meant only
    then: bare ``3\\sqrt{13}`` parses as ``3``), then in dollars, then as it is."""
    from math_verify import parse

    for text in ("\\boxed{%s}" % s, "$%s$" % s, s):
        parsed = parse(text, parsing_timeout=None)  # no signal.alarm: the parent bounds the time
        if parsed:
            return tuple(parsed)
    return ()


def equivalent(gold: str, pred: str) -> bool:
    from math_verify import verify

    return bool(verify(list(parse_answer(gold)), list(parse_answer(pred)), timeout_seconds=None))


def answer(request: dict) -> dict:
    """The response to one request line."""
    try:
        return {"id": request["id"], "ok": equivalent(request["gold"], request["pred"])}
    except Exception as e:  # verify catches its own errors; this is belt and braces
        return {"id": request["id"], "error": repr(e)[:500]}


def serve(requests: BinaryIO, out: BinaryIO) -> None:
    for a, b in WARMUP_PAIRS:
        equivalent(a, b)
    parse_answer.cache_clear()
    out.write(b'{"ready": true}\n')
    for line in requests:
        out.write((json.dumps(answer(json.loads(line))) + "\n").encode())


def main(argv: list[str]) -> None:
    out = os.fdopen(os.dup(1), "wb", buffering=0)  # the protocol channel
    os.dup2(2, 1)  # anything a library prints goes to stderr
    sys.stdout = sys.stderr
    logging.disable(logging.WARNING)  # math-verify warns that its own timeouts are off
    mem_mb = int(argv[1]) if len(argv) > 1 else 0
    if mem_mb > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))
    serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main(sys.argv)
