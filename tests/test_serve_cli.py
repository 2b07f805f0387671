"""`python app.py serve` as a user runs it: a real process, pointed at the session's engine.

It uses --backend-url, so no second engine starts; the app is driven through
gradio_client, stopped with SIGTERM, and its DuckDB file is then opened to
check that every generation it returned is stored.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import duckdb
import httpx
import pytest
from gradio_client import Client

from backend.settings import REPO_ROOT
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.engine


def test_serve_stores_every_generation_and_stops_cleanly(engine, tiny_spec, tmp_path):
    endpoint = engine.ensure(tiny_spec, 300)
    port, db = free_port(), tmp_path / "app.duckdb"
    cmd = [sys.executable, "app.py", "serve", "--port", str(port), "--db", str(db), "--data-dir", str(tmp_path), *run_time_dirs(tmp_path),
           "--backend-url", endpoint.base_url, f"--backend-api-key={endpoint.api_key}", "--model", tiny_spec.name]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _up(port), timeout_s=120)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        result = client.predict("Compute 5 + 6.", tiny_spec.name, [24, 48], ["s1", "l1_exact"], "11", 2, api_name="/compare")
        assert all(g["phase"] == "done" for g in result["generations"])
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT controller, budget, total_tokens FROM generations WHERE run_id = ?", [result["run_id"]]).fetchall()
    assert sorted(rows) == sorted((g["controller"], g["budget"], g["total_tokens"]) for g in result["generations"])


def run_time_dirs(root) -> list[str]:
    """Flags that keep an app's jobs, scheduler and fine-tuned models in ``root`` (not the repo's data/)."""
    return ["--jobs-dir", str(root / "jobs"), "--scheduler-db", str(root / "scheduler.sqlite"), "--trained-models-dir", str(root / "trained")]


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
