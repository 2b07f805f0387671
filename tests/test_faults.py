"""Faults with real processes: the engine killed (-9) mid-sweep, the app killed (-9) mid-sweep, and an
engine that never becomes ready. Each ends with exact row counts or a clear error within a bound.

The engine-kill test kills the session's shared engine under the shared dashboard (the app's own
supervisor restarts it); the app-kill test runs `python app.py serve` against the shared engine
(--backend-url), so no second engine starts; the never-ready tests start engines that cannot be ready.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import duckdb
import psutil
import pytest
from gradio_client import Client

from backend.serving.engine import State
from backend.settings import REPO_ROOT
from store import queries
from tests.conftest import free_port, wait_for
from tests.test_serve_cli import _up, run_time_dirs

pytestmark = pytest.mark.engine

# 30 questions x 2 controllers x 2 budgets x 2 samples: long enough to be cut in the middle.
SWEEP = {"models": ["l1-tiny"], "dataset": "arith", "controllers": ["l1_exact", "s1"], "budgets": ["64", "128"], "limit": 30, "samples": 2, "seed": 7}
TOTAL = 30 * 2 * 2 * 2


def _exact(con_or_cur, run: str) -> tuple[int, int, int]:
    """(rows, distinct gen_ids, distinct (model, controller, budget, question, sample) keys) of a run."""
    rows, ids = con_or_cur.execute("SELECT count(*), count(DISTINCT gen_id) FROM generations WHERE run_id = ?", [run]).fetchone()
    keys = con_or_cur.execute("SELECT count(*) FROM (SELECT DISTINCT model, controller, budget, question_id, sample_idx FROM generations WHERE run_id = ?)", [run]).fetchone()[0]
    return rows, ids, keys


def test_engine_killed_mid_sweep_is_restarted_and_the_sweep_finishes_exactly(app_url, engine, tiny_spec, store):
    engine.ensure(tiny_spec, 300)
    restarts = engine.status().restarts
    client = Client(app_url, verbose=False)
    result: dict = {}

    def sweep() -> None:
        try:
            s = SWEEP
            result["summary"] = client.predict(s["models"], s["dataset"], s["controllers"], [int(b) for b in s["budgets"]], s["limit"], s["samples"],
                                               s["seed"], "engine-killed", api_name="/sweep")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=sweep)
    thread.start()

    def stored() -> int:
        with store.reader() as cur:
            return queries.count_generations(cur, "engine-killed")

    wait_for(lambda: stored() >= 16, timeout_s=180, interval_s=0.05)
    killed_at = stored()
    os.killpg(engine.pid(), signal.SIGKILL)
    thread.join(timeout=600)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")  # /sweep raises if any generation failed
    assert killed_at < TOTAL, "the sweep ended before the engine was killed: make it longer"
    assert engine.status().state is State.READY and engine.status().restarts == restarts + 1
    with store.reader() as cur:
        assert _exact(cur, "engine-killed") == (TOTAL, TOTAL, TOTAL)
    assert sum(g["questions"] * g["samples"] for g in result["summary"]) == TOTAL


def _sweep_inputs(run: str, parallel: int) -> list:
    s = SWEEP
    return [s["models"], s["dataset"], s["controllers"], s["budgets"], s["limit"], s["samples"], s["seed"], parallel, run, False]


def _acknowledged(progress_html: str) -> int:
    """The count the dashboard's progress bar shows as stored."""
    found = re.search(r'data-complete="(\d+)"', progress_html or "")
    return int(found.group(1)) if found else 0


