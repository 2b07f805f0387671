"""Evaluation sweeps: every (model, controller, budget, question, sample) of a dataset, stored.

The L1 paper's protocol as one call: each generation runs through the same controllers as the
comparison view, is graded, and lands in the store under a stable key, so a sweep that crashed
or was interrupted resumes where it stopped and never stores a generation twice. All requests
go to the engine at once, bounded by ``concurrency``, so that vLLM's continuous batching and
prefix caching do the work; a multi-turn s1 generation holds one slot, never the whole sweep.

    request = parse_sweep_request(models="l1-tiny", dataset="arith", controllers="l1_exact,s1",
                                  budgets="64,128", samples=4, limit=20)
    outcome = await run_sweep(service, request, on_progress=print)
    outcome.summary   # one dict per (model, controller, budget): see store/summary.py

``python app.py sweep`` is the command line for it and the Sweep tab the form.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from backend.analytics import KEYWORDS_VERSION, keyword_counts
from backend.client import EngineClient, EngineRequestError, Sampling
from backend.compare import InputError, check_budgets_fit, parse_budgets, parse_controllers
from backend.controllers import make_controller
from backend.datasets import Dataset, Question, load_dataset
from backend.engine import EngineUnavailable
from backend.generation import BudgetError, LiveGeneration, ModelSession
from backend.grading import grade
from store import queries
from store.schema import utc_now
from store.summary import run_summary

MAX_SAMPLES = 1024
MAX_CONCURRENCY = 4096
# Rows wait this long at most before going to the store, so an interruption loses little.
FLUSH_EVERY_S = 0.5
# A run of this many failures in a row, with nothing succeeding, means the engine or the
# dataset is broken for good: stop instead of failing every remaining item one by one.
MIN_FAILURE_STREAK = 32
# Times one item is put back after the engine went away under it, before it counts as failed.
ENGINE_LOSS_RETRIES = 3


@dataclass(frozen=True)
class SweepRequest:
    models: tuple[str, ...]
    dataset: str
    controllers: tuple[str, ...]
    budgets: tuple[int, ...]
    samples: int = 1
    limit: int | None = None
    seed: int = 0
    concurrency: int = 64
    run: str | None = None
    question_field: str | None = None
    answer_field: str | None = None
    skip_bad: bool = False
    split: str = "test"
    hub_config: str | None = None

    def __post_init__(self) -> None:
        if not self.models or not all(m.strip() for m in self.models):
            raise InputError("no model given: name one or more models, e.g. --model tiny-r1-base")
        if not self.dataset.strip():
            raise InputError("no dataset given: a built-in name (arith), a JSONL/Parquet/CSV file or a hub name")
        if not 1 <= self.samples <= MAX_SAMPLES:
            raise InputError(f"--samples {self.samples}: must be between 1 and {MAX_SAMPLES} per question")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit {self.limit}: must be a positive number of questions")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise InputError(f"--concurrency {self.concurrency}: must be between 1 and {MAX_CONCURRENCY} requests")
        if self.run is not None and (not self.run.strip() or len(self.run) > 200):
            raise InputError("--run: a run name must be 1 to 200 characters")

    def identity(self, dataset: Dataset, sampling: Sampling) -> dict:
        """What a resumed run must share with the original, or its keys would mean other things."""
        return {
            "dataset": dataset.name,
            "dataset_source": dataset.source,
            "limit": self.limit,
            "seed": self.seed,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }


def parse_sweep_request(models, dataset, controllers, budgets, samples=1, limit=None, seed=0, concurrency=64, run=None, **options) -> SweepRequest:
    """Loose input (CLI strings, UI form values) to a validated request, or InputError."""
    return SweepRequest(
        models=_split_names(models),
        dataset=str(dataset or "").strip(),
        controllers=parse_controllers(controllers),
        budgets=parse_budgets(budgets),
        samples=_whole("--samples", samples),
        limit=None if limit is None or str(limit).strip() == "" else _whole("--limit", limit),
        seed=_whole("--seed", seed),
        concurrency=_whole("--concurrency", concurrency),
        run=(str(run).strip() or None) if run is not None else None,
        **options,
    )


def _split_names(value) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else [n for v in (value or []) for n in str(v).split(",")]
    return tuple(dict.fromkeys(n.strip() for n in items if n.strip()))


def _whole(flag: str, value) -> int:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise InputError(f"{flag} {value!r}: not a whole number") from None
    if number != int(number):
        raise InputError(f"{flag} {value}: must be a whole number")
    return int(number)


# --- planning


@dataclass(frozen=True)
class SweepItem:
    gen_id: str
    model: str
    controller: str
    budget: int
    question: Question
    sample_idx: int
    seed: int


def sweep_key(run_id: str, model: str, controller: str, budget: int, question_id: str, sample_idx: int) -> str:
    """The stable key of one generation of a run: 32 hex digits, the first 12 shared by the whole
    run (the store skips other runs' row groups by key range, as it does for time-ordered ids)."""
    run_part = hashlib.sha256(run_id.encode()).hexdigest()[:12]
    item = "\x1f".join((model, controller, str(budget), question_id, str(sample_idx)))
    return run_part + hashlib.sha256(item.encode()).hexdigest()[:20]


def sample_seed(seed: int, question_id: str, sample_idx: int) -> int:
    """One seed per (question, sample), shared by every controller and budget: their samples
    differ by the method, not by luck of the draw (common random numbers)."""
    digest = hashlib.sha256(f"{seed}\x1f{question_id}\x1f{sample_idx}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def plan_items(run_id: str, model: str, request: SweepRequest, questions: Iterable[Question]) -> list[SweepItem]:
    """A model's items, one (controller, budget) group after another, samples side by side.

    Group after group keeps each group's wall time and tokens/s meaningful; samples of one
    prompt together let the engine's prefix cache reuse its prefill.
    """
    questions = list(questions)
    return [
        SweepItem(sweep_key(run_id, model, controller, budget, q.qid, s), model, controller, budget, q, s, sample_seed(request.seed, q.qid, s))
        for controller in request.controllers
        for budget in request.budgets
        for q in questions
        for s in range(request.samples)
    ]


# --- running


@dataclass
class SweepProgress:
    run_id: str
    total: int = 0  # generations the sweep consists of
    stored_before: int = 0  # found in the store when it started (a resumed run)
    done: int = 0  # generated by this invocation and acknowledged by the store
    failed: int = 0
    output_tokens: int = 0
    started_at: float = 0.0
    message: str = ""
    last_error: str | None = None

    @property
    def complete(self) -> int:
        return self.stored_before + self.done

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at if self.started_at else 0.0


@dataclass(frozen=True)
class SweepOutcome:
    run_id: str
    dataset: Dataset
    progress: SweepProgress
    summary: list[dict]
    aborted: str | None = None  # why the sweep stopped before the end


ProgressCallback = Callable[[SweepProgress], None]


async def run_sweep(service, request: SweepRequest, on_progress: ProgressCallback | None = None) -> SweepOutcome:
    """Run (or resume) a sweep with `service` (a `Budgetlab`); return its summary from the store."""
    notify = on_progress or (lambda progress: None)
    dataset = await asyncio.to_thread(
        load_dataset, request.dataset, seed=request.seed, limit=request.limit, question_field=request.question_field,
        answer_field=request.answer_field, skip_bad=request.skip_bad, split=request.split, hub_config=request.hub_config,
        policy=service.dataset_policy,
    )
    specs = [await service.available_model(name) for name in request.models]  # refuse a bad one before any work
    sampling = service.sampling
    run_id = request.run or f"sweep-{dataset.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    await _check_before_a_new_run(service, run_id, specs[0], request, notify)
    await _open_run(service.store, run_id, request, dataset, sampling, [s.name for s in specs])
    progress = SweepProgress(run_id, started_at=time.monotonic())
    with service.store.reader() as cur:
        stored = queries.stored_gen_ids(cur, run_id)
    plans = {spec.name: plan_items(run_id, spec.name, request, dataset.questions) for spec in specs}
    progress.total = sum(len(items) for items in plans.values())
    progress.stored_before = sum(item.gen_id in stored for items in plans.values() for item in items)
    aborted = None
    try:
        for spec in specs:
            pending = [item for item in plans[spec.name] if item.gen_id not in stored]
            if pending:
                aborted = await _run_model(service, spec, request, dataset, sampling, pending, progress, notify)
            if aborted:
                break
    finally:
        await asyncio.wrap_future(service.store.set_run_status(run_id, _run_status(progress, aborted)))
    progress.message = f"{progress.complete}/{progress.total} stored" + (f", {progress.failed} failed" if progress.failed else "")
    notify(progress)
    await asyncio.to_thread(service.store.flush)
    with service.store.reader() as cur:
        summary = run_summary(cur, run_id)
    return SweepOutcome(run_id, dataset, progress, summary, aborted)


def _run_status(progress: SweepProgress, aborted: str | None) -> str:
    if aborted:
        return "failed"
    if progress.complete == progress.total:
        return "finished"
    return "incomplete" if progress.failed else "interrupted"


async def _check_before_a_new_run(service, run_id: str, spec, request: SweepRequest, notify: ProgressCallback) -> None:
    """A new run is stored only once the first model is served and its context holds every budget,
    so a sweep refused for its budgets, or whose engine cannot start, leaves no run behind. (A
    resumed run's row exists already; each model is checked again as its turn comes.)"""
    with service.store.reader() as cur:
        if queries.get_run(cur, run_id) is not None:
            return
    endpoint = await _served(service, spec, lambda message: notify(SweepProgress(run_id, message=message)))
    async with EngineClient(endpoint, timeout_s=service.request_timeout_s) as client:
        check_budgets_fit(await ModelSession.open(client, live=False), request.budgets)


async def _served(service, spec, report: Callable[[str], None]):
    """The endpoint serving `spec`, reporting the engine's state each second while it starts.
    Nothing is reported in the first second: a quick refusal leaves the CLI's stderr to its one line."""
    waiting = asyncio.create_task(service.endpoint_for(spec))
    while not (await asyncio.wait({waiting}, timeout=1.0))[0]:
        report(f"waiting for the engine to serve {spec.name}: {service.engine_status().message}")
    return waiting.result()


async def _open_run(store, run_id: str, request: SweepRequest, dataset: Dataset, sampling: Sampling, models: list[str]) -> None:
    identity = request.identity(dataset, sampling)
    with store.reader() as cur:
        existing = queries.get_run(cur, run_id)
    if existing is not None:
        if existing["kind"] != "sweep":
            raise InputError(f"run {run_id!r} exists and is a {existing['kind']} run, not a sweep: pick another --run name")
        old = existing["config"] or {}
        changed = [key for key, value in identity.items() if old.get(key) != value]
        if changed:
            was = ", ".join(f"{key}={old.get(key)!r}" for key in changed)
            raise InputError(f"run {run_id!r} was made with {was}: resume it with the same options, or pick another --run name")
    config = {**identity, "models": models, "controllers": list(request.controllers), "budgets": list(request.budgets),
              "samples": request.samples, "questions": len(dataset.questions)}
    await asyncio.wrap_future(store.upsert_run(run_id, run_id, "sweep", config, "running"))


async def _run_model(service, spec, request: SweepRequest, dataset: Dataset, sampling: Sampling, pending: list[SweepItem], progress: SweepProgress, notify: ProgressCallback) -> str | None:
    """Generate a model's pending items; return why it stopped early, or None."""
    def waiting(message: str) -> None:
        progress.message = message
        notify(progress)

    endpoint = await _served(service, spec, waiting)
    worker = _ModelWorker(service, spec, request.concurrency, dataset, sampling, progress, notify)
    try:
        await worker.connect(endpoint)
        check_budgets_fit(worker.session, request.budgets)
        progress.message = f"{spec.name}: generating"
        return await worker.run(pending)
    finally:
        await worker.close()


class _ModelWorker:
    """Runs one model's items with bounded concurrency and batches their rows into the store.

    When the engine goes away under it (killed, crashed, a remote one restarting), the items in
    flight are put back, the worker waits for the engine to answer again (the supervisor restarts
    a local one on a new port) and carries on with a new connection: an item is stored once, by
    whichever attempt finishes it.
    """

    def __init__(self, service, spec, concurrency: int, dataset: Dataset, sampling: Sampling, progress: SweepProgress, notify: ProgressCallback) -> None:
        self.service = service
        self.spec = spec
        self.concurrency = concurrency
        self.dataset = dataset
        self.sampling = sampling
        self.progress = progress
        self.notify = notify
        self.max_failure_streak = max(MIN_FAILURE_STREAK, concurrency)
        self.session: ModelSession | None = None
        self.clients: list[EngineClient] = []  # closed at the end: a request in flight may still use an old one
        self.reconnecting = asyncio.Lock()
        self.engine_losses: collections.Counter[str] = collections.Counter()
        self.rows: list[dict] = []
        self.failure_streak = 0
        self.abort_reason: str | None = None

    async def connect(self, endpoint) -> None:
        client = EngineClient(endpoint, timeout_s=self.service.request_timeout_s, max_connections=self.concurrency)
        self.clients.append(client)
        self.session = await ModelSession.open(client, live=False)

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()

    async def run(self, items: list[SweepItem]) -> str | None:
        queue = collections.deque(items)
        workers = [asyncio.create_task(self._work(queue)) for _ in range(min(self.concurrency, len(items)))]
        stop = asyncio.Event()
        # Stopped, not cancelled: cancelling it in the middle of a flush would cancel a batch the
        # writer had not started yet, and its rows would be lost (a row or three, once in a while).
        flusher = asyncio.create_task(self._flush_periodically(stop))
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            stop.set()
            await asyncio.gather(flusher, return_exceptions=True)
            await self._flush()  # what finished before an interruption is kept
        return self.abort_reason

    async def _work(self, queue: collections.deque[SweepItem]) -> None:
        while queue and self.abort_reason is None:
            item = queue.popleft()
            session = self.session
            try:
                row = await self._generate(item, session)
            except EngineUnavailable as exc:
                if await self._engine_back(item, session, str(exc)):
                    queue.appendleft(item)  # generated again, on the engine that is back
                    continue
                self._failed(str(exc))
            except (BudgetError, EngineRequestError, InputError) as exc:
                self._failed(str(exc))
            except Exception as exc:  # one item must never take the sweep down
                self._failed(f"{type(exc).__name__}: {exc}")
            else:
                # Appended only now: the flusher swaps self.rows while generations are awaited.
                self.rows.append(row)
                self.failure_streak = 0
                self.progress.output_tokens += row["total_tokens"]
            self.notify(self.progress)

    async def _engine_back(self, item: SweepItem, session: ModelSession, why: str) -> bool:
        """After `item` lost the engine: True once it answers again and the item may be retried."""
        self.engine_losses[item.gen_id] += 1
        if self.engine_losses[item.gen_id] > ENGINE_LOSS_RETRIES:
            return False
        async with self.reconnecting:
            if self.session is not session:
                return True  # another item already reconnected
            self.progress.message = f"{self.spec.name}: lost the engine ({why}); waiting for it to come back"
            self.notify(self.progress)
            try:
                endpoint = await self.service.recover_endpoint(self.spec, session.client.endpoint)
                if endpoint != session.client.endpoint:
                    await self.connect(endpoint)
            except EngineUnavailable as exc:
                self.abort_reason = f"lost the engine and it did not come back: {exc}"
                return False
            self.progress.message = f"{self.spec.name}: generating (the engine is back)"
            return True

    def _failed(self, message: str) -> None:
        self.progress.failed += 1
        self.progress.last_error = message
        self.failure_streak += 1
        if self.failure_streak >= self.max_failure_streak:
            self.abort_reason = f"{self.failure_streak} generations failed in a row, the last with: {message}"

    async def _generate(self, item: SweepItem, session: ModelSession) -> dict:
        live = LiveGeneration(controller=item.controller, budget=item.budget)
        sampling = replace(self.sampling, seed=item.seed)
        controller = make_controller(item.controller, self.service.controller_config)
        await controller.run(session, item.question.question, item.budget, sampling, live)
        live.ttft_s = None  # not streamed: the first token's time is not observed
        finished_at = utc_now()
        result = await asyncio.to_thread(grade, live.answer_text, item.question.gold, live.full_text, self.service.grade_timeout_s)
        live.extracted_answer, live.correct = result.extracted, result.correct
        return sweep_row(item, live, self.progress.run_id, self.dataset.name, sampling, finished_at)

    async def _flush_periodically(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), FLUSH_EVERY_S)
            except asyncio.TimeoutError:
                pass
            await self._flush()

    async def _flush(self) -> None:
        """Store the finished rows; only then do they count as done (what a progress bar shows is stored)."""
        rows, self.rows = self.rows, []
        if not rows:
            return
        try:
            # Shielded: even if this task is cancelled (asyncio.run's cleanup after Ctrl-C), the
            # batch stays queued with the writer, which stores it before the store closes.
            await asyncio.shield(asyncio.wrap_future(self.service.store.insert_generations(rows)))
        except Exception as exc:  # noqa: BLE001 - the periodic flusher's errors would otherwise vanish with its task
            # Not stored, so not done: counted as failed, and the same run name generates them again.
            self.progress.output_tokens -= sum(row["total_tokens"] or 0 for row in rows)
            for _ in rows:
                self._failed(f"storing the batch failed: {type(exc).__name__}: {exc}")
        else:
            self.progress.done += len(rows)
        self.notify(self.progress)


def sweep_row(item: SweepItem, live: LiveGeneration, run_id: str, dataset: str, sampling: Sampling, finished_at: dt.datetime) -> dict:
    return {
        "gen_id": item.gen_id,
        "run_id": run_id,
        "created_at": finished_at,  # when generation ended: the summary's busy time relies on it
        "model": item.model,
        "controller": item.controller,
        "budget": item.budget,
        "dataset": dataset,
        "question_id": item.question.qid,
        "question": item.question.question,
        "gold": item.question.gold,
        "sample_idx": item.sample_idx,
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
