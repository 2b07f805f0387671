"""Shared, expensive fixtures: one real vLLM engine (CPU) and one app per test session.

The engine serves the shipped tiny L1 model (models/l1-tiny, the default) through
the app's own supervisor (backend.serving.local.LocalEngine); it takes 30-70 s to
start here, so every test that needs it shares it. Tests always go through
`engine.ensure(...)`, never a cached endpoint, because a test may kill and
restart the engine. The app (store, service, training jobs) is built by the same
factory as `app.py serve` (backend.factory.open_app), over that engine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import signal
import socket
import time
from pathlib import Path

import pytest

from backend.controllers.session import ModelSession
from backend.factory import open_app
from backend.serving.client import EngineClient
from backend.serving.local import LocalEngine
from backend.serving.registry import ModelRegistry
from backend.settings import REPO_ROOT, AppSettings

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
STUB_KEY = "-sk-shared-stub-" + secrets.token_hex(12)  # the shared app's key for its chat stub; tests grep for it
TINY_MODEL = "l1-tiny"


@pytest.fixture(scope="session")
def registry() -> ModelRegistry:
    return ModelRegistry(REPO_ROOT / "models")


@pytest.fixture(scope="session")
def tiny_spec(registry):
    spec = registry.resolve(TINY_MODEL)
    assert Path(spec.source, "config.json").is_file(), "the shipped tiny model is missing from models/"
    return spec


@pytest.fixture(scope="session")
def engine(tmp_path_factory, tiny_spec):
    settings = AppSettings(engine_kv_cache_gib=1, engine_max_model_len=2048, engine_start_timeout_s=300, engine_max_restarts=3)
    engine = LocalEngine(settings.engine_config(), log_dir=tmp_path_factory.mktemp("engine"), base_env=os.environ)
    engine.start(tiny_spec)
    engine.wait_ready(tiny_spec.name, timeout_s=300)
    yield engine
    engine.stop()


def run(coro):
    return asyncio.run(coro)


@pytest.fixture()
def session_factory(engine, tiny_spec):
    """Returns an async context manager factory: `async with session_factory() as session:`."""

    class _Session:
        async def __aenter__(self) -> ModelSession:
            endpoint = await asyncio.to_thread(engine.ensure, tiny_spec, 300)
            self.client = EngineClient(endpoint, timeout_s=120)
            return await ModelSession.open(self.client)

        async def __aexit__(self, *exc) -> None:
            await self.client.aclose()

    return _Session


@pytest.fixture(scope="session")
def app_settings(tmp_path_factory) -> AppSettings:
    """The app's settings for the shared app: run-time folders (jobs, fine-tuned models) in a temp dir.
    Its dataset folders are a temp dir (first: bare names are looked up there) and the shared
    benchmark data; its dataset size limit is 1 MB, so a test can go over it cheaply."""
    root = tmp_path_factory.mktemp("app")
    (root / "datasets").mkdir()
    # db in the temp dir too: the default (data/budgetlab.duckdb) would carry runs over from one test session to the next.
    return AppSettings(model=TINY_MODEL, db=str(root / "budgetlab.duckdb"), answer_max_tokens=64, unconstrained_max_tokens=512, s1_max_waits=10_000,
                       models_dir=str(REPO_ROOT / "models"), trained_models_dir=str(root / "trained"), jobs_dir=str(root / "jobs"),
                       scheduler_db=str(root / "scheduler.sqlite"), data_dir=str(root), training_poll_s=0.3, export_dir=str(root / "exports"),
                       dataset_dirs=f"{root / 'datasets'},{SHARED_DATA}", dataset_max_mb=1)


@pytest.fixture(scope="session")
def chat_stub():
    """A local stand-in for a hosted chat API (tests/chat_stub.py): hosted APIs cannot be reached from here."""
    from tests.chat_stub import ChatStub

    server = ChatStub()
    yield server
    server.close()


@pytest.fixture(scope="session")
def app(engine, app_settings, chat_stub, tmp_path_factory):
    """The app as `app.py serve` builds it (store in a temp dir, real APScheduler with its SQLite
    store), over the shared engine, which the app does not stop. Its endpoints file names the chat
    stub (``obey@stub``), whose key is in the app's environment as ``BL_STUB_KEY`` (STUB_KEY)."""
    endpoints = tmp_path_factory.mktemp("endpoints") / "endpoints.toml"
    endpoints.write_text(f'[endpoints.stub]\nbase_url = "{chat_stub.base_url}"\nmodel = "obey"\napi_key_env = "BL_STUB_KEY"\n'
                         'knob = "vllm_thinking_budget"\nprice_in_per_m = 1.0\nprice_out_per_m = 10.0\nbudgets = [64, 128, 256]\n')
    settings = dataclasses.replace(app_settings, endpoints=str(endpoints))
    with open_app(settings, env={**os.environ, "BL_STUB_KEY": STUB_KEY}, engine=engine, jobs=True) as opened:
        yield opened


@pytest.fixture(scope="session")
def store(app):
    return app.store


@pytest.fixture(scope="session")
def service(app):
    return app.service


@pytest.fixture(scope="session")
def training_jobs(app):
    return app.jobs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def app_url(service, training_jobs, app_settings):
    """The real dashboard (ui.app.build_app over the real service), served on a free loopback port."""
    from ui.app import build_app, launch_options

    demo = build_app(service, training_jobs, export_dir=Path(app_settings.export_dir))
    demo.queue(default_concurrency_limit=16)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    url = f"http://127.0.0.1:{port}/"
    yield url
    demo.close()


# Tiers (README, "Tests"): a test is an ``engine`` test when it uses a fixture that starts vLLM,
# directly or through another fixture (``item.fixturenames`` is the whole closure: ``app``,
# ``service`` and ``app_url`` all reach ``engine``), so the marker cannot drift from what runs.
# ``train`` tests train a model (TRL, transformers) and ``browser`` tests drive Chromium: marked
# where they are written. ``make test-fast`` runs everything else.
ENGINE_FIXTURES = {"engine", "pool", "replicated"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engine)


def wait_for(predicate, timeout_s: float, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# A suite started in the background of a non-interactive shell inherits SIGINT ignored; the tests
# of Ctrl-C handling need Python's own handler, as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
