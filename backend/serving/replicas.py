"""One model served by K replicas behind vllm-router: scale-out on a real router, not our own.

`ReplicaSet` starts K `LocalEngine` replicas of one model (each on its own fixed port, one API key
for all, and on a multi-GPU machine one GPU each) and `vllm-router` (PyPI: a Rust load balancer
for vLLM) in front of them; the app talks to the router alone, so nothing above this module knows
there are several. A replica that dies is restarted by its own supervisor on the same port, and
the router sends requests to the others meanwhile (its retries and health checks; measured in
the README). It offers what `LocalEngine` offers (``start``, ``ensure``, ``wait_ready``,
``recover``, ``status``, ``stop``), so the engine pool holds either.

    replicas = ReplicaSet(EngineConfig(), 2, log_dir=Path("data"), base_env=os.environ)
    endpoint = replicas.ensure(spec)          # the router's address
    replicas.request_counts()                 # requests each replica finished (vLLM's /metrics)

Why the router and not vLLM's own ``--data-parallel-size``: see the README's scale-out section
(measured there on this machine).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from backend.processes import engine_child, resident_gib, tail
from backend.serving.engine import Endpoint, EngineConfig, EngineStatus, EngineUnavailable, State, auth_headers, healthy
from backend.serving.local import STOP_GRACE_S, LocalEngine, free_port
from backend.serving.registry import ModelSpec

ROUTER_POLICIES = ("round_robin", "power_of_two", "cache_aware", "random", "consistent_hash")
_FINISHED = re.compile(r'^vllm:request_success_total\{[^}]*\}\s+([0-9.e+]+)', re.M)


def router_command(port: int, workers: list[str], api_key: str, policy: str, prometheus_port: int) -> list[str]:
    """vllm-router in front of `workers` (its Python launcher, from this environment)."""
    launcher = shutil.which("vllm-router", path=str(Path(sys.executable).parent)) or "vllm-router"
    return [launcher, "--host", "127.0.0.1", "--port", str(port), "--worker-urls", *workers, "--policy", policy,
            f"--api-key={api_key}", "--prometheus-host", "127.0.0.1", "--prometheus-port", str(prometheus_port),
            # Every request the app sends is one the replicas can take: no queue of the router's own
            # to time out long generations (the app's own timeouts apply).
            "--request-timeout-secs", "3600", "--health-check-interval-secs", "5", "--log-level", "warning"]


class ReplicaSet:
    """K replicas of one model behind vllm-router; the router's address is the endpoint."""

    def __init__(self, config: EngineConfig, replicas: int, log_dir: Path, base_env: Mapping[str, str], *,
                 policy: str = "round_robin", log_name: str = "engine") -> None:
        if replicas < 2:
            raise ValueError(f"replicas {replicas}: a replica set has at least 2 (one is a plain engine)")
        if policy not in ROUTER_POLICIES:
            raise ValueError(f"router policy {policy!r}: choose one of {', '.join(ROUTER_POLICIES)}")
        self.config = config.resolved()
        self.log_dir = log_dir
        self.policy = policy
        self.log_name = log_name
        self._api_key = secrets.token_urlsafe(24)
        self._lock = threading.RLock()
        self.replicas = [
            LocalEngine(config, log_dir, _replica_env(base_env, i, self.config.device), log_name=f"{log_name}-r{i}.log",
                        port=free_port(), api_key=self._api_key)
            for i in range(replicas)
        ]
        self._base_env = dict(base_env)
        self._router: subprocess.Popen | None = None
        self._router_port = free_port()
        self._prometheus_port = free_port()
        self._spec: ModelSpec | None = None
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="router-spawn")  # see LocalEngine: the parent-death signal

    # --- what LocalEngine offers
    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.log_name}-router.log"

    def endpoint(self) -> Endpoint:
        if self.status().state is not State.READY:
            raise EngineUnavailable(f"replicas not ready: {self.status().message}")
        return self._endpoint()

    def start(self, spec: ModelSpec) -> None:
        with self._lock:
            self._spec = spec
            for replica in self.replicas:
                replica.start(spec)
            if self._router is None or self._router.poll() is not None:
                self._start_router()

    def ensure(self, spec: ModelSpec, timeout_s: float | None = None) -> Endpoint:
        status = self.status()
        if not (status.model == spec.name and status.state in (State.READY, State.STARTING)):
            self.start(spec)
        return self.wait_ready(spec.name, timeout_s)

    def wait_ready(self, model: str, timeout_s: float | None = None) -> Endpoint:
        """Every replica ready (a sweep spread from its first request), and the router answering."""
        if timeout_s is None:
            timeout_s = self.config.start_timeout_s + STOP_GRACE_S
        deadline = time.monotonic() + timeout_s
        for replica in self.replicas:
            replica.wait_ready(model, max(1.0, deadline - time.monotonic()))
        return self._router_ready(deadline)

    def recover(self, spec: ModelSpec, lost: Endpoint) -> Endpoint:
        """The router's address does not change: back once it answers and one replica is ready."""
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:
            if self._router is None or self._router.poll() is not None:
                with self._lock:
                    self._start_router()
            if any(r.status().ready for r in self.replicas) and healthy(self._endpoint()):
                return self._endpoint()
            if all(r.status().state is State.FAILED for r in self.replicas):
                raise EngineUnavailable(f"every replica of {spec.name} is down: {self.replicas[0].status().message}")
            time.sleep(0.5)
        raise EngineUnavailable(f"the replicas of {spec.name} were not back within {self.config.start_timeout_s:.0f} s: {self.status().message}")

    def status(self) -> EngineStatus:
        states = [r.status() for r in self.replicas]
        model = self._spec.name if self._spec else None
        ready = sum(s.ready for s in states)
        router_up = self._router is not None and self._router.poll() is None
        summary = f"{ready}/{len(states)} replicas ready behind vllm-router ({self.policy})"
        if ready and router_up:
            return EngineStatus(State.READY, model, summary, restarts=sum(s.restarts for s in states))
        if any(s.state is State.STARTING for s in states):
            return EngineStatus(State.STARTING, model, f"starting: {summary}")
        if all(s.state is State.STOPPED for s in states):
            return EngineStatus(State.STOPPED, model, "replicas stopped")
        failed = next((s for s in states if s.state is State.FAILED), states[0])
        return EngineStatus(State.FAILED, model, f"{summary}; {failed.message}")

    def stop(self) -> None:
        with self._lock:
            self._stop_router()
            for replica in self.replicas:
                replica.stop()

    def pid(self) -> int | None:
        return self._router.pid if self._router else None

    def resident_gib(self) -> float:
        return sum(r.resident_gib() for r in self.replicas) + resident_gib(self.pid())

    # --- replicas' own figures
    def request_counts(self) -> list[int]:
        """Requests each replica has finished since it started (vLLM's own counter, from /metrics)."""
        import httpx

        counts = []
        for replica in self.replicas:
            try:
                endpoint = replica.endpoint()
                text = httpx.get(f"{endpoint.base_url}/metrics", headers=auth_headers(endpoint.api_key), timeout=5).text
                counts.append(round(sum(float(v) for v in _FINISHED.findall(text))))
            except (EngineUnavailable, httpx.HTTPError):
                counts.append(0)
        return counts

    # --- internals
    def _endpoint(self) -> Endpoint:
        return Endpoint(f"http://127.0.0.1:{self._router_port}", self._api_key, self._spec.name if self._spec else "")

    def _router_ready(self, deadline: float) -> Endpoint:
        while time.monotonic() < deadline:
            if self._router is not None and self._router.poll() is not None:
                raise EngineUnavailable(f"vllm-router exited with status {self._router.returncode}; log tail:\n{tail(self.log_path)}")
            if healthy(self._endpoint()):
                return self._endpoint()
            time.sleep(0.2)
        raise EngineUnavailable(f"vllm-router not answering on port {self._router_port}; log tail:\n{tail(self.log_path)}")

    def _start_router(self) -> None:
        workers = [f"http://127.0.0.1:{r._fixed_port}" for r in self.replicas]
        cmd = router_command(self._router_port, workers, self._api_key, self.policy, self._prometheus_port)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} vllm-router on port {self._router_port} over {' '.join(workers)}\n".encode())
            log.flush()
            self._router = self._spawner.submit(
                subprocess.Popen, cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self._base_env,
                start_new_session=True, preexec_fn=partial(engine_child, 0),
            ).result()

    def _stop_router(self) -> None:
        proc, self._router = self._router, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _replica_env(base_env: Mapping[str, str], index: int, device: str) -> dict[str, str]:
    """Replica i's environment: on a GPU machine, the i-th visible GPU alone (one replica per GPU)."""
    env = dict(base_env)
    if device == "gpu":
        visible = [d for d in base_env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[index % len(visible)] if visible else str(index)
    return env
