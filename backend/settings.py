"""The settings registry: every knob of budgetlab, with its name, default and help.

`AppSettings` is the one registry. Each field carries its help text in the
field metadata; `app.py` builds the command-line flags and reads the
environment (``BUDGETLAB_<NAME>``) from these fields, and the README's
configuration reference is generated from them (``python app.py settings``).
Components never read the environment: they get a typed config built here
(`engine_config()`, `controller_config()`, `sampling()`). Those configs own the
defaults and help of their fields (`backend.config`); the registry lists them
with `inherit`, so each default is declared once.

    settings = AppSettings.from_sources(env=os.environ, overrides={"port": 8000})
    settings.engine_config().kv_cache_gib      # the engine_kv_cache_gib setting
"""

from __future__ import annotations

import dataclasses
import ipaddress
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.config import inherit, section, setting
from backend.controllers.config import ControllerConfig
from backend.evaluation.datasets import DEFAULT_MAX_MB, MB, DatasetPolicy
from backend.evaluation.verifier import GRADE_TIMEOUT_S
from backend.serving.engine import EngineConfig
from backend.serving.endpoints import ChatEndpoint, VerifierEndpoint, load_endpoints, load_verifiers
from backend.serving.pool import PoolConfig
from backend.serving.registry import ModelRegistry
from backend.serving.sampling import Sampling

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_PREFIX = "BUDGETLAB_"


