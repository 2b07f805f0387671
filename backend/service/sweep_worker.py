"""Runs one model's share of a sweep: bounded concurrency, engine losses ridden out, rows batched into the store.

`ModelWorker` keeps ``concurrency`` generations in flight (vLLM batches them), stores finished
rows every ``FLUSH_EVERY_S`` (what the progress shows as done is stored), puts the items in
flight back when the engine goes away and carries on once it answers again, and gives up after a
long streak of failures.

A parallel item (``maj4:l1_exact``) is K jobs, one per sample, each holding one slot like any
generation: a slow sample never keeps the slots of its finished siblings idle. The group is
graded and its K rows queued together when its last sample ends, so it is stored whole.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from backend.controllers.chat_session import ChatSession
from backend.controllers.live import LiveGeneration
from backend.controllers.registry import make_controller
from backend.controllers.session import BudgetError, ModelSession
from backend.errors import InputError
from backend.evaluation.datasets import Dataset
from backend.service.records import generation_rows, settle
from backend.service.sweep_plan import SweepItem, SweepProgress
from backend.service.verifying import with_verifier
from backend.serving.client import EngineRequestError
from backend.serving.engine import EngineUnavailable
from backend.serving.sampling import Sampling
from store.schema import utc_now

# Rows wait this long at most before going to the store, so an interruption loses little.
FLUSH_EVERY_S = 0.5
# A run of this many failures in a row, with nothing succeeding, means the engine or the
# dataset is broken for good: stop instead of failing every remaining item one by one.
MIN_FAILURE_STREAK = 32
# Times one item is put back after the engine went away under it, before it counts as failed.
ENGINE_LOSS_RETRIES = 3


ProgressCallback = Callable[[SweepProgress], None]


@dataclass(frozen=True)
class Job:
    """One slot's work: a whole item, or one sample (`sample`) of a parallel item."""

    item: SweepItem
    sample: int | None = None

    @property
    def key(self) -> str:
        return self.item.gen_id if self.sample is None else f"{self.item.gen_id}#{self.sample}"


@dataclass
class _Group:
    """A parallel item while its samples run as separate jobs."""

    controller: object  # a controller whose answer is K samples run as jobs of their own (`Controller.sample_jobs`)
    live: LiveGeneration
    samplings: list[Sampling] = field(default_factory=list)
    left: int = 0
    failed: bool = False


