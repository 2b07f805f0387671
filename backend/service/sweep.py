"""Evaluation sweeps: every (model, controller, budget, question, sample) of a dataset, stored.

The L1 paper's protocol as one call: each generation runs through the same controllers as the
comparison view, is graded, and lands in the store under a stable key, so a sweep that crashed
or was interrupted resumes where it stopped and never stores a generation twice. All requests
go to the engine at once, bounded by ``concurrency``, so that vLLM's continuous batching and
prefix caching do the work; a multi-turn s1 generation holds one slot, never the whole sweep.

    request = parse_sweep_request(models="l1-tiny", dataset="arith", controllers="l1_exact,s1",
                                  budgets="64,128", samples=4, limit=20)
    outcome = await run_sweep(service, request, on_progress=print)
    outcome.summary   # one dict per (model, controller, budget): see store/summary.py, flagged
                      # where its budget lies outside the model's trained range (service/trained_range.py)

``python app.py sweep`` is the command line for it and the Sweep tab the form; both call it
through `Budgetlab.sweep`. The request and its plan are in `sweep_plan`, the per-model runner in
`sweep_worker`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, replace

from backend.errors import InputError
from backend.evaluation.datasets import Dataset, load_dataset
from backend.service.compare import check_budgets_fit, check_supported
from backend.service.pairing import assign
from backend.service.sweep_plan import SweepItem, SweepProgress, SweepRequest, plan_items
from backend.service.sweep_worker import ModelWorker, ProgressCallback
from backend.service.trained_range import flag_rows
from backend.service.verifying import canonical_controllers, check_verifiers, held_verifiers
from backend.serving.sampling import Sampling
from store import queries
from store.summary import run_summary


@dataclass(frozen=True)
class SweepOutcome:
    run_id: str
    dataset: Dataset
    progress: SweepProgress
    summary: list[dict]
    aborted: str | None = None  # why the sweep stopped before the end


async def run_sweep(service, request: SweepRequest, on_progress: ProgressCallback | None = None) -> SweepOutcome:
    """Run (or resume) a sweep with `service` (a `Budgetlab`); return its summary from the store."""
    notify = on_progress or (lambda progress: None)
    request = replace(request, controllers=canonical_controllers(request.controllers, service.controller_config))
    await check_verifiers(service, request.controllers)
    dataset = await load_sweep_dataset(service, request)
    specs = [await service.available_model(name) for name in request.models]  # refuse a bad one before any work
    sampling = service.sampling
    run_id = request.run or default_run_name(dataset)
    on = assign(request.controllers, specs, request.each_on_its_model)  # each model's controllers
    await _check_before_a_new_run(service, run_id, specs[0], on[specs[0].name], request, notify)
    await _open_run(service.store, run_id, request, dataset, sampling, [s.name for s in specs])
    progress = SweepProgress(run_id, started_at=time.monotonic())
    with service.store.reader() as cur:
        stored = queries.stored_gen_ids(cur, run_id)
    plans = {spec.name: plan_items(run_id, spec.name, request, dataset.questions, on[spec.name]) for spec in specs}
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
    return SweepOutcome(run_id, dataset, progress, flag_rows(summary, service.trained_range_of), aborted)


async def load_sweep_dataset(service, request: SweepRequest) -> Dataset:
    """The request's questions, read under the service's dataset policy (off the event loop: a file may be large)."""
    return await asyncio.to_thread(
        load_dataset, request.dataset, seed=request.seed, limit=request.limit, question_field=request.question_field,
        answer_field=request.answer_field, skip_bad=request.skip_bad, split=request.split, hub_config=request.hub_config,
        policy=service.dataset_policy,
    )


def default_run_name(dataset: Dataset) -> str:
    return f"sweep-{dataset.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"


def _run_status(progress: SweepProgress, aborted: str | None) -> str:
    if aborted:
        return "failed"
    if progress.complete == progress.total:
        return "finished"
    return "incomplete" if progress.failed else "interrupted"


async def _check_before_a_new_run(service, run_id: str, spec, controllers, request: SweepRequest, notify: ProgressCallback) -> None:
    """A new run is stored only once the first model is served and its context holds every budget,
    so a sweep refused for its budgets, or whose engine cannot start, leaves no run behind. (A
    resumed run's row exists already; each model is checked again as its turn comes.)"""
    with service.store.reader() as cur:
        if queries.get_run(cur, run_id) is not None:
            return
    async with service.hold(spec, "sweep", lambda message: notify(SweepProgress(run_id, message=f"waiting for {spec.name}: {message}"))) as endpoint:
        session = await service.open_session(spec, endpoint, live=False)
        try:
            check_budgets_fit(session, request.budgets, controllers)
            await check_supported(session, controllers, service.controller_config)
        finally:
            await session.aclose()


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

    async with service.hold(spec, "sweep", lambda message: waiting(f"waiting for {spec.name}: {message}")) as endpoint:
        worker = ModelWorker(service, spec, request.concurrency or service.sweep_concurrency, dataset, sampling, progress, notify)
        controllers = sorted({item.controller for item in pending})
        try:
            async with held_verifiers(service, controllers, "sweep") as worker.verifiers:
                await worker.connect(endpoint)
                check_budgets_fit(worker.session, request.budgets, controllers)
                await check_supported(worker.session, controllers, service.controller_config)
                progress.message = f"{spec.name}: generating"
                return await worker.run(pending)
        finally:
            await worker.close()
