"""The application service: what the UI, the API and the command line call.

`Budgetlab` ties the parts together: the model registry, the engine (local or remote), the
controllers, the grader and the store. The UI handlers stay thin and call it; it holds no UI
code and no SQL. `backend.factory.open_app` builds it from the settings (one wiring for every
entry point and the tests).

    with open_app(settings, env=os.environ) as app:
        async for snapshot in app.service.compare_stream(request):
            ...
        outcome = await app.service.sweep(sweep_request, on_progress=print)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from backend.controllers.config import ControllerConfig
from backend.controllers.live import LiveGeneration
from backend.controllers.session import ModelSession
from backend.errors import InputError
from backend.evaluation.costs import Price, estimate_cost
from backend.evaluation.datasets import DatasetPolicy
from backend.service.analytics import Analytics
from backend.service.compare import CompareRequest, check_budgets_fit, run_columns
from backend.service.records import generation_rows, settle
from backend.service.sweep import SweepOutcome, run_sweep
from backend.service.sweep_plan import SweepRequest
from backend.service.sweep_worker import ProgressCallback
from backend.serving.client import EngineClient
from backend.serving.engine import EngineStatus
from backend.serving.local import LocalEngine
from backend.serving.registry import ModelRegistry, ModelSpec, UnknownModelError, check_available
from backend.serving.remote import RemoteEngine
from backend.serving.sampling import Sampling
from store import queries
from store.ids import new_gen_id
from store.schema import utc_now
from store.summary import run_summary


@dataclass
class CompareSnapshot:
    run_id: str
    message: str
    generations: list[LiveGeneration] = field(default_factory=list)
    done: bool = False
    error: str | None = None


class Budgetlab:
    def __init__(
        self,
        *,
        registry: ModelRegistry,
        engine: LocalEngine | RemoteEngine,
        store,
        controller_config: ControllerConfig,
        sampling: Sampling,
        default_model: str,
        grade_timeout_s: float,
        request_timeout_s: float,
        price: Price,
        max_columns: int,
        sweep_concurrency: int,
        dataset_policy: DatasetPolicy,
        model_paths: bool = False,
        owns_engine: bool = True,
    ) -> None:
        """`store`: a `StoreWriter` (or a read-only store, for reports); `dataset_policy`: which
        dataset files a sweep may open; `model_paths`: whether a request may name any local model
        folder (the shell's sweep) or only registered models and the default (the dashboard: a web
        request never picks a folder to load); `owns_engine`: `close` stops the engine."""
        self.registry = registry
        self.engine = engine
        self.store = store
        self.controller_config = controller_config
        self.sampling = sampling
        self.default_model = default_model
        self.grade_timeout_s = grade_timeout_s
        self.request_timeout_s = request_timeout_s
        self.price = price
        self.max_columns = max_columns
        self.sweep_concurrency = sweep_concurrency
        self.dataset_policy = dataset_policy
        self.model_paths = model_paths
        self.owns_engine = owns_engine
        self.analytics = Analytics(store, price)

    # --- engine
    def start_default_engine(self) -> ModelSpec:
        """Start serving the default model in the background; raises UnknownModelError at once."""
        spec = self.registry.resolve(self.default_model)
        self.engine.start(spec)
        return spec

    def engine_status(self) -> EngineStatus:
        return self.engine.status()

    def model_names(self) -> list[str]:
        names = self.registry.names()
        if self.default_model not in names:
            names.insert(0, self.default_model)
        return names

    def resolve_model(self, name: str) -> ModelSpec:
        """Resolve a name without touching the network (for quick UI updates)."""
        try:
            return self.registry.resolve(name, allow_paths=self.model_paths or (name or "").strip() == self.default_model)
        except UnknownModelError as exc:
            raise InputError(str(exc)) from None

    def suggested_budgets(self) -> tuple[int, ...]:
        """The default model's suggested budgets (the forms' first choices)."""
        try:
            return self.resolve_model(self.default_model).budgets
        except InputError:
            return (64, 128, 256, 512)

    async def available_model(self, name: str) -> ModelSpec:
        """Resolve a name and make sure its weights can be had, so no engine is stopped in vain."""
        spec = self.resolve_model(name)
        if isinstance(self.engine, LocalEngine):
            try:
                await asyncio.to_thread(check_available, spec)
            except UnknownModelError as exc:
                raise InputError(str(exc)) from None
        return spec

    async def endpoint_for(self, spec: ModelSpec):
        return await asyncio.to_thread(self.engine.ensure, spec)

    async def recover_endpoint(self, spec: ModelSpec, lost):
        """The endpoint once the engine that stopped answering at `lost` is back (see engine.recover)."""
        return await asyncio.to_thread(self.engine.recover, spec, lost)

    # --- comparison
    async def compare_stream(self, request: CompareRequest) -> AsyncIterator[CompareSnapshot]:
        """Run a comparison, yielding snapshots; every finished generation is stored before it shows as done."""
        run_id = f"compare-{uuid.uuid4().hex[:12]}"
        spec = await self.available_model(request.model)
        seed = request.seed if request.seed is not None else random.randrange(2**31)
        sampling = Sampling(self.sampling.temperature, self.sampling.top_p, seed)
        waiting = asyncio.create_task(self.endpoint_for(spec))
        while not waiting.done():
            yield CompareSnapshot(run_id, f"waiting for the engine: {self.engine.status().message}")
            await asyncio.wait({waiting}, timeout=1.0)
        endpoint = waiting.result()  # raises EngineUnavailable with the reason
        async with EngineClient(endpoint, timeout_s=self.request_timeout_s) as client:
            session = await ModelSession.open(client)
            check_budgets_fit(session, request.budgets)
            await self._open_compare_run(run_id, spec, request, sampling)

            async def store_one(live: LiveGeneration) -> None:
                await settle(live, request.gold, self.grade_timeout_s)
                rows = generation_rows(live, gen_id=new_gen_id(), run_id=run_id, created_at=utc_now(), model=spec.name,
                                       question=request.question, gold=request.gold, sampling=sampling)
                await asyncio.wrap_future(self.store.insert_generations(rows))
                live.phase = "done"

            async for lives in run_columns(session, request, self.controller_config, sampling, store_one):
                yield CompareSnapshot(run_id, f"{spec.name}: {sum(g.done for g in lives)}/{len(lives)} done", lives)
            await asyncio.wrap_future(self.store.set_run_status(run_id, "finished"))
            yield CompareSnapshot(run_id, f"{spec.name}: {len(lives)} generations, seed {seed}, run {run_id}", lives, done=True)

    async def _open_compare_run(self, run_id: str, spec: ModelSpec, request: CompareRequest, sampling: Sampling) -> None:
        config = {"model": spec.name, "budgets": list(request.budgets), "controllers": list(request.controllers), "seed": sampling.seed,
                  "temperature": sampling.temperature, "top_p": sampling.top_p}
        await asyncio.wrap_future(self.store.upsert_run(run_id, f"compare {dt.datetime.now():%Y-%m-%d %H:%M:%S}", "compare", config, "running"))

    async def compare(self, request: CompareRequest) -> dict:
        """The whole comparison as one JSON-ready result (the `compare` API endpoint)."""
        last: CompareSnapshot | None = None
        async for snapshot in self.compare_stream(request):
            last = snapshot
        assert last is not None
        return {
            "run_id": last.run_id,
            "model": request.model,
            "question": request.question,
            "gold": request.gold,
            "generations": [self.with_cost(g.as_dict()) for g in last.generations],
        }

    def with_cost(self, generation: dict) -> dict:
        """The generation with ``cost_usd`` at the default prices (probe tokens are generated, so billed)."""
        price = self.price
        output = generation["total_tokens"] + generation.get("probe_tokens", 0)
        generation["cost_usd"] = estimate_cost(generation["prompt_tokens"], output, price.input_per_m, price.output_per_m)
        return generation

    # --- sweeps and their reports
    async def sweep(self, request: SweepRequest, on_progress: ProgressCallback | None = None) -> SweepOutcome:
        """Run (or resume) a sweep; see `backend.service.sweep.run_sweep`."""
        return await run_sweep(self, request, on_progress)

    def runs(self) -> list[dict]:
        """The stored runs, newest first."""
        with self.store.reader() as cur:
            return queries.list_runs(cur)

    def run_report(self, run_id: str) -> list[dict] | None:
        """A run's summary recomputed from its stored generations, or None if there is no such run."""
        with self.store.reader() as cur:
            if queries.get_run(cur, run_id) is None:
                return None
            return run_summary(cur, run_id)

    def close(self) -> None:
        if self.owns_engine:
            self.engine.stop()