class ModelWorker:
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
        self.session: ModelSession | ChatSession | None = None
        self.sessions: list[ModelSession | ChatSession] = []  # closed at the end: a request in flight may still use an old one
        self.reconnecting = asyncio.Lock()
        self.engine_losses: collections.Counter[str] = collections.Counter()
        self.rows: list[dict] = []
        self.groups: dict[str, _Group] = {}
        self.failure_streak = 0
        self.abort_reason: str | None = None
        self.verifiers: dict[str, object] = {}  # by name, held by the caller for the run (backend.service.verifying)

    async def connect(self, endpoint) -> None:
        self.session = await self.service.open_session(self.spec, endpoint, live=False, max_connections=self.concurrency,
                                                       need_tokenizer=bool(self.verifiers))
        self.sessions.append(self.session)

    async def close(self) -> None:
        for session in self.sessions:
            await session.aclose()

    async def run(self, items: list[SweepItem]) -> str | None:
        queue = collections.deque(self._jobs(items))
        workers = [asyncio.create_task(self._work(queue)) for _ in range(min(self.concurrency, len(queue)))]
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

    def _jobs(self, items: list[SweepItem]) -> list[Job]:
        jobs = []
        for item in items:
            controller = self._controller(item.controller)
            jobs += [Job(item, j) for j in range(controller.sample_jobs)] if controller.sample_jobs > 1 else [Job(item)]
        return jobs

    async def _work(self, queue: collections.deque[Job]) -> None:
        while queue and self.abort_reason is None:
            job = queue.popleft()
            group = self.groups.get(job.item.gen_id)
            if group is not None and group.failed:
                continue  # a sibling failed: the group is failed once, its other samples are not run
            session = self.session
            try:
                rows = await (self._generate(job.item, session) if job.sample is None else self._generate_sample(job, session))
            except EngineUnavailable as exc:
                if await self._engine_back(job, session, str(exc)):
                    queue.appendleft(job)  # generated again, on the engine that is back
                    continue
                self._job_failed(job, str(exc))
            except (BudgetError, EngineRequestError, InputError) as exc:
                self._job_failed(job, str(exc))
            except Exception as exc:  # one item must never take the sweep down
                self._job_failed(job, f"{type(exc).__name__}: {exc}")
            else:
                # Appended only now: the flusher swaps self.rows while generations are awaited. A
                # parallel group's rows go in together, so one batch stores the group whole.
                self.rows.extend(rows)
                if rows or job.sample is None:
                    self.failure_streak = 0
                self.progress.output_tokens += sum(row["total_tokens"] for row in rows)
            self.notify(self.progress)

    async def _engine_back(self, job: Job, session: ModelSession, why: str) -> bool:
        """After `job` lost the engine: True once it answers again and the job may be retried."""
        self.engine_losses[job.key] += 1
        if self.engine_losses[job.key] > ENGINE_LOSS_RETRIES:
            return False
        async with self.reconnecting:
            if self.session is not session:
                return True  # another item already reconnected
            self.progress.message = f"{self.spec.name}: lost the engine ({why}); waiting for it to come back"
            self.notify(self.progress)
            try:
                endpoint = await self.service.recover_endpoint(self.spec, session.client.endpoint)
                restarted = endpoint != session.client.endpoint  # a restarted engine has a new port and key
                if restarted:
                    await self.connect(endpoint)
            except EngineUnavailable as exc:
                self.abort_reason = f"lost the engine and it did not come back: {exc}"
                return False
            # Say what happened: a restart only when there was one (the same server may just have dropped a connection).
            self.progress.message = (f"{self.spec.name}: generating (the engine was restarted; the requests it lost are sent again)" if restarted
                                     else f"{self.spec.name}: generating (a request lost its connection and is sent again: {why})")
            return True

    def _job_failed(self, job: Job, message: str) -> None:
        if job.sample is not None:
            group = self.groups.get(job.item.gen_id)
            if group is not None:
                if group.failed:
                    return  # counted when its first sample failed
                group.failed = True
        self._failed(message)

    def _failed(self, message: str) -> None:
        self.progress.failed += 1
        self.progress.last_error = message
        self.failure_streak += 1
        if self.failure_streak >= self.max_failure_streak:
            self.abort_reason = f"{self.failure_streak} generations failed in a row, the last with: {message}"

    def _controller(self, name: str):
        return with_verifier(make_controller(name, self.service.controller_config), self.verifiers)

    async def _generate(self, item: SweepItem, session: ModelSession) -> list[dict]:
        controller = self._controller(item.controller)
        live = LiveGeneration(controller=item.controller, budget=item.budget, budget_kind=controller.budget_kind)
        await controller.run(session, item.question.question, item.budget, replace(self.sampling, seed=item.seed), live)
        return await self._rows(item, live)

    async def _generate_sample(self, job: Job, session: ModelSession) -> list[dict]:
        """One sample of a parallel item; the group's rows when it was the last one, else none yet."""
        item = job.item
        group = self.groups.get(item.gen_id)
        if group is None:
            controller = self._controller(item.controller)
            live = LiveGeneration(controller=item.controller, budget=item.budget, budget_kind=controller.budget_kind)
            group = self.groups[item.gen_id] = _Group(controller, live, left=controller.sample_jobs)
            group.samplings = controller.open_group(live, item.budget, replace(self.sampling, seed=item.seed))
        await group.controller.run_sample(session, item.question.question, group.live, job.sample, group.samplings[job.sample])
        group.left -= 1
        if group.left:
            return []
        del self.groups[item.gen_id]
        if group.failed:
            return []
        await group.controller.finish_group(session, item.question.question, group.live)
        return await self._rows(item, group.live)

    async def _rows(self, item: SweepItem, live: LiveGeneration) -> list[dict]:
        """A finished item graded (a group's answer chosen) and made into its rows."""
        sampling = replace(self.sampling, seed=item.seed)
        for one in [live, *live.samples]:
            one.ttft_s = None  # not streamed: the first token's time is not observed
        finished_at = utc_now()
        await settle(live, item.question.gold, self.service.grade_timeout_s, item.question.question)
        q = item.question
        return generation_rows(live, gen_id=item.gen_id, run_id=self.progress.run_id, created_at=finished_at, model=item.model,
                              question=q.question, gold=q.gold, sampling=sampling, dataset=self.dataset.name, question_id=q.qid,
                              sample_idx=item.sample_idx)

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
            for _ in range(_items(rows)):
                self._failed(f"storing the batch failed: {type(exc).__name__}: {exc}")
        else:
            self.progress.done += _items(rows)
        self.notify(self.progress)


def _items(rows: list[dict]) -> int:
    """How many sweep items these rows are: a parallel group's samples are one item."""
    return sum(1 for row in rows if not row.get("group_idx"))
