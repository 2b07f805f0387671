"""The application service: what the UI, the API and the CLI call.

`Budgetlab` ties the parts together: the model registry, the engine (local or
remote), the controllers, the grader and the store. The UI handlers stay thin
and call it; it holds no UI code and no SQL.

    service = Budgetlab.from_settings(settings, store, env=os.environ)
    async for snapshot in service.compare_stream(request):
        ...
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from backend.analytics import KEYWORDS_VERSION, keyword_counts
from backend.client import EngineClient, Sampling
from backend.compare import CompareRequest, InputError, check_budgets_fit, estimate_cost, run_columns
from backend.controllers import ControllerConfig
from backend.datasets import DatasetPolicy
from backend.engine import EngineConfig, EngineStatus, LocalEngine, RemoteEngine, cpu_flags, detect_device, resolve_dtype
from backend.generation import LiveGeneration, ModelSession
from backend.grading import grade
from backend.models import ModelRegistry, ModelSpec, UnknownModelError, check_available
from backend.settings import AppSettings
from store.ids import new_gen_id
from store.schema import utc_now


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
        registry: ModelRegistry,
        engine: LocalEngine | RemoteEngine,
        store,
        controller_config: ControllerConfig,
        sampling: Sampling,
        default_model: str,
        grade_timeout_s: float = 5.0,
        request_timeout_s: float = 600.0,
        price_in_per_m: float = 0.5,
        price_out_per_m: float = 2.0,
        max_columns: int = 24,
        dataset_policy: DatasetPolicy | None = None,
        model_paths: bool = False,
    ) -> None:
        self.registry = registry
        self.engine = engine
        self.store = store
        self.controller_config = controller_config
        self.sampling = sampling
        self.default_model = default_model
        self.grade_timeout_s = grade_timeout_s
        self.request_timeout_s = request_timeout_s
        self.price_in_per_m = price_in_per_m
        self.price_out_per_m = price_out_per_m
        self.max_columns = max_columns
        # Which dataset files a sweep may open; by default none (built-in and Hub datasets only).
        self.dataset_policy = dataset_policy or DatasetPolicy(roots=())
        # Whether a request may name any local model folder (the shell's sweep) or only registered
        # models and the default (the dashboard: a web request never picks a folder to load).
        self.model_paths = model_paths

    @classmethod
    def from_settings(cls, settings: AppSettings, store, env: Mapping[str, str], engine: LocalEngine | RemoteEngine | None = None,
                      dataset_policy: DatasetPolicy | None = None, model_paths: bool = False) -> Budgetlab:
        """`env` is the environment a local engine child inherits (app.py passes os.environ);
        `engine` reuses one already running (the tests share one per session); `dataset_policy`
        defaults to the dashboard's (files inside ``dataset_dirs`` only)."""
        registry = settings.model_registry()
        if engine is None and settings.backend_url:
            engine = RemoteEngine(settings.backend_url, settings.backend_api_key)
        elif engine is None:
            engine = LocalEngine(engine_config(settings), log_dir=settings.resolve_path(settings.data_dir), base_env=env)
        return cls(
            registry=registry,
            engine=engine,
            store=store,
            controller_config=controller_config(settings),
            sampling=Sampling(settings.temperature, settings.top_p),
            default_model=settings.model,
            grade_timeout_s=settings.grade_timeout_s,
            request_timeout_s=settings.request_timeout_s,
            price_in_per_m=settings.price_per_m_input_tokens,
            price_out_per_m=settings.price_per_m_output_tokens,
            max_columns=settings.compare_max_columns,
            dataset_policy=dataset_policy or settings.dataset_policy(),
            model_paths=model_paths,
        )

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
            await asyncio.wrap_future(self.store.upsert_run(run_id, f"compare {dt.datetime.now():%Y-%m-%d %H:%M:%S}", "compare", {"model": spec.name, "budgets": list(request.budgets), "controllers": list(request.controllers), "seed": seed, "temperature": sampling.temperature, "top_p": sampling.top_p}, "running"))

            async def store_one(live: LiveGeneration) -> None:
                result = await asyncio.to_thread(grade, live.answer_text, request.gold, live.full_text, self.grade_timeout_s)
                live.extracted_answer, live.correct = result.extracted, result.correct
                row = generation_row(live, run_id, spec.name, request, sampling)
                await asyncio.wrap_future(self.store.insert_generations([row]))
                live.phase = "done"

            async for lives in run_columns(session, request, self.controller_config, sampling, store_one):
                yield CompareSnapshot(run_id, f"{spec.name}: {sum(g.done for g in lives)}/{len(lives)} done", lives)
            await asyncio.wrap_future(self.store.set_run_status(run_id, "finished"))
            yield CompareSnapshot(run_id, f"{spec.name}: {len(lives)} generations, seed {seed}, run {run_id}", lives, done=True)

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
        generation["cost_usd"] = estimate_cost(generation["prompt_tokens"], generation["total_tokens"], self.price_in_per_m, self.price_out_per_m)
        return generation

    def close(self) -> None:
        self.engine.stop()


def generation_row(live: LiveGeneration, run_id: str, model: str, request: CompareRequest, sampling: Sampling) -> dict:
    return {
        "gen_id": new_gen_id(),
        "run_id": run_id,
        "created_at": utc_now(),
        "model": model,
        "controller": live.controller,
        "budget": live.budget,
        "dataset": None,
        "question_id": None,
        "question": request.question,
        "gold": request.gold,
        "sample_idx": 0,
        "seed": sampling.seed,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "prompt": live.prompt,
        "full_text": live.full_text,
        "thinking_text": live.thinking_text,
        "answer_text": live.answer_text,
        "extracted_answer": live.extracted_answer,
        "correct": live.correct,
        "prompt_tokens": live.prompt_tokens,
        "thinking_tokens": live.thinking_tokens,
        "answer_tokens": live.answer_tokens,
        "total_tokens": live.total_tokens,
        "finish_reason": live.finish_reason,
        "waits_used": live.waits_used,
        "ttft_s": live.ttft_s,
        "latency_s": live.latency_s,
        "keyword_counts": keyword_counts(live.full_text),
        "keywords_version": KEYWORDS_VERSION,
    }


def engine_config(settings: AppSettings) -> EngineConfig:
    device = detect_device()
    return EngineConfig(
        device=device,
        kv_cache_gib=settings.engine_kv_cache_gib,
        gpu_memory_utilization=settings.engine_gpu_memory_utilization,
        max_model_len=settings.engine_max_model_len,
        enforce_eager=settings.engine_enforce_eager,
        start_timeout_s=settings.engine_start_timeout_s,
        max_restarts=settings.engine_max_restarts,
        extra_args=settings.engine_extra_args,
        trust_remote_code=settings.trust_remote_code,
        dtype=resolve_dtype(settings.engine_dtype, device, cpu_flags()),
    )


def controller_config(settings: AppSettings) -> ControllerConfig:
    return ControllerConfig(
        s1_max_waits=settings.s1_max_waits,
        s1_wait_text=settings.s1_wait_text,
        s1_answer_prefix=settings.s1_answer_prefix,
        answer_max_tokens=settings.answer_max_tokens,
        unconstrained_max_tokens=settings.unconstrained_max_tokens,
    )
