"""What every engine kind shares: its config, its state, its endpoint, and the device facts.

An engine serves one model behind an OpenAI-compatible vLLM server and says how it is doing.
Two kinds exist, with the same methods (``start``, ``ensure``, ``recover``, ``status``, ``stop``)
so that the service and the client never ask which one they have:

- `backend.serving.local.LocalEngine` starts and supervises its own vLLM server child;
- `backend.serving.replicas.ReplicaSet`: K of those behind vllm-router, as one;
- `backend.serving.remote.RemoteEngine` points at a deployment that runs elsewhere (``--backend-url``).

The app's local engines live in `backend.serving.pool.EnginePool`: one per (model, role).

A new kind of engine (another server, a hosted API) is a class with those methods in this
package; `backend.factory` picks it from the settings.

    config = EngineConfig(kv_cache_gib=1.0).resolved()   # the device and dtype this machine gets
"""

from __future__ import annotations

import dataclasses
import enum
import time
from dataclasses import dataclass, field

from backend.config import setting
from backend.serving.cpu_cores import CPU_BINDS


class EngineUnavailable(RuntimeError):
    """The engine cannot take requests now; the message says why and what to do."""


class State(str, enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"


DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class EngineConfig:
    """How the app starts its own engine; each field is also a setting (``engine_`` + its name)."""

    kv_cache_gib: float = setting(1.0, "CPU only: GiB of RAM for the KV cache (VLLM_CPU_KVCACHE_SPACE).")
    gpu_memory_utilization: float = setting(0.85, "GPU only: share of GPU memory the engine may take (leave room for training on the same GPU).")
    max_model_len: int = setting(0, "Context length the engine is started with; 0 uses the model's own.")
    enforce_eager: bool = setting(True, "Skip torch.compile and CUDA graphs: halves engine start time on CPU, costs throughput on a GPU.")
    start_timeout_s: float = setting(600.0, "Seconds to wait for the engine to become ready before giving up with its log tail.")
    max_restarts: int = setting(3, "Automatic restarts of a crashed engine before it is left failed.")
    dtype: str = setting("auto", "Weights dtype for vLLM (auto, float32, bfloat16, float16); auto means float32 on a CPU (bfloat16 is ~4x slower where it is emulated, and crashed vLLM's CPU worker on one-token prompts on an AMX machine) and vLLM's choice on a GPU.")
    extra_args: str = setting("", "Extra arguments passed to the vLLM server, e.g. '--tensor-parallel-size 2'.")
    reasoning_parser: str = setting("deepseek_r1", "vLLM reasoning parser the engine starts with (<think> ... </think> models); it is what lets the engine enforce a thinking cap (the thinking_cap controller, vLLM's thinking_token_budget). Used only for models whose vocabulary has both tags. Empty: none, and thinking_cap is refused.")
    trust_remote_code: bool = setting(False, "Allow models that ship their own Python code. Off unless asked for.", name="trust_remote_code")
    nice: int = setting(5, "CPU priority of the engine, 0-19 (nice; higher yields more): while it generates for a room of viewers, "
                           "the dashboard's own work (taking clicks, sending tokens to pages) gets the CPU first. 0: the app's own priority.")
    cpu_bind: str = setting("spread", "CPU only: which cores each engine's worker runs on. 'spread': engines running at once get different "
                                      "cores (the first all but one, the next the free ones); 'vllm': vLLM's own binding, the same cores for "
                                      "every engine. A VLLM_CPU_OMP_THREADS_BIND in the environment wins over both.")
    device: str = "auto"  # not a setting: "cpu" (vllm-cpu) or "gpu" (vllm), detected when "auto"

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device {self.device!r}: must be one of {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r}: choose auto, float32, bfloat16 or float16")
        if self.start_timeout_s <= 0:
            raise ValueError(f"start_timeout_s {self.start_timeout_s}: must be positive")
        if self.kv_cache_gib <= 0:
            raise ValueError(f"kv_cache_gib {self.kv_cache_gib}: must be positive")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(f"gpu_memory_utilization {self.gpu_memory_utilization}: must be in (0, 1]")
        if self.cpu_bind not in CPU_BINDS:
            raise ValueError(f"cpu_bind {self.cpu_bind!r}: must be one of {', '.join(CPU_BINDS)}")
        if not 0 <= self.nice <= 19:
            raise ValueError(f"nice {self.nice}: must be 0 (the app's priority) to 19 (the lowest)")
        for name in ("max_restarts", "max_model_len"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} {getattr(self, name)}: must be 0 or more")

    def resolved(self) -> EngineConfig:
        """The device detected when "auto", and the dtype "auto" means on it (see `resolve_dtype`)."""
        device = detect_device() if self.device == "auto" else self.device
        return dataclasses.replace(self, device=device, dtype=resolve_dtype(self.dtype, device))


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


def resolve_dtype(dtype: str, device: str) -> str:
    """'auto' on a CPU means float32; on a GPU, vLLM's own choice.

    vLLM's CPU backend picks bfloat16 for 'auto'. A CPU without native bfloat16 emulates it (the tiny
    model ran at 650 tokens/s in bfloat16 and 2,450 in float32 on an AVX2 machine), and on a VM that
    reports AMX and AVX-512 BF16 (this project's machine on 2026-12-07) vLLM's worker died with SIGILL
    on any one-token prompt, which the thinking_cap check sends. bfloat16 stays one setting away.
    """
    if dtype != "auto" or device != "cpu":
        return dtype
    return "float32"


def detect_device() -> str:
    """'cpu' when the CPU build of vLLM is installed, else 'gpu'."""
    from importlib import metadata  # here: --help should not pay for it

    try:
        metadata.distribution("vllm-cpu")
        return "cpu"
    except metadata.PackageNotFoundError:
        return "gpu"


def auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def healthy(endpoint: Endpoint) -> bool:
    """Whether the server behind ``endpoint`` answers its health check now."""
    import httpx  # here: the settings registry reads this module, and --help should not pay for httpx

    try:
        return httpx.get(f"{endpoint.base_url}/health", headers=auth_headers(endpoint.api_key), timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
