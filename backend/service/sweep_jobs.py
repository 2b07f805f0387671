"""A sweep as a job: the checks made before one is scheduled, and the runner the job calls back.

Every sweep of the dashboard (the Sweep tab, its preset, the first-run figures, the ``/sweep`` API)
runs as a job of `backend.jobs.sweeps`, inside the app, so that it outlives the page that started
it. The job keeps its requests as JSON; what it runs is `run_sweep_payload`, which the app factory
binds to the service. A request is checked first (`checked_sweep`: its models exist, its dataset
opens) so that a bad one is refused on the spot and leaves no job behind; checks that need the
engine (do the budgets fit its context) come when the job runs, and a refusal then is the job's error.

    request = await checked_sweep(service, request)          # the run name fixed: a job resumes by it
    job_id = jobs.sweeps.submit(SweepSubmission("my sweep", (request.to_json(),)))
    # ... the job thread: outcome = await run_sweep_payload(service, payload, report)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from backend.service.sweep import default_run_name, load_sweep_dataset, run_sweep
from backend.service.sweep_plan import SweepRequest
from backend.service.verifying import canonical_controllers, check_verifiers


async def checked_sweep(service, request: SweepRequest) -> SweepRequest:
    """`request` with its run name fixed, once its models are known and its dataset opens; InputError (or
    UnknownModelError) otherwise."""
    request = dataclasses.replace(request, controllers=canonical_controllers(request.controllers, service.controller_config))
    await check_verifiers(service, request.controllers)
    dataset = await load_sweep_dataset(service, request)
    for name in request.models:
        await service.available_model(name)
    return dataclasses.replace(request, run=request.run or default_run_name(dataset))


async def run_sweep_payload(service, payload: dict, report: Callable[[dict], None]) -> dict:
    """Run one request of a sweep job (a `SweepRequest` as JSON), reporting its progress as JSON; the outcome as JSON."""
    outcome = await run_sweep(service, SweepRequest.from_json(payload), on_progress=lambda progress: report(progress.to_json()))
    return {**outcome.progress.to_json(), "aborted": outcome.aborted, "dataset": outcome.dataset.name,
            "questions": len(outcome.dataset.questions), "skipped": len(outcome.dataset.skipped)}