class SettingError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class AppSettings:
    # --- dashboard
    host: str = setting("127.0.0.1", "Address the dashboard binds to. Loopback by default; any other address needs --auth.")
    auth: str = setting("", "user:password that the dashboard asks for (and gradio_client sends with auth=(user, password)). Required to bind a non-loopback address.", secret=True)
    insecure_no_auth: bool = setting(False, "Serve a non-loopback address without --auth. Anyone who can reach the port can use the engine and start fine-tunes: never on a shared network.")
    port: int = setting(7860, "Port of the dashboard.")
    model: str = setting("l1-tiny", "Model served at start: a registered name, a Hugging Face id or a local path.")
    db: str = setting("data/budgetlab.duckdb", "DuckDB file where every run and generation is stored.")
    data_dir: str = setting("data", "Folder for engine logs and other run-time files.")
    models_dir: str = setting("models", "Folder scanned for local models; each subfolder with a config.json is registered under its folder name.")
    trained_models_dir: str = setting("data/models", "Folder where fine-tunes launched from the Train tab put their finished models; scanned like models_dir (a name in models_dir wins).")
    export_dir: str = setting("data/exports", "Folder the Analytics tab writes its CSV and Parquet exports into (and nowhere else).")
    dataset_dirs: str = setting("data/datasets", "Folders the dashboard (Sweep and Train tabs, their API) may read dataset files from, separated by commas; a name in a request must resolve, symlinks followed, to a file inside one (a relative name is looked up in them). Empty: built-in and Hub datasets only. The shell's app.py sweep/train read any path.")
    dataset_max_mb: int = setting(DEFAULT_MAX_MB, "Largest dataset file read, in MB (1 MB = 2**20 bytes), from the dashboard and from app.py sweep/train alike.")
    # --- training jobs
    jobs_dir: str = setting("data/jobs", "Folder of the Train tab's jobs: one subfolder per job with its config, state, log, metrics and checkpoints.")
    scheduler_db: str = setting("data/scheduler.sqlite", "SQLite file of the job scheduler (APScheduler's job store): scheduled and recurring jobs survive a restart.")
    training_poll_s: float = setting(1.0, "Seconds between two looks at the jobs' folders (state and metrics copied into DuckDB).")
    # --- engine
    backend_url: str = setting("", "URL of an existing OpenAI-compatible vLLM server (e.g. http://gpu-box:8000). Empty: the app starts and supervises its own engine on 127.0.0.1.")
    backend_api_key: str = setting("", "API key for --backend-url.", secret=True)
    endpoints: str = setting("", "TOML file of chat-API endpoints (hosted or self-hosted reasoning models; see endpoints.example.toml). Their models are chosen as MODEL_ID@NAME wherever a model is; keys are read from the environment variables the file names. Empty: none.")
    engine_kv_cache_gib: float = inherit(EngineConfig, "kv_cache_gib")
    engine_gpu_memory_utilization: float = inherit(EngineConfig, "gpu_memory_utilization")
    engine_max_model_len: int = inherit(EngineConfig, "max_model_len")
    engine_enforce_eager: bool = inherit(EngineConfig, "enforce_eager")
    engine_start_timeout_s: float = inherit(EngineConfig, "start_timeout_s")
    engine_max_restarts: int = inherit(EngineConfig, "max_restarts")
    engine_dtype: str = inherit(EngineConfig, "dtype")
    engine_extra_args: str = inherit(EngineConfig, "extra_args")
    engine_reasoning_parser: str = inherit(EngineConfig, "reasoning_parser")
    trust_remote_code: bool = inherit(EngineConfig, "trust_remote_code")
    engine_nice: int = inherit(EngineConfig, "nice")
    engine_cpu_bind: str = inherit(EngineConfig, "cpu_bind")
    engines_memory_gib: float = inherit(PoolConfig, "memory_gib")
    engines_gpu_share: float = inherit(PoolConfig, "gpu_share")
    engines_replicas: str = inherit(PoolConfig, "replicas")
    engines_router_policy: str = inherit(PoolConfig, "router_policy")
    # --- generation
    temperature: float = inherit(Sampling, "temperature")
    top_p: float = inherit(Sampling, "top_p")
    s1_max_waits: int = inherit(ControllerConfig, "s1_max_waits")
    s1_wait_text: str = inherit(ControllerConfig, "s1_wait_text")
    s1_answer_prefix: str = inherit(ControllerConfig, "s1_answer_prefix")
    answer_max_tokens: int = inherit(ControllerConfig, "answer_max_tokens")
    unconstrained_max_tokens: int = inherit(ControllerConfig, "unconstrained_max_tokens")
    early_exit_chunk: int = inherit(ControllerConfig, "early_exit_chunk")
    early_exit_agree: int = inherit(ControllerConfig, "early_exit_agree")
    early_exit_probe_tokens: int = inherit(ControllerConfig, "early_exit_probe_tokens")
    search_verifier: str = inherit(ControllerConfig, "search_verifier")
    search_aggregation: str = inherit(ControllerConfig, "search_aggregation")
    search_step_max_tokens: int = inherit(ControllerConfig, "search_step_max_tokens")
    grade_timeout_s: float = setting(GRADE_TIMEOUT_S, "Wall-clock bound for grading one answer with math-verify.")
    request_timeout_s: float = setting(600.0, "Seconds one request to the engine may take.")
    # --- comparison and cost
    compare_max_columns: int = setting(24, "Most (controller, budget) columns one comparison may ask for.")
    local_tokenizer: bool = setting(True, "Tokenize chat prompts in the app with the served model's own tokenizer files (already on this machine; "
                                          "nothing is downloaded) once it gave the engine's ids for probe prompts: a comparison's columns start "
                                          "without a round trip each to the engine. Off: the engine tokenizes every prompt.")
    recommend_min_answers: int = setting(30, "Fewest answers a setting (model, controller, budget) needs before the Analytics recommender judges it; "
                                                 "below it the setting is listed but not recommended (30 answers: a 95% interval of about +-15 points at 70%).")
    audit_min_generations: int = setting(20, "Fewest generations per budget before the adherence audit gives a verdict on a knob; below it the audit says "
                                             "how many it has and judges nothing.")
    first_run_questions: int = setting(50, "Questions of the Analytics tab's first-run preset (the L1 figures on the embedded model, offered while no sweep is stored); 50 gives accuracy bands of about +-14 points.")
    sweep_concurrency: int = setting(128, "Requests a sweep keeps in flight at once (the engine batches them); --concurrency overrides it per sweep.")
    price_per_m_output_tokens: float = setting(2.0, "Default price in dollars per 1M output tokens, for cost estimates.")
    price_per_m_input_tokens: float = setting(0.5, "Default price in dollars per 1M input (prompt) tokens, for cost estimates.")

    def __post_init__(self) -> None:
        if self.auth and (":" not in self.auth or not all(self.auth.partition(":")[::2])):
            raise SettingError("auth: give user:password, both non-empty (e.g. --auth demo:s3cret)")
        if not 0 < self.port < 65536:
            raise SettingError(f"port {self.port}: must be between 1 and 65535")
        for name in ("compare_max_columns", "sweep_concurrency", "first_run_questions", "recommend_min_answers", "audit_min_generations"):
            if getattr(self, name) < 1:
                raise SettingError(f"{name} {getattr(self, name)}: must be a positive integer")
        if self.training_poll_s <= 0:
            raise SettingError(f"training_poll_s {self.training_poll_s}: must be positive")
        if self.dataset_max_mb < 1:
            raise SettingError(f"dataset_max_mb {self.dataset_max_mb}: must be a positive whole number of MB")
        for config in (self.engine_config, self.pool_config, self.controller_config, self.sampling):
            try:
                config()  # each component checks its own fields
            except ValueError as exc:
                raise SettingError(str(exc)) from None

    def engine_config(self) -> EngineConfig:
        """The engine's config (device "auto": the engine resolves it for this machine)."""
        return section(EngineConfig, self, prefix="engine_")

    def pool_config(self) -> PoolConfig:
        """How many local engines may run at once (the ``engines_`` settings)."""
        return section(PoolConfig, self, prefix="engines_")

    def controller_config(self) -> ControllerConfig:
        return section(ControllerConfig, self, prefix="")

    def sampling(self) -> Sampling:
        """The sampling of every request (a request adds its own seed)."""
        return section(Sampling, self, prefix="")

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

    def chat_endpoints(self) -> dict[str, ChatEndpoint]:
        """The endpoints file's entries by name ({} without one); InputError saying what to fix in the file."""
        return load_endpoints(self.resolve_path(self.endpoints)) if self.endpoints else {}

    def remote_verifiers(self) -> dict[str, VerifierEndpoint]:
        """The endpoints file's [verifiers.NAME] entries by name ({} without a file)."""
        return load_verifiers(self.resolve_path(self.endpoints)) if self.endpoints else {}

    def model_registry(self) -> ModelRegistry:
        """The registry of this configuration: shipped models, then the Train tab's fine-tunes."""
        return ModelRegistry(self.resolve_path(self.models_dir), (self.resolve_path(self.trained_models_dir),))

    def dataset_folders(self) -> tuple[Path, ...]:
        """``dataset_dirs`` as resolved folders (relative ones are relative to the repository root)."""
        return tuple(self.resolve_path(part.strip()).resolve() for part in self.dataset_dirs.split(",") if part.strip())

    def dataset_policy(self, *, any_path: bool = False) -> DatasetPolicy:
        """Which dataset files may be read: from a web request only files inside ``dataset_dirs``;
        with ``any_path`` (the shell user's own command) any file; both within ``dataset_max_mb``."""
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
