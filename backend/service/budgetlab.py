"""The application service: what the UI, the API and the command line call.

`Budgetlab` ties the parts together: the model registry, the engines (a pool of local ones, or a remote deployment), the
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
import contextlib
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from backend.controllers.chat_session import ChatSession
from backend.controllers.config import ControllerConfig
from backend.controllers.live import LiveGeneration
from backend.controllers.prompts import THINK_END, THINK_START, base_prompt, chat_messages, l1_exact_prompt, l1_max_prompt
from backend.controllers.session import ModelSession
from backend.errors import InputError
from backend.evaluation.arith import is_arith_question
from backend.evaluation.costs import Price, billed_tokens, estimate_cost
from backend.evaluation.datasets import DatasetPolicy
from backend.evaluation.verifiers import ORACLE
from backend.service.analytics import Analytics
from backend.service.audit import TOLERANCE_SHARE, TOLERANCE_TOKENS, audit_report
from backend.service.compare import CompareRequest, check_budgets_fit, run_columns
from backend.service.leases import hold
from backend.service.pairing import assign
from backend.service.records import generation_rows, settle
from backend.service.reopen import stored_cards
from backend.service.sweep import SweepOutcome, run_sweep
from backend.service.sweep_jobs import checked_sweep
from backend.service.sweep_plan import SweepRequest
from backend.service.sweep_worker import ProgressCallback
from backend.service.trained_range import TrainedBudgets, budgets_inside, flag_rows
from backend.service.verifying import canonical_controllers, check_verifiers, held_verifiers, verifiers_needed
from backend.serving.chat import ChatClient, EndpointLimits
from backend.serving.client import EngineClient
from backend.serving.endpoints import ChatEndpoint, VerifierEndpoint
from backend.serving.engine import EngineStatus
from backend.serving.pool import EnginePool, EngineView
from backend.serving.local import GENERATE
from backend.serving.registry import (
    ARITH_DOMAIN,
    BASE_MODELS,
    ModelRegistry,
    ModelSpec,
    UnknownModelError,
    check_available,
    trained_from,
)
from backend.serving.remote import RemoteEngine
from backend.serving.sampling import Sampling
from backend.serving.tokenizer import LocalTokenizers
from store import queries
from store.analytics import Filters
from store.audit import audit_rows, auditable_runs
from store.ids import new_gen_id
from store.schema import utc_now
from store.summary import run_summary

TOKENIZER_WAIT_S = 30.0  # how long a search waits for the model's own tokenizer to be read and checked


def tokenizer_probes(config: ControllerConfig) -> list:
    """What a local tokenizer must give the engine's ids for before it is used: each prompt form the
    controllers send (digits, operators, a backslash, a word problem's punctuation), and the texts
    they insert (the delimiters, s1's wait text and answer opening as configured)."""
    prompts = (base_prompt("Compute 17 + 25 - 8."), l1_exact_prompt("Compute 3 + 4.", 512),
               l1_max_prompt("Tom has 3 apples; he buys 2 more (and eats one). How many are left?", 1024))
    return [*(chat_messages(text) for text in prompts), THINK_START, THINK_END, config.s1_wait_text, "\n\n" + config.s1_answer_prefix]


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
        engines: EnginePool | RemoteEngine,
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
        first_run_questions: int = 50,
        recommend_min_answers: int = 1,
        audit_min_generations: int = 1,
        model_paths: bool = False,
        owns_engines: bool = True,
        endpoints: Mapping[str, ChatEndpoint] | None = None,
        endpoint_keys: Mapping[str, str] | None = None,
        remote_verifiers: Mapping[str, VerifierEndpoint] | None = None,
        verifier_keys: Mapping[str, str] | None = None,
        local_tokenizer: bool = True,
    ) -> None:
        """`store`: a `StoreWriter` (or a read-only store, for reports); `dataset_policy`: which
        dataset files a sweep may open; `model_paths`: whether a request may name any local model
        folder (the shell's sweep) or only registered models and the default (the dashboard: a web
        request never picks a folder to load); `owns_engines`: `close` stops the engines; `endpoints`: the
        chat endpoints of the endpoints file, and `endpoint_keys` their keys by endpoint name (read
        from the environment by the caller; never stored, logged or shown); `local_tokenizer`: served
        models' chat prompts are tokenized in the app once its tokenizer matched the engine's."""
        self.registry = registry
        self.engines = engines
        self.store = store
        self.controller_config = controller_config
        self.sampling = sampling
        self.default_model = default_model
        self.grade_timeout_s = grade_timeout_s
        self.request_timeout_s = request_timeout_s
        self.price = price
        self.max_columns = max_columns
        self.sweep_concurrency = sweep_concurrency
        self.first_run_questions = first_run_questions
        self.audit_min_generations = audit_min_generations
        self.dataset_policy = dataset_policy
        self.model_paths = model_paths
        self.owns_engines = owns_engines
        self._last_session: ModelSession | None = None
        self.tokenizers = LocalTokenizers(tokenizer_probes(controller_config), enabled=local_tokenizer)
        self.endpoints = dict(endpoints or {})
        self._endpoint_keys = dict(endpoint_keys or {})
        self.remote_verifiers = dict(remote_verifiers or {})  # PRMs served elsewhere ([verifiers.NAME] of the endpoints file)
        self.verifier_keys = dict(verifier_keys or {})
        self.analytics = Analytics(store, price, self.price_of, self.trained_range_of, recommend_min_answers)

    # --- engines
    def start_default_engine(self) -> ModelSpec:
        """Start serving the default model in the background; raises UnknownModelError at once."""
        spec = self.registry.resolve(self.default_model)
        self.engines.start(spec)
        self.tokenizers.preload(spec.source)  # read while the engine starts: checked against it on first use
        return spec

    def engine_status(self) -> EngineStatus:
        """Every engine as one status (ready when all are), one line per engine in its message."""
        return self.engines.status()

    def engine_views(self) -> list[EngineView]:
        """One entry per engine (model, state, memory, who holds it): the status line."""
        return self.engines.views()

    def hold(self, spec: ModelSpec, holder: str, report=None, role: str = GENERATE):
        """``async with service.hold(spec, "viewer") as endpoint``: `spec`'s engine (in `role`: a verifier's
        is ``score``), not stopped for another model until the block ends (see `backend.service.leases`)."""
        return hold(self.engines, spec, holder, report, role)

    def model_names(self) -> list[str]:
        """The models that generate, then each endpoint's model (MODEL_ID@NAME); verifiers (PRMs) are not among them."""
        names = [spec.name for spec in self.registry.all() if not spec.is_verifier]
        if self.default_model not in names:
            names.insert(0, self.default_model)
        return names + self.endpoint_models()

    def verifier_names(self) -> list[str]:
        """What a search can be guided by: the arith oracle, every registered process reward model, then those served elsewhere."""
        return [ORACLE, *(spec.name for spec in self.registry.local_models() if spec.is_verifier), *self.remote_verifiers]

    def endpoint_models(self) -> list[str]:
        return [f"{endpoint.model}@{name}" for name, endpoint in self.endpoints.items()]

    def resolve_model(self, name: str) -> ModelSpec:
        """Resolve a name without touching the network (for quick UI updates); MODEL_ID@NAME: a model on a configured endpoint."""
        chat = ModelSpec.on_endpoint((name or "").strip(), self.endpoints)
        if chat is not None:
            return chat
        try:
            return self.registry.resolve(name, allow_paths=self.model_paths or (name or "").strip() == self.default_model)
        except UnknownModelError as exc:
            raise InputError(str(exc)) from None

    def is_endpoint_model(self, model: str) -> bool:
        return "@" in model and model.rpartition("@")[2] in self.endpoints

    def price_of(self, model: str) -> Price:
        """What a model's tokens cost: an endpoint model's prices from the endpoints file, else the default prices."""
        if self.is_endpoint_model(model):
            chat = self.endpoints[model.rpartition("@")[2]]
            return Price(chat.price_in_per_m, chat.price_out_per_m)
        return self.price

    def trained_range_of(self, model: str) -> TrainedBudgets | None:
        """The budgets a model was trained on (see `backend.service.trained_range`); None when unknown or no longer resolvable."""
        try:
            return self.resolve_model(model).trained_budgets
        except InputError:
            return None

    def equal_token_budgets(self, controllers: list[str]) -> tuple[int, ...]:
        """Low, middle and high budgets for the default model at which every controller's generations
        (N, or N/K for majK / bestK) are asked for a budget inside its trained range (the suggested spread when unknown)."""
        return budgets_inside(self.trained_range_of(self.default_model), controllers, self.suggested_budgets())

    def domain_note(self, model: str, question: str) -> str | None:
        """A note when `question` lies outside what `model` was trained on (the shipped tiny models know
        the arith suite's form only): its answers, and their grades, then say little. None inside, or unknown."""
        try:
            spec = self.resolve_model(model)
        except InputError:
            return None
        if spec.trained_on.startswith(ARITH_DOMAIN) and not is_arith_question(question):
            return (f"This question is outside what {spec.name} was trained on ({ARITH_DOMAIN}): "
                    "expect a confident answer that means little, and a grade that says little.")
        return None

    def base_of(self, spec: ModelSpec) -> ModelSpec | None:
        """The registered model an L1 model was trained from (the paper's baselines run on it): a released
        L1 model's known base, or a local fine-tune's ``base_model`` (its lcpo_config.json); None otherwise."""
        base = BASE_MODELS.get(spec.name) or (trained_from(Path(spec.source)) if spec.is_local and spec.follows_budget_prompts else None)
        if not base or base == spec.name:
            return None
        try:
            return self.resolve_model(base)
        except InputError:
            return None  # not registered here

    def equal_token_models(self) -> list[str]:
        """The models of the equal-token preset: the default model, and next to it the base it was
        trained from when that is registered (the plain-prompt methods run there: `pairing`)."""
        try:
            spec = self.resolve_model(self.default_model)
        except InputError:
            return [self.default_model]
        base = self.base_of(spec)
        return [spec.name, base.name] if base else [spec.name]

    def suggested_budgets(self) -> tuple[int, ...]:
        """The default model's suggested budgets (the forms' first choices)."""
        try:
            return self.resolve_model(self.default_model).budgets
        except InputError:
            return (64, 128, 256, 512)

    async def available_model(self, name: str) -> ModelSpec:
        """Resolve a name and make sure its weights can be had, so no engine is stopped in vain."""
        spec = self.resolve_model(name)
        if isinstance(self.engines, EnginePool) and spec.chat is None and not spec.is_local:  # a folder is there or not: no thread needed
            try:
                await asyncio.to_thread(check_available, spec)
            except UnknownModelError as exc:
                raise InputError(str(exc)) from None
        return spec

    async def open_session(self, spec: ModelSpec, endpoint, *, live: bool, max_connections: int = 256,
                           need_tokenizer: bool = False) -> ModelSession | ChatSession:
        """A session on `endpoint` (from `hold`); the caller closes it (``aclose``). `need_tokenizer`: wait for the
        model's own tokenizer (a search cuts steps on its ids) rather than start without it."""
        if spec.chat is not None:
            key = self._endpoint_keys.get(spec.chat.name, "")
            if spec.chat.api_key_env and not key:
                raise InputError(f"endpoint {spec.chat.name!r}: the environment variable {spec.chat.api_key_env} that should hold its key is not set")
            return ChatSession(ChatClient(spec.chat, key, EndpointLimits.for_endpoint(spec.chat)), spec.chat_model)
        client = EngineClient(endpoint, timeout_s=self.request_timeout_s, max_connections=max_connections)
        try:
            tokenizer = (await asyncio.to_thread(self.tokenizers.wait, spec.source, endpoint, TOKENIZER_WAIT_S) if need_tokenizer
                         else self.tokenizers.get(spec.source, endpoint))
            session = await ModelSession.open(client, live, known=self._last_session, tokenizer=tokenizer)
            self._last_session = session  # its token facts and prompts serve the next session on this endpoint
            return session
        except BaseException:
            await client.aclose()
            raise

    async def recover_endpoint(self, spec: ModelSpec, lost):
        """The endpoint once the engine that stopped answering at `lost` is back (see LocalEngine.recover)."""
        return await asyncio.to_thread(self.engines.recover, spec, lost)

    # --- comparison
    async def compare_stream(self, request: CompareRequest) -> AsyncIterator[CompareSnapshot]:
        """Run a comparison, yielding snapshots; every finished generation is stored before it shows as done."""
        run_id = f"compare-{uuid.uuid4().hex[:12]}"
        specs = [await self.available_model(name) for name in request.models]
        # Columns, sessions and stored rows go by the registered name, whatever the request called
        # the model (an alias such as l1-tiny-exact, the folder the app was started with).
        controllers = canonical_controllers(request.controllers, self.controller_config)
        await check_verifiers(self, controllers)
        request = replace(request, model=specs[0].name, other_model=specs[1].name if len(specs) > 1 else None, controllers=controllers,
                          assigned=tuple(assign(controllers, specs, request.each_on_its_model).items()))
        seed = request.seed if request.seed is not None else random.randrange(2**31)
        sampling = Sampling(self.sampling.temperature, self.sampling.top_p, seed)
        async with contextlib.AsyncExitStack() as held:
            endpoints = {}
            for spec in specs:  # each engine held for the whole comparison: nobody stops it for another model
                waiting: list[str] = []
                leasing = asyncio.ensure_future(held.enter_async_context(self.hold(spec, "viewer", report=waiting.append)))
                try:
                    while not leasing.done():
                        await asyncio.wait({leasing}, timeout=1.0)
                        if waiting:
                            yield CompareSnapshot(run_id, f"waiting for {spec.name}: {waiting[-1]}")
                except BaseException:
                    leasing.cancel()
                    raise
                endpoints[spec.name] = leasing.result()  # raises EngineUnavailable with the reason
            if verifiers_needed(request.controllers, self.controller_config):
                yield CompareSnapshot(run_id, "starting the verifier")
            verifiers = await held.enter_async_context(held_verifiers(self, request.controllers, "viewer"))
            async for snapshot in self._compare_on(run_id, specs, request, sampling, endpoints, verifiers):
                yield snapshot

    async def _compare_on(self, run_id: str, specs: list[ModelSpec], request: CompareRequest, sampling: Sampling,
                          endpoints: dict, verifiers: dict) -> AsyncIterator[CompareSnapshot]:
        """The comparison's columns streamed on engines already held (`compare_stream`)."""
        seed = sampling.seed
        sessions = {}
        ranges = {spec.name: spec.trained_budgets for spec in specs}
        try:
            for spec in specs:
                sessions[spec.name] = await self.open_session(spec, endpoints[spec.name], live=True, need_tokenizer=bool(verifiers))
                check_budgets_fit(sessions[spec.name], request.budgets, dict(request.assigned or ()).get(spec.name, request.controllers))
            # The run's record is written while the columns start (the writer thread may be busy with others').
            opening = asyncio.create_task(self._open_compare_run(run_id, specs, request, sampling))

            async def store_one(live: LiveGeneration) -> None:
                await settle(live, request.gold, self.grade_timeout_s, request.question)
                await opening
                rows = generation_rows(live, gen_id=new_gen_id(), run_id=run_id, created_at=utc_now(), model=live.model,
                                       question=request.question, gold=request.gold, sampling=sampling)
                await asyncio.wrap_future(self.store.insert_generations(rows))
                live.phase = "done"

            names = " vs ".join(spec.name for spec in specs)
            async for lives in run_columns(sessions, request, self.controller_config, sampling, store_one, ranges=ranges, verifiers=verifiers):
                yield CompareSnapshot(run_id, f"{names}: {sum(g.done for g in lives)}/{len(lives)} done", lives)
            await opening
            await asyncio.wrap_future(self.store.set_run_status(run_id, "finished"))
            yield CompareSnapshot(run_id, f"{names}: {len(lives)} generations, seed {seed}, run {run_id}", lives, done=True)
        finally:
            for session in sessions.values():
                await session.aclose()

    async def _open_compare_run(self, run_id: str, specs: list[ModelSpec], request: CompareRequest, sampling: Sampling) -> None:
        config = {"model": specs[0].name, "models": [spec.name for spec in specs], "budgets": list(request.budgets),
                  "controllers": list(request.controllers), "seed": sampling.seed, "temperature": sampling.temperature, "top_p": sampling.top_p}
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
            "models": list(request.models),
            "question": request.question,
            "gold": request.gold,
            "generations": [self.with_cost(g.as_dict()) for g in last.generations],
        }

    def stored_comparison(self, run_id: str) -> dict:
        """A comparison reopened from the store (a shared link): its question and cards as they were,
        each with its cost; nothing generated, no engine asked. InputError for no such comparison."""
        with self.store.reader() as cur:
            run = queries.get_run(cur, run_id)
            if run is None or run["kind"] != "compare":
                raise InputError(f"no stored comparison {run_id!r}: the link is wrong, or the store it was made in is not this one")
            rows = queries.get_generations(cur, run_id)
        config = run["config"] or {}
        first = rows[0] if rows else {}
        return {"run_id": run_id, "model": config.get("model"), "models": config.get("models") or [config.get("model")],
                "question": first.get("question", ""), "gold": first.get("gold"), "seed": config.get("seed"),
                "budgets": config.get("budgets", []), "controllers": config.get("controllers", []), "created_at": run["created_at"],
                "generations": [self.with_cost(card) for card in flag_rows(stored_cards(run, rows), self.trained_range_of)]}

    def with_cost(self, generation: dict) -> dict:
        """The generation with ``cost_usd`` at its model's prices (`billed_tokens`: probes and verifier reads included)."""
        price = self.price_of(generation.get("model") or "")
        generation["cost_usd"] = estimate_cost(*billed_tokens(generation), price.input_per_m, price.output_per_m)
        return generation

    # --- sweeps and their reports
    async def sweep(self, request: SweepRequest, on_progress: ProgressCallback | None = None) -> SweepOutcome:
        """Run (or resume) a sweep; see `backend.service.sweep.run_sweep`."""
        return await run_sweep(self, request, on_progress)

    async def check_sweep(self, request: SweepRequest) -> SweepRequest:
        """The request with its run name fixed, if its models and dataset are there (before it becomes a job)."""
        return await checked_sweep(self, request)

    def sweep_summary(self, run_id: str) -> list[dict]:
        """A stored sweep's summary, one dict per (model, controller, budget), flagged outside the trained range."""
        with self.store.reader() as cur:
            return flag_rows(run_summary(cur, run_id), self.trained_range_of)

    def sweeps_stored(self) -> int:
        """Sweeps with at least one stored generation (none: the Analytics tab offers its first run)."""
        with self.store.reader() as cur:
            return queries.count_sweeps_with_generations(cur)

    def runs(self) -> list[dict]:
        """The stored runs, newest first."""
        with self.store.reader() as cur:
            return queries.list_runs(cur)

    def run_report(self, run_id: str) -> list[dict] | None:
        """A run's summary recomputed from its stored generations, or None if there is no such run."""
        with self.store.reader() as cur:
            if queries.get_run(cur, run_id) is None:
                return None
            summary = run_summary(cur, run_id)
        return flag_rows(summary, self.trained_range_of)

    def auditable_runs(self) -> list[str]:
        """The stored runs the audit can judge (at least ``audit_min_generations`` per budget), newest first."""
        with self.store.reader() as cur:
            return auditable_runs(cur, self.audit_min_generations)

    def audit(self, run_id: str) -> dict:
        """The adherence audit of a stored run: per (model, controller), a verdict on its budget knob (see `backend.service.audit`)."""
        with self.store.reader() as cur:
            if queries.get_run(cur, run_id) is None:
                raise InputError(f"run {run_id!r}: no such run (the Analytics tab and `app.py report` list them)")
            rows = audit_rows(cur, Filters(runs=(run_id,)), TOLERANCE_TOKENS, TOLERANCE_SHARE)
        return audit_report(rows, self.audit_min_generations)

    def close(self) -> None:
        if self.owns_engines:
            self.engines.stop()
