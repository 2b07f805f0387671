"""The app factory: the one place that wires the store, the service with its engine, and the jobs.

Every entry point builds the app here: ``app.py serve``, ``sweep`` and ``report``, the bench
scripts and the test fixtures (Datasette's ``Datasette(...)`` is the model), so they all run the
same parts, configured by the same settings, and close them in the same order.

    with open_app(settings, env=os.environ, jobs=True) as app:     # app.py serve
        app.service.start_default_engine()
        build_app(app.service, app.jobs, ...).launch()
    # closed in order: the jobs (a running one is marked interrupted), the engine, the store;
    # a Ctrl-C or SIGTERM during the close is held until it is done, then raised.

Options: ``engine`` reuses an engine that is already running (the tests share one): the app's
engine pool serves that engine's model with it and never stops it; ``jobs`` starts the training job scheduler (the dashboard); ``shell`` gives the
shell user's rights (any dataset file within the size limit, any model folder) instead of a web
request's; ``read_only`` opens the store without a writer (``app.py report``, which may run while
a dashboard holds the file).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import duckdb

from backend.evaluation.costs import Price
from backend.interrupts import interrupts_held
from backend.jobs.scheduler import JobsConfig, TrainingJobs
from backend.service.budgetlab import Budgetlab
from backend.service.sweep_jobs import run_sweep_payload
from backend.serving.local import LocalEngine
from backend.serving.pool import EnginePool
from backend.serving.remote import RemoteEngine
from backend.settings import REPO_ROOT, AppSettings
from store.queries import ReadOnlyStore, StoreBusyError, busy_reason
from store.writer import StoreConfig, StoreWriter


class StoreUnavailable(RuntimeError):
    """The store cannot be opened (no file to read, held by another process, a newer schema); the message says which."""


@dataclass(frozen=True)
class App:
    settings: AppSettings
    store: StoreWriter | ReadOnlyStore
    service: Budgetlab
    jobs: TrainingJobs | None = None


@contextlib.contextmanager
def open_app(settings: AppSettings, env: Mapping[str, str], *, engine: LocalEngine | RemoteEngine | None = None, jobs: bool = False,
             shell: bool = False, read_only: bool = False) -> Iterator[App]:
    """The app's parts, opened, and closed in order on the way out; see the module docstring.
    ``env`` is the environment a local engine child inherits (app.py passes os.environ).
    Raises StoreUnavailable before anything else is started."""
    store = open_store(settings, read_only)
    service = training = None
    try:
        service = build_service(settings, store, env, engine=engine, shell=shell)
        if jobs:
            # Sweeps run as jobs too, inside this process (it holds the store's writer), through the service.
            training = TrainingJobs(jobs_config(settings), store, service.registry, sweep_runner=functools.partial(run_sweep_payload, service))
            training.start()  # a job left running by an earlier app is marked interrupted; queued ones run
        yield App(settings, store, service, training)
    finally:
        with interrupts_held():  # a second Ctrl-C must not leave the engine child or the store half-stopped
            if training is not None:
                training.shutdown()
            if service is not None:
                service.close()
            store.close()


def open_store(settings: AppSettings, read_only: bool = False) -> StoreWriter | ReadOnlyStore:
    path = settings.resolve_path(settings.db)
    try:
        return ReadOnlyStore(path) if read_only else StoreWriter(StoreConfig(path))
    except (FileNotFoundError, StoreBusyError) as exc:
        raise StoreUnavailable(str(exc)) from None
    except duckdb.IOException as exc:
        raise StoreUnavailable(f"cannot open {settings.db}: {busy_reason(exc)}") from None
    except ValueError as exc:  # a store written by a newer budgetlab, a bad queue setting
        raise StoreUnavailable(str(exc)) from None


def build_service(settings: AppSettings, store, env: Mapping[str, str], *, engine: LocalEngine | RemoteEngine | None = None,
                  shell: bool = False) -> Budgetlab:
    """The service over ``store``, with the engines the settings describe (none started): a remote
    deployment, or a pool of local engines (which serves ``engine``'s model with ``engine``)."""
    endpoints, verifiers = settings.chat_endpoints(), settings.remote_verifiers()
    if isinstance(engine, RemoteEngine):
        engines = engine
    elif settings.backend_url and engine is None:
        engines = RemoteEngine(settings.backend_url, settings.backend_api_key)
    else:
        engines = EnginePool(settings.engine_config(), settings.pool_config(), log_dir=settings.resolve_path(settings.data_dir),
                             base_env=env, adopted=(engine,) if engine is not None else ())
    return Budgetlab(
        registry=settings.model_registry(),
        engines=engines,
        store=store,
        controller_config=settings.controller_config(),
        sampling=settings.sampling(),
        default_model=settings.model,
        grade_timeout_s=settings.grade_timeout_s,
        request_timeout_s=settings.request_timeout_s,
        price=Price(settings.price_per_m_input_tokens, settings.price_per_m_output_tokens),
        max_columns=settings.compare_max_columns,
        sweep_concurrency=settings.sweep_concurrency,
        first_run_questions=settings.first_run_questions,
        recommend_min_answers=settings.recommend_min_answers,
        audit_min_generations=settings.audit_min_generations,
        local_tokenizer=settings.local_tokenizer,
        # The shell user may read any dataset path they name (within the size limit) and load any
        # model folder; a web request may not.
        dataset_policy=settings.dataset_policy(any_path=shell),
        model_paths=shell,
        owns_engines=not isinstance(engine, RemoteEngine),  # a pool never stops an engine it was handed
        endpoints=endpoints,
        # Each endpoint's key, from the variable the file names (the variable's name is all the file holds).
        endpoint_keys={name: env.get(e.api_key_env, "") for name, e in endpoints.items() if e.api_key_env},
        remote_verifiers=verifiers,
        verifier_keys={name: env.get(v.api_key_env, "") for name, v in verifiers.items() if v.api_key_env},
    )


def jobs_config(settings: AppSettings) -> JobsConfig:
    """Where the jobs live, and the command each runs: ``python app.py train`` with the app's model folders."""
    command = (sys.executable, str(REPO_ROOT / "app.py"), "train",
               "--models-dir", str(settings.resolve_path(settings.models_dir)),
               "--trained-models-dir", str(settings.resolve_path(settings.trained_models_dir)),
               "--dataset-max-mb", str(settings.dataset_max_mb))
    return JobsConfig(settings.resolve_path(settings.jobs_dir), settings.resolve_path(settings.scheduler_db),
                      settings.resolve_path(settings.trained_models_dir), command, settings.training_poll_s, settings.dataset_policy())
