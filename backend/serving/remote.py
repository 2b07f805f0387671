"""An engine that runs elsewhere: an existing OpenAI-compatible vLLM deployment (``--backend-url``).

The app starts nothing; `RemoteEngine` asks the deployment which models it serves, and after a
lost connection waits up to ``recovery_s`` for it to answer again.

    engine = RemoteEngine("http://gpu-box:8000", api_key="...")
    endpoint = engine.ensure(spec)
"""

from __future__ import annotations

import time

import httpx

from backend.serving.engine import Endpoint, EngineStatus, EngineUnavailable, State, auth_headers, healthy
from backend.serving.pool import EngineView
from backend.serving.registry import ModelSpec


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
            response = httpx.get(f"{self.base_url}/v1/models", headers=auth_headers(self.api_key), timeout=5)
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
                if healthy(endpoint):
                    return endpoint
                reason = f"{self.base_url}/health does not answer 200"
            except EngineUnavailable as exc:
                reason = str(exc)
            if time.monotonic() >= deadline:
                raise EngineUnavailable(f"the remote engine was not back within {self.recovery_s:.0f} s: {reason}")
            time.sleep(1.0)

    def stop(self) -> None:
        pass

    # --- what the engine pool offers (`backend.serving.pool`): the deployment manages its own engines
    def acquire(self, spec: ModelSpec, holder: str, role: str = "generate", timeout_s: float | None = None) -> Endpoint:
        return self.ensure(spec, timeout_s)

    def release(self, spec: ModelSpec, holder: str, role: str = "generate") -> None:
        pass

    def engine_of(self, name: str, role: str = "generate") -> None:
        return None  # nothing of the deployment's runs here

    def describe(self, name: str, role: str = "generate") -> str:
        return self._status.message

    def views(self) -> list:
        status = self._status
        return [EngineView(status.model or "remote", "generate", status.state, status.message, 0.0, {})]
