"""Safe defaults: the dashboard binds loopback; any other address needs --auth (or an explicitly named
insecure flag), refused before anything starts; with --auth a client without the password gets nothing."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest
from gradio_client import Client

from backend.settings import REPO_ROOT, AppSettings, SettingError
from tests.conftest import free_port, wait_for
from tests.test_serve_cli import _up, run_time_dirs


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2", "[::1]"])
def test_loopback_hosts_need_nothing(host):
    assert AppSettings(host=host).exposure_problem() is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "gpu-box.example"])
def test_other_hosts_need_auth_or_the_named_insecure_flag(host):
    problem = AppSettings(host=host).exposure_problem()
    assert problem and "--auth user:password" in problem and "--insecure-no-auth" in problem
    assert AppSettings(host=host, auth="demo:s3cret").exposure_problem() is None
    assert AppSettings(host=host, insecure_no_auth=True).exposure_problem() is None


@pytest.mark.parametrize("auth", ["nocolon", ":pw", "user:"])
def test_auth_must_be_user_and_password(auth):
    with pytest.raises(SettingError) as caught:
        AppSettings(auth=auth)
    assert str(caught.value) == "auth: give user:password, both non-empty (e.g. --auth demo:s3cret)"  # the value is never echoed
    assert AppSettings(auth="a:b:c").auth_pair() == ("a", "b:c")
    assert "***" == AppSettings(auth="u:p").public_dict()["auth"]


def test_serve_on_an_open_address_without_auth_is_refused_before_anything_starts(tmp_path):
    cmd = [sys.executable, "app.py", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path), "--db", str(tmp_path / "x.duckdb"), *run_time_dirs(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "host 0.0.0.0: not a loopback address" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.duckdb").exists() and not (tmp_path / "engine.log").exists()  # nothing was started


@pytest.mark.engine
def test_with_auth_the_dashboard_answers_only_with_the_password(engine, tiny_spec, tmp_path):
    endpoint = engine.ensure(tiny_spec, 300)
    port = free_port()
    cmd = [sys.executable, "app.py", "serve", "--host", "0.0.0.0", "--port", str(port), "--auth", "demo:s3cret", "--db", str(tmp_path / "a.duckdb"),
           "--data-dir", str(tmp_path), *run_time_dirs(tmp_path), "--backend-url", endpoint.base_url, f"--backend-api-key={endpoint.api_key}", "--model", tiny_spec.name]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _up(port), timeout_s=120)
        url = f"http://127.0.0.1:{port}/"
        for auth in (None, ("demo", "wrong")):
            with pytest.raises((ValueError, httpx.HTTPError)):  # gradio_client: the config needs a login
                Client(url, auth=auth, verbose=False).predict(api_name="/train_jobs")
        assert Client(url, auth=("demo", "s3cret"), verbose=False).predict(api_name="/train_jobs") == []
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
