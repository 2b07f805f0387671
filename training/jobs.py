"""A training job before it runs: a form's or a job file's values checked, and the job prepared.

Two ways in, one set of checks:

- the Train tab and its API (`parse_job_request`): a form's values become a `JobRequest` or a
  `JobInputError` listing every problem with its field; a web request may name only a registered
  base model and only a dataset file the dashboard's policy allows;
- ``python app.py train`` (`prepare_job`): a job file's config, made ready to run (the base
  model's folder and context, paths resolved), or a `ConfigError`/`UnknownModelError`/`DatasetError`.

Both resolve the base model and its context length with `base_model_context`, and check a dataset
file with `checked_dataset`, so n_max above the context or an unreadable file is refused before
anything loads. A `JobRequest` is what `backend.jobs.TrainingJobs.submit` schedules.

    request = parse_job_request({"base_model": "tiny-r1-base", "max_steps": 20}, "nightly", "my-l1", "now", registry=registry)
    jobs.submit(request)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from backend.evaluation.datasets import DatasetError, DatasetPolicy
from backend.jobs.when import parse_when
from backend.serving.registry import ModelRegistry, ModelSpec, UnknownModelError, context_length
from training.config import ConfigError, LCPOConfig, config_from_dict, load_config

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RECIPES_DIR = Path(__file__).resolve().parent / "configs"
# Fields the app sets itself: the output folder is the job's own, the export is the model name's.
MANAGED_FIELDS = ("output_dir", "export_dir", "max_context")


class JobInputError(ValueError):
    """A job request that cannot be scheduled; ``problems`` pairs each message with its form field."""

    def __init__(self, problems: tuple[tuple[str, str], ...]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


@dataclass(frozen=True)
class JobRequest:
    """A checked request to schedule an LCPO job (a `backend.jobs.scheduler.JobSubmission`)."""

    name: str
    model_name: str
    config: LCPOConfig
    schedule: str = "now"
    run_at: dt.datetime | None = None  # naive UTC, for schedule "at"
    cron: str = ""  # crontab expression (UTC), for schedule "cron"

    @property
    def job_yaml(self) -> str:
        return job_yaml(self.config)

    @property
    def max_steps(self) -> int:
        return self.config.max_steps


def base_model_context(registry: ModelRegistry, name: str, allow_paths: bool) -> tuple[ModelSpec, int]:
    """The base model a job names, and its context length (0 when unknown: a hub model).
    ``allow_paths=False`` (a web request) refuses any folder that is not registered."""
    spec = registry.resolve(name, allow_paths=allow_paths)
    return spec, context_length(Path(spec.source)) if spec.is_local else 0


def checked_dataset(policy: DatasetPolicy, dataset: str) -> str:
    """A job's dataset as the job should name it: a file the policy allows, by its resolved path
    (so the job opens the file that was checked); a built-in or Hub name as it is."""
    if dataset in ("", "arith"):
        return dataset
    path = policy.locate(dataset)
    return str(path) if path is not None else dataset


def prepare_job(config: LCPOConfig, registry: ModelRegistry, policy: DatasetPolicy, resolve_path: Callable[[str], Path]) -> LCPOConfig:
    """A job file's config as ``app.py train`` runs it: a registered base model names its folder,
    the context is known (so n_max above it is refused now, not after the model is loaded), the
    output and export folders are resolved, and a dataset file is checked before anything loads."""
    if not config.output_dir:
        raise ConfigError("no output folder: set output_dir in the job file or pass --output-dir")
    spec, max_context = base_model_context(registry, config.base_model, allow_paths=True)
    checked_dataset(policy, config.dataset)
    return dataclasses.replace(config, base_model=spec.source, output_dir=str(resolve_path(config.output_dir)),
                               export_dir=str(resolve_path(config.export_dir)) if config.export_dir else "",
                               max_context=config.max_context or max_context)


def parse_job_request(values: dict[str, Any], name: str, model_name: str, schedule: str, run_at: Any = None, cron: str = "",
                      registry: ModelRegistry | None = None, trained_models_dir: Path | None = None,
                      dataset_policy: DatasetPolicy | None = None) -> JobRequest:
    """Check a form's values; raise `JobInputError` listing every problem with its field. With
    ``dataset_policy`` (a web request) a dataset file must be one it allows; it is then named by
    its resolved path, so the job opens the file that was checked."""
    problems: list[tuple[str, str]] = []
    name = (name or "").strip()
    model_name = (model_name or "").strip()
    if not name:
        problems.append(("name", "job name is empty: give the job a name (e.g. nightly-l1)"))
    if not MODEL_NAME.match(model_name):
        problems.append(("model_name", f"model name {model_name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"))
    elif registry is not None and any(m.name == model_name for m in ModelRegistry(registry.models_dir).local_models()):
        problems.append(("model_name", f"model name {model_name!r}: a shipped model has it; pick another name"))
    config, config_problems = _config(values, registry, model_name, trained_models_dir, dataset_policy)
    problems += config_problems
    when, schedule_problems = parse_when(schedule, run_at, cron)
    problems += schedule_problems
    if problems:
        raise JobInputError(tuple(problems))
    return JobRequest(name, model_name, config, schedule, when, (cron or "").strip())


def _config(values: dict[str, Any], registry: ModelRegistry | None, model_name: str, trained_models_dir: Path | None,
            dataset_policy: DatasetPolicy | None):
    data, problems = _form_values(values)
    if registry is not None and data.get("base_model"):
        try:  # a form never names a folder to load
            data["max_context"] = base_model_context(registry, data["base_model"], allow_paths=False)[1]
        except UnknownModelError as exc:
            problems.append(("base_model", str(exc)))
    if trained_models_dir is not None and model_name:
        data["export_dir"] = str(trained_models_dir / model_name)
    if dataset_policy is not None and isinstance(data.get("dataset"), str):
        try:
            data["dataset"] = checked_dataset(dataset_policy, data["dataset"])
        except DatasetError as exc:
            problems.append(("dataset", str(exc)))
    try:
        return config_from_dict(data, where="job"), problems
    except ConfigError as exc:
        return None, problems + list(exc.problems or (("config", str(exc)),))


def _form_values(values: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The config fields of a form's values, numbers and text as the config types them."""
    fields = {f.name: f for f in dataclasses.fields(LCPOConfig)}
    data: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    unknown = sorted(str(key) for key in values if key not in fields)
    if unknown:  # a misspelt field would otherwise be dropped, and the job run with the default
        known = ", ".join(f for f in fields if f not in MANAGED_FIELDS)
        problems.append(("config", f"unknown field {unknown[0]!r}; the fields are {known}"))
    for key, value in values.items():
        if key in MANAGED_FIELDS or key not in fields or value is None:
            continue
        kind = type(fields[key].default)
        if kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)  # number inputs send floats
        if kind is str:
            value = str(value).strip()
        data[key] = value
    return data, problems


def form_defaults(registry: ModelRegistry) -> dict[str, Any]:
    """A job's fields as the form first shows them: the config's defaults on the shipped base model."""
    names = {m.name for m in registry.local_models()}
    values = {f.name: f.default for f in dataclasses.fields(LCPOConfig) if f.name not in MANAGED_FIELDS}
    values["base_model"] = "tiny-r1-base" if "tiny-r1-base" in names else ""
    return values


def recipes(folder: Path = RECIPES_DIR) -> dict[str, Path]:
    """The LCPO job files in the repo (base-model jobs are not fine-tunes), by file name."""
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        if (yaml.safe_load(path.read_text()) or {}).get("job", "lcpo") == "lcpo":
            found[path.stem] = path
    return found


def recipe_values(path: Path) -> dict[str, Any]:
    """A job file's fields (the form fields only), for prefilling the form."""
    values = dataclasses.asdict(load_config(path))
    return {k: v for k, v in values.items() if k not in MANAGED_FIELDS}


def job_yaml(config: LCPOConfig) -> str:
    """The job file of a run: every field but the output folder, which the run passes itself."""
    values = {k: v for k, v in dataclasses.asdict(config).items() if k != "output_dir"}
    return yaml.safe_dump(values, sort_keys=False)
