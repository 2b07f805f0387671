"""The model registry: names a user can pick, and how each resolves to weights.

A model is addressed by a registered name (a preset, or a folder under the
models dir), a Hugging Face id, or a local path. `resolve_model` turns any of
these into a `ModelSpec`, or raises `UnknownModelError` with a message saying
what was tried. Nothing here downloads anything; vLLM does that when it
serves a hub model on a machine with internet.

    registry = ModelRegistry(models_dir=Path("models"))
    spec = registry.resolve("l3lab/L1-Qwen-1.5B-Exact")
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from backend.serving.endpoints import ChatEndpoint, parse_model_ref

# The tiny models think for tens to hundreds of tokens; l1-tiny was trained on N in [64, 512].
# (What a model was trained on is read from its folder, `trained_budgets`; these are only the forms' suggestions.)
TINY_BUDGETS = (64, 128, 256, 384, 512)
REAL_BUDGETS = (512, 1024, 2048, 4096)

HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class UnknownModelError(ValueError):
    """The name is neither registered, nor a model folder, nor a reachable hub id."""


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what the user picks and what the engine serves it as
    source: str  # a hub id or an absolute local path, handed to vLLM
    description: str
    budgets: tuple[int, ...]  # budgets suggested in the UI
    chat: ChatEndpoint | None = None  # a model behind a chat endpoint (MODEL_ID@NAME): the app serves nothing for it
    chat_model: str = ""  # its model id on that endpoint
    trained_on: str = ""  # what the model was trained on, when known (the shipped tiny models)
    # The budgets N an LCPO model was trained on (n_min, n_max of its lcpo_config.json); None when unknown
    # (a base model, a hub id, a chat endpoint's model): outside it the L1 prompts' N means little.
    trained_budgets: tuple[int, int] | None = None

    @classmethod
    def on_endpoint(cls, ref: str, endpoints: dict[str, ChatEndpoint]) -> ModelSpec | None:
        """The spec of "MODEL_ID@NAME" on a configured endpoint; None for a name without "@" (InputError for an unknown endpoint)."""
        parsed = parse_model_ref(ref, endpoints)
        if parsed is None:
            return None
        model, endpoint = parsed
        return cls(f"{model}@{endpoint.name}", f"{model}@{endpoint.name}", f"{model} on the chat endpoint {endpoint.name} ({endpoint.base_url})",
                   endpoint.budgets, endpoint, model)

    @property
    def follows_budget_prompts(self) -> bool:
        """Trained to follow the L1 prompts ("Think for N tokens."): an LCPO model of known range, or a released L1 model."""
        return self.trained_budgets is not None or self.source in L1_SOURCES

    @property
    def is_local(self) -> bool:
        return self.chat is None and Path(self.source).is_absolute()

    @property
    def is_verifier(self) -> bool:
        """A process reward model (`training.prm` writes prm_config.json): served to score steps, never to generate."""
        return self.is_local and (Path(self.source) / PRM_CONFIG).is_file()

    @property
    def thinks_in_tags(self) -> bool:
        """Whether the model's vocabulary has <think> and </think> (what a reasoning parser needs):
        read from a local folder's tokenizer files; known for the presets; unknown hub models: no."""
        if self.is_local:
            texts = [f.read_text(errors="replace") for f in Path(self.source).glob("tokenizer*.json") if f.is_file()]
            return any("<think>" in t and "</think>" in t for t in texts)
        return any(self.source == preset.source for preset in PRESETS)


