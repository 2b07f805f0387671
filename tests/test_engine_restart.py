"""The supervisor notices a dead engine (kill -9), says so, and restarts it; the app keeps serving."""

from __future__ import annotations

import os
import signal

import pytest

from backend.service.compare import parse_compare_request
from backend.serving.engine import State
from tests.conftest import run, wait_for

pytestmark = pytest.mark.engine


def test_killed_engine_is_restarted(engine, tiny_spec, service):
    engine.ensure(tiny_spec, 300)
    restarts = engine.status().restarts
    os.killpg(engine.pid(), signal.SIGKILL)
    status = wait_for(lambda: engine.status() if engine.status().state is not State.READY else None, timeout_s=30)
    assert "restarting" in status.message or status.state is State.STARTING
    wait_for(lambda: engine.status().state is State.READY, timeout_s=300)
    assert engine.status().restarts == restarts + 1

    async def one():
        request = parse_compare_request("Compute 3 + 4.", tiny_spec.name, "16", ["hard_cap"], gold="7", max_columns=24)
        return [s async for s in service.compare_stream(request)][-1]

    final = run(one())
    assert final.done and final.generations[0].phase == "done"
