"""Holding a model's engine while a comparison, a sweep or an API call uses it.

The engine pool (`backend.serving.pool`) never stops an engine somebody holds a lease on; these
helpers take that lease from async code without blocking the event loop, report why it is
waiting while the engine starts or memory is short, and give it back however the caller ends
(finished, failed, or a closed page cancelling it half way).

    async with hold(engines, spec, "viewer", report=print) as endpoint:
        ...   # spec's engine is not stopped for another model until the block ends
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from backend.serving.local import GENERATE
from backend.serving.registry import ModelSpec

REPORT_EVERY_S = 1.0


@contextlib.asynccontextmanager
async def hold(engines, spec: ModelSpec, holder: str, report: Callable[[str], None] | None = None, role: str = GENERATE) -> AsyncIterator:
    """The endpoint serving `spec` in `role` (generate; score: a verifier), leased to `holder` (viewer, sweep, request) for the block.
    A model on a chat endpoint needs no lease: its endpoint is yielded at once. `report` gets the
    engine's state (or why it waits) each second while the lease is pending."""
    if spec.chat is not None:
        yield spec.chat
        return
    loop = asyncio.get_running_loop()
    taking = loop.run_in_executor(None, engines.acquire, spec, holder, role)
    try:
        while True:
            done, _ = await asyncio.wait({taking}, timeout=REPORT_EVERY_S)  # a cancelled wait leaves `taking` running
            if done:
                break
            if report is not None:
                report(engines.describe(spec.name))
        endpoint = taking.result()  # raises EngineUnavailable with the reason
    except asyncio.CancelledError:
        # The thread cannot be stopped half way: give the lease back once it has one.
        taking.add_done_callback(lambda f: f.cancelled() or f.exception() is not None or engines.release(spec, holder, role))
        raise
    try:
        yield endpoint
    finally:
        engines.release(spec, holder, role)