PRESETS: tuple[ModelSpec, ...] = (
    ModelSpec("l3lab/L1-Qwen-1.5B-Exact", "l3lab/L1-Qwen-1.5B-Exact", "L1-Exact (LCPO): thinks for exactly N tokens.", REAL_BUDGETS),
    ModelSpec("l3lab/L1-Qwen-1.5B-Max", "l3lab/L1-Qwen-1.5B-Max", "L1-Max (LCPO): thinks for at most N tokens.", REAL_BUDGETS),
    ModelSpec("agentica-org/DeepScaleR-1.5B-Preview", "agentica-org/DeepScaleR-1.5B-Preview", "DeepScaleR, the base L1 was trained from.", REAL_BUDGETS),
    ModelSpec("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "DeepSeek-R1 distill, a baseline.", REAL_BUDGETS),
)

L1_SOURCES = ("l3lab/L1-Qwen-1.5B-Exact", "l3lab/L1-Qwen-1.5B-Max")
# The model each released L1 model was trained from (the paper's baselines run on it); a local
# fine-tune names its own in its lcpo_config.json (`trained_from`).
BASE_MODELS = {
    "l3lab/L1-Qwen-1.5B-Exact": "agentica-org/DeepScaleR-1.5B-Preview",
    "l3lab/L1-Qwen-1.5B-Max": "agentica-org/DeepScaleR-1.5B-Preview",
}

# Descriptions of the models this project builds and ships under models/.
LOCAL_DESCRIPTIONS = {
    "tiny-r1-base": "Tiny reasoning model trained from scratch on the built-in arithmetic suite (CPU-friendly).",
    "l1-tiny": "Tiny L1 model: tiny-r1-base after LCPO on both prompts ('Think for N tokens.', 'Think for maximum N tokens.').",
}
# What the shipped models know (the Compare tab says it under the model): outside it they answer confident nonsense.
ARITH_DOMAIN = ("chains of additions and subtractions of whole numbers from 1 to 99, read left to right "
                "(\"Compute 37 + 48 - 12 + 5.\"); nothing else: not multiplication, words or algebra")
LOCAL_TRAINED_ON = {"tiny-r1-base": ARITH_DOMAIN, "l1-tiny": ARITH_DOMAIN}
# The file an LCPO fine-tune leaves in its folder (training.config.LCPOConfig): its n_min / n_max are the trained budgets.
TRAINING_CONFIG = "lcpo_config.json"
PRM_CONFIG = "prm_config.json"  # a process reward model's step tag (training/prm.py)
# Names that address another shipped model: one LCPO model trained on both prompts serves both.
LOCAL_ALIASES = {"l1-tiny-exact": "l1-tiny", "l1-tiny-max": "l1-tiny"}


def check_available(spec: ModelSpec, timeout_s: float = 5.0) -> None:
    """Refuse a hub model that is neither cached nor fetchable, before any engine is stopped for it."""
    if spec.is_local or spec.chat is not None:
        return
    import huggingface_hub

    if huggingface_hub.try_to_load_from_cache(spec.source, "config.json") is not None:
        return
    try:
        huggingface_hub.model_info(spec.source, timeout=timeout_s)
    except huggingface_hub.errors.RepositoryNotFoundError:
        raise UnknownModelError(f"model {spec.source!r}: not found on the Hugging Face Hub (check the id, or log in for a private model)") from None
    except huggingface_hub.errors.GatedRepoError:
        return  # it exists; vLLM reports if the token lacks access
    except Exception as exc:  # offline, DNS, proxy, timeout
        raise UnknownModelError(
            f"model {spec.source!r}: not in the local Hugging Face cache and the Hub cannot be reached "
            f"({type(exc).__name__}); use a local path or a registered name, or connect this machine"
        ) from None


def context_length(model_dir: Path) -> int:
    """A local model's context length from its config.json (max_position_embeddings), 0 when unknown."""
    try:
        return int(json.loads((Path(model_dir) / "config.json").read_text()).get("max_position_embeddings") or 0)
    except (OSError, ValueError, AttributeError):
        return 0


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def trained_budgets(model_dir: Path) -> tuple[int, int] | None:
    """The budget range (n_min, n_max) a local model was trained on, from its lcpo_config.json; None
    without one (a base model) or with one that does not say. Read once per version of the file."""
    path = Path(model_dir) / TRAINING_CONFIG
    try:
        version = path.stat().st_mtime_ns
    except OSError:
        return None
    return _read_trained_budgets(str(path), version)


@functools.lru_cache(maxsize=128)
def _read_trained_budgets(path: str, version: int) -> tuple[int, int] | None:
    """`version`: the file's mtime, so a model retrained in place is read again (the folder scan runs on every resolve)."""
    try:
        config = json.loads(Path(path).read_text())
        low, high = int(config["n_min"]), int(config["n_max"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return (low, high) if 0 < low <= high else None


def trained_from(model_dir: Path) -> str | None:
    """The folder name of the model an LCPO fine-tune started from (its lcpo_config.json's base_model), or None."""
    try:
        base = json.loads((Path(model_dir) / TRAINING_CONFIG).read_text()).get("base_model")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(base).name if isinstance(base, str) and base else None


def local_spec(name: str, folder: Path, description: str, domain: str = "") -> ModelSpec:
    """A model folder's spec, with what it was trained on: `domain` (the shipped models'), and its budget range when known."""
    trained = trained_budgets(folder)
    if domain and trained:
        domain += f", with budgets of {trained[0]} to {trained[1]} tokens"
    return ModelSpec(name, str(folder.resolve()), description, TINY_BUDGETS, trained_on=domain, trained_budgets=trained)


@dataclass(frozen=True)
class ModelRegistry:
    models_dir: Path
    # Scanned after models_dir (e.g. the Train tab's finished fine-tunes); a name found earlier wins.
    extra_dirs: tuple[Path, ...] = ()

    def local_models(self) -> tuple[ModelSpec, ...]:
        """Every model folder, scanned now: a fine-tune that just finished is listed at once."""
        found: dict[str, ModelSpec] = {}
        for folder in (self.models_dir, *self.extra_dirs):
            if not folder.is_dir():
                continue
            for d in sorted(folder.iterdir()):
                if is_model_dir(d) and d.name not in found:
                    found[d.name] = local_spec(d.name, d, LOCAL_DESCRIPTIONS.get(d.name, f"Local model in {d}"), LOCAL_TRAINED_ON.get(d.name, ""))
        return tuple(found.values())

    def all(self) -> tuple[ModelSpec, ...]:
        return self.local_models() + PRESETS

    def names(self) -> list[str]:
        return [m.name for m in self.all()]

    def resolve(self, name_or_path: str, allow_paths: bool = True) -> ModelSpec:
        """The model a name means. `allow_paths=False` (a web request) refuses any local folder
        that is not registered: the dashboard never points the engine at an arbitrary path."""
        name = (name_or_path or "").strip()
        if not name:
            raise UnknownModelError("no model given: pick a registered name, a Hugging Face id or a local path")
        name = LOCAL_ALIASES.get(name, name)
        for spec in self.all():
            if name == spec.name:
                return spec
        path = Path(name).expanduser()
        if not allow_paths and (path.exists() or name.startswith(("/", "./", "../", "~"))):
            raise UnknownModelError(f"model path {name}: the dashboard loads only registered models ({', '.join(self.names())}); "
                                    f"put the folder in the models folder (--models-dir) to register it")
        if path.exists():
            if not is_model_dir(path):
                raise UnknownModelError(f"model path {path}: not a model folder (no config.json in it)")
            return local_spec(path.resolve().name, path, f"Local model in {path}")
        if HF_ID.match(name):
            # Served by vLLM from the hub (or its cache); the engine reports if it cannot fetch it.
            return ModelSpec(name, name, f"Hugging Face model {name}", REAL_BUDGETS)
        known = ", ".join(self.names())
        raise UnknownModelError(
            f"unknown model {name!r}: not a registered name ({known}), not an existing folder, and not a Hugging Face id of the form org/name"
        )