def test_app_killed_mid_sweep_keeps_what_it_acknowledged_and_the_restarted_app_resumes_its_job(engine, tiny_spec, tmp_path):
    endpoint = engine.ensure(tiny_spec, 300)
    db = tmp_path / "app.duckdb"

    def start_app():
        port = free_port()
        cmd = [sys.executable, "app.py", "serve", "--port", str(port), "--db", str(db), "--data-dir", str(tmp_path), *run_time_dirs(tmp_path),
               "--backend-url", endpoint.base_url, f"--backend-api-key={endpoint.api_key}", "--model", tiny_spec.name]
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _up(port) or proc.poll() is not None, timeout_s=120)
        assert proc.poll() is None, "the app did not start"
        return proc, Client(f"http://127.0.0.1:{port}/", verbose=False)

    app, client = start_app()
    try:
        job = client.submit(*_sweep_inputs("app-killed", 4), api_name="/sweep_stream")
        shown = lambda: max((_acknowledged(out[0]) for out in job.outputs()), default=0)  # noqa: E731
        wait_for(lambda: shown() >= 16, timeout_s=180, interval_s=0.05)
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait(30)
    acknowledged = shown()
    assert acknowledged < TOTAL, "the sweep ended before the app was killed: make it longer"

    # The file opens cleanly (another process, before any restart) and holds all it acknowledged.
    with duckdb.connect(str(db), read_only=True) as con:
        on_disk = _exact(con, "app-killed")
    assert on_disk[0] == on_disk[1] == on_disk[2] and acknowledged <= on_disk[0] < TOTAL, (acknowledged, on_disk)

    # Restarted, the app resumes the sweep job by itself (nobody asks again), from what the store holds.
    app, client = start_app()
    try:
        job = wait_for(lambda: next((j for j in client.predict(api_name="/jobs") if "app-killed" in (j.get("runs") or ())
                                     and j["state"] in ("finished", "failed", "cancelled")), None), timeout_s=300, interval_s=1)
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(60)
    assert job["state"] == "finished" and job.get("resumed_at"), job
    assert (job["progress"]["complete"], job["progress"]["stored_before"]) == (TOTAL, on_disk[0]), job["progress"]
    with duckdb.connect(str(db), read_only=True) as con:
        assert _exact(con, "app-killed") == (TOTAL, TOTAL, TOTAL)
        assert con.execute("SELECT status FROM runs WHERE run_id = 'app-killed'").fetchone()[0] == "finished"


def _engines_started_for(marker: str) -> list[int]:
    """Pids of vLLM servers whose command line contains `marker` (one only this test's engine has)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ()) + " "
        if "vllm.entrypoints.openai.api_server" in cmdline and marker in cmdline:
            found.append(proc.info["pid"])
    return found


def test_a_folder_vllm_cannot_load_gives_the_dashboard_a_clear_error_not_a_spinner(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture", "architectures": ["NoSuchForCausalLM"]}))
    port = free_port()
    cmd = [sys.executable, "app.py", "serve", "--port", str(port), "--db", str(tmp_path / "b.duckdb"), "--data-dir", str(tmp_path),
           *run_time_dirs(tmp_path), "--model", str(broken), "--engine-start-timeout-s", "300"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _up(port) or proc.poll() is not None, timeout_s=120)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        started = time.monotonic()
        with pytest.raises(Exception, match=r"engine failed to start with exit status \d+") as refused:
            client.predict("Compute 1 + 1.", str(broken), [32], ["l1_exact"], "2", 1, api_name="/compare")
        waited = time.monotonic() - started
        assert waited < 120, f"the error took {waited:.0f} s"  # vLLM gives up in ~10-40 s here; the bound is the engine's exit, not the timeout
        assert "no-such-architecture" in str(refused.value) or "NoSuchForCausalLM" in str(refused.value)  # the log tail says why
        assert _engines_started_for(f"--model {broken} ") == []  # nothing left running
        assert psutil.Process(proc.pid).children(recursive=True) == []  # no child, zombie or not
        assert client.predict(api_name="/train_jobs") == []  # the dashboard still answers
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_an_engine_not_ready_within_the_start_timeout_is_stopped_with_a_clear_error(tmp_path):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "app.py", "sweep", "--dataset", "arith", "--limit", "1", "--budgets", "32", "--db", str(tmp_path / "t.duckdb"),
                           "--data-dir", str(tmp_path), "--engine-start-timeout-s", "3"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr[-2000:]
    assert "app.py sweep: stopped, the engine is not available: engine is down: engine not ready after 3 s" in done.stderr, done.stderr[-2000:]
    assert elapsed < 90, f"took {elapsed:.0f} s"  # app start + 3 s + stopping the half-started engine
    ports = re.findall(r"starting l1-tiny on port (\d+)", (tmp_path / "engine-l1-tiny.log").read_text())
    assert len(ports) == 1  # started once, not restarted in a loop
    assert _engines_started_for(f"--port {ports[0]} ") == []  # and stopped, not left half-started
    with duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM generations").fetchone()[0] == 0
