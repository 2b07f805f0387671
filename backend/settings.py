"""The settings registry: every knob of budgetlab, with its name, default and help.

`AppSettings` is the one registry. Each field carries its help text in the
field metadata; `app.py` builds the command-line flags and reads the
environment (``BUDGETLAB_<NAME>``) from these fields, and the README's
configuration reference is generated from them (``python app.py settings``).
Components never read the environment: they get a typed config built here
(`engine_config()`, `controller_config()`, ...).

    settings = AppSettings.from_sources(env=os.environ, overrides={"port": 8000})
"""

from __future__ import annotations

import dataclasses
import ipaddress
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_PREFIX = "BUDGETLAB_"


def _setting(default: Any, help: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "secret": secret})


class SettingError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class AppSettings:
    # --- dashboard
    host: str = _setting("127.0.0.1", "Address the dashboard binds to. Loopback by default; any other address needs --auth.")
    auth: str = _setting("", "user:password that the dashboard asks for (and gradio_client sends with auth=(user, password)). Required to bind a non-loopback address.", secret=True)
    insecure_no_auth: bool = _setting(False, "Serve a non-loopback address without --auth. Anyone who can reach the port can use the engine and start fine-tunes: never on a shared network.")
    port: int = _setting(7860, "Port of the dashboard.")
    model: str = _setting("l1-tiny", "Model served at start: a registered name, a Hugging Face id or a local path.")
    db: str = _setting("data/budgetlab.duckdb", "DuckDB file where every run and generation is stored.")
    data_dir: str = _setting("data", "Folder for engine logs and other run-time files.")
    models_dir: str = _setting("models", "Folder scanned for local models; each subfolder with a config.json is registered under its folder name.")
    trained_models_dir: str = _setting("data/models", "Folder where fine-tunes launched from the Train tab put their finished models; scanned like models_dir (a name in models_dir wins).")
    export_dir: str = _setting("data/exports", "Folder the Analytics tab writes its CSV and Parquet exports into (and nowhere else).")
    dataset_dirs: str = _setting("data/datasets", "Folders the dashboard (Sweep and Train tabs, their API) may read dataset files from, separated by commas; a name in a request must resolve, symlinks followed, to a file inside one (a relative name is looked up in them). Empty: built-in and Hub datasets only. The shell's app.py sweep/train read any path.")
    dataset_max_mb: int = _setting(512, "Largest dataset file read, in MB (1 MB = 2**20 bytes), from the dashboard and from app.py sweep/train alike.")
    # --- training jobs
    jobs_dir: str = _setting("data/jobs", "Folder of the Train tab's jobs: one subfolder per job with its config, state, log, metrics and checkpoints.")
    scheduler_db: str = _setting("data/scheduler.sqlite", "SQLite file of the job scheduler (APScheduler's job store): scheduled and recurring jobs survive a restart.")
    training_poll_s: float = _setting(1.0, "Seconds between two looks at the jobs' folders (state and metrics copied into DuckDB).")
    # --- engine
    backend_url: str = _setting("", "URL of an existing OpenAI-compatible vLLM server (e.g. http://gpu-box:8000). Empty: the app starts and supervises its own engine on 127.0.0.1.")
    backend_api_key: str = _setting("", "API key for --backend-url.", secret=True)
    engine_kv_cache_gib: float = _setting(1.0, "CPU only: GiB of RAM for the KV cache (VLLM_CPU_KVCACHE_SPACE).")
    engine_gpu_memory_utilization: float = _setting(0.85, "GPU only: share of GPU memory the engine may take (leave room for training on the same GPU).")
    engine_max_model_len: int = _setting(0, "Context length the engine is started with; 0 uses the model's own.")
    engine_enforce_eager: bool = _setting(True, "Skip torch.compile and CUDA graphs: halves engine start time on CPU, costs throughput on a GPU.")
    engine_start_timeout_s: float = _setting(600.0, "Seconds to wait for the engine to become ready before giving up with its log tail.")
    engine_max_restarts: int = _setting(3, "Automatic restarts of a crashed engine before it is left failed.")
    engine_dtype: str = _setting("auto", "Weights dtype for vLLM (auto, float32, bfloat16, float16); auto means float32 on a CPU without native bfloat16, where it is ~4x faster.")
    engine_extra_args: str = _setting("", "Extra arguments passed to the vLLM server, e.g. '--tensor-parallel-size 2'.")
    trust_remote_code: bool = _setting(False, "Allow models that ship their own Python code. Off unless asked for.")
    # --- generation
    temperature: float = _setting(0.6, "Sampling temperature (the L1 paper evaluates at 0.6).")
    top_p: float = _setting(0.95, "Nucleus sampling top_p (the L1 paper evaluates at 0.95).")
    s1_max_waits: int = _setting(8, "s1 budget forcing: how many times an early end of thinking is replaced by the wait text.")
    s1_wait_text: str = _setting("Wait", "s1 budget forcing: text appended to make the model think longer.")
    s1_answer_prefix: str = _setting("Final Answer:", "s1 budget forcing: text that forces the answer after the thinking is closed (no trailing space: BPE tokenizers attach a space to the word after it).")
    answer_max_tokens: int = _setting(256, "Tokens allowed for the answer after a forced end of thinking (s1).")
    unconstrained_max_tokens: int = _setting(8192, "Generation cap of the unconstrained controller (also capped by the context).")
    grade_timeout_s: float = _setting(5.0, "Wall-clock bound for grading one answer with math-verify.")
    request_timeout_s: float = _setting(600.0, "Seconds one request to the engine may take.")
    # --- comparison and cost
    compare_max_columns: int = _setting(24, "Most (controller, budget) columns one comparison may ask for.")
    sweep_concurrency: int = _setting(128, "Requests a sweep keeps in flight at once (the engine batches them); --concurrency overrides it per sweep.")
    price_per_m_output_tokens: float = _setting(2.0, "Default price in dollars per 1M output tokens, for cost estimates.")
    price_per_m_input_tokens: float = _setting(0.5, "Default price in dollars per 1M input (prompt) tokens, for cost estimates.")

    def __post_init__(self) -> None:
        if self.auth and (":" not in self.auth or not all(self.auth.partition(":")[::2])):
            raise SettingError("auth: give user:password, both non-empty (e.g. --auth demo:s3cret)")
        if not 0 < self.port < 65536:
            raise SettingError(f"port {self.port}: must be between 1 and 65535")
        if not 0.0 < self.top_p <= 1.0:
            raise SettingError(f"top_p {self.top_p}: must be in (0, 1]")
        if self.temperature < 0:
            raise SettingError(f"temperature {self.temperature}: must be 0 or more")
        for name in ("s1_max_waits", "engine_max_restarts", "engine_max_model_len"):
            if getattr(self, name) < 0:
                raise SettingError(f"{name} {getattr(self, name)}: must be 0 or more")
        for name in ("answer_max_tokens", "unconstrained_max_tokens", "compare_max_columns", "sweep_concurrency"):
            if getattr(self, name) < 1:
                raise SettingError(f"{name} {getattr(self, name)}: must be a positive integer")
        if not 0.0 < self.engine_gpu_memory_utilization <= 1.0:
            raise SettingError(f"engine_gpu_memory_utilization {self.engine_gpu_memory_utilization}: must be in (0, 1]")
        if self.engine_dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise SettingError(f"engine_dtype {self.engine_dtype!r}: choose auto, float32, bfloat16 or float16")
        if self.training_poll_s <= 0:
            raise SettingError(f"training_poll_s {self.training_poll_s}: must be positive")
        if self.engine_kv_cache_gib <= 0:
            raise SettingError(f"engine_kv_cache_gib {self.engine_kv_cache_gib}: must be positive")
        if self.dataset_max_mb < 1:
            raise SettingError(f"dataset_max_mb {self.dataset_max_mb}: must be a positive whole number of MB")

    @classmethod
    def from_sources(cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> AppSettings:
        """Defaults, then ``BUDGETLAB_*`` variables from `env`, then `overrides` (command-line flags)."""
        values: dict[str, Any] = {}
        for spec in registry():
            raw = (env or {}).get(env_name(spec.name))
            if raw is not None:
                values[spec.name] = parse_value(spec, raw)
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls(**values)

    def resolve_path(self, value: str) -> Path:
        """Relative paths in settings are relative to the repository root, not the working directory."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else REPO_ROOT / path

    def auth_pair(self) -> tuple[str, str] | None:
        """(user, password) from ``auth``, or None."""
        if not self.auth:
            return None
        user, _, password = self.auth.partition(":")
        return user, password

    def exposure_problem(self) -> str | None:
        """Why serving with these settings would open the app to the network unauthenticated, or None."""
        if is_loopback(self.host) or self.auth or self.insecure_no_auth:
            return None
        return (f"host {self.host}: not a loopback address, and no --auth is set, so anyone who can reach port {self.port} could "
                "use the engine and start fine-tunes. Add --auth user:password (or BUDGETLAB_AUTH), or bind 127.0.0.1, "
                "or, on a private network you trust, pass --insecure-no-auth true")

    def model_registry(self):
        """The registry of this configuration: shipped models, then the Train tab's fine-tunes."""
        from backend.models import ModelRegistry

        return ModelRegistry(self.resolve_path(self.models_dir), (self.resolve_path(self.trained_models_dir),))

    def dataset_folders(self) -> tuple[Path, ...]:
        """``dataset_dirs`` as resolved folders (relative ones are relative to the repository root)."""
        return tuple(self.resolve_path(part.strip()).resolve() for part in self.dataset_dirs.split(",") if part.strip())

    def dataset_policy(self, *, any_path: bool = False):
        """Which dataset files may be read (a `backend.datasets.DatasetPolicy`): from a web request only
        files inside ``dataset_dirs``; with ``any_path`` (the shell user's own command) any file; both
        within ``dataset_max_mb``."""
        from backend.datasets import MB, DatasetPolicy

        return DatasetPolicy(None if any_path else self.dataset_folders(), self.dataset_max_mb * MB)

    def public_dict(self) -> dict[str, Any]:
        """The settings with secrets masked, for logs and run records."""
        return {f.name: ("***" if f.metadata["secret"] and getattr(self, f.name) else getattr(self, f.name)) for f in dataclasses.fields(self)}


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve to anything


@dataclass(frozen=True)
class SettingSpec:
    name: str
    type: type
    default: Any
    help: str
    secret: bool


def registry() -> tuple[SettingSpec, ...]:
    """Every setting, in declaration order."""
    hints = typing.get_type_hints(AppSettings)
    return tuple(
        SettingSpec(f.name, _base_type(hints[f.name]), f.default, f.metadata["help"], f.metadata["secret"])
        for f in dataclasses.fields(AppSettings)
    )


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def parse_value(spec: SettingSpec, raw: str) -> Any:
    """Parse a string from the environment or the command line into the setting's type."""
    if spec.type is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise SettingError(f"{spec.name}={raw!r}: expected true or false")
    try:
        return spec.type(raw)
    except ValueError:
        raise SettingError(f"{spec.name}={raw!r}: expected a {spec.type.__name__}") from None


def _base_type(hint: Any) -> type:
    if isinstance(hint, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def settings_markdown() -> str:
    """The configuration reference, as a Markdown table (the README embeds it)."""
    lines = ["| setting | flag | environment | default | help |", "|---|---|---|---|---|"]
    for spec in registry():
        default = "" if spec.default == "" else spec.default
        lines.append(
            f"| `{spec.name}` | `--{spec.name.replace('_', '-')}` | `{env_name(spec.name)}` | `{default}` | {spec.help} |"
        )
    return "\n".join(lines)
