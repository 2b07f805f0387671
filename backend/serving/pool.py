"""The engine pool: one vLLM server per (model, role), started on demand and shared by everyone.

Every viewer, sweep and API call asks the pool for a *lease* on the model it needs. The pool
serves each (model, role) with one engine (`LocalEngine`, or a `ReplicaSet` behind vllm-router
when the model has replicas), started the first time it is asked for and kept while memory
allows, so two models sit side by side and no viewer restarts another's engine.

Memory is a budget, measured rather than guessed: on a CPU machine the engines' resident memory
(their process groups' PSS, read from /proc) may add up to ``memory_gib``; before a model has run
here its need is estimated as KV cache + weights + a server's own overhead (measured on this
machine, `SERVER_OVERHEAD_GIB`), afterwards the largest footprint it was seen with. On a GPU the
engines' ``gpu_memory_utilization`` shares may add up to ``gpu_share``. When a model does not fit,
the least recently used engine that nobody holds a lease on is stopped. An engine with a lease is
never stopped for another model: the newcomer waits, and its status says what for ("waiting for
memory: 2 engines busy (l1-tiny: 3 viewers, tiny-r1-base: sweep)"); after the start timeout it
is refused with that reason. One engine is always allowed, whatever the budget.

    pool = EnginePool(EngineConfig(), PoolConfig(memory_gib=8), log_dir=Path("data"), base_env=os.environ)
    with pool.lease(spec, "viewer") as endpoint:       # blocks while it starts or waits for memory
        ...                                            # the engine is not stopped while held
    pool.views()                                       # one EngineView per engine, for the status line
"""

from __future__ import annotations

import collections
import contextlib
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from backend.config import setting
from backend.serving.engine import Endpoint, EngineConfig, EngineStatus, EngineUnavailable, State
from backend.serving.local import GENERATE, ROLES, STOP_GRACE_S, LocalEngine
from backend.serving.registry import ModelSpec
from backend.serving.replicas import ROUTER_POLICIES, ReplicaSet

# What a CPU vLLM server holds besides its KV cache and weights (Python, torch, the API server,
# the engine core and its worker), measured here: PSS of a ready l1-tiny engine with 1 GiB of KV
# cache, 2.44 GiB (README, "Several engines"). Used only until a model's own footprint is seen.
SERVER_OVERHEAD_GIB = 1.45
HOLDERS = ("viewer", "sweep", "request")  # who holds a lease, as the waiting message counts them


@dataclass(frozen=True)
class PoolConfig:
    """How many engines the app may keep at once; each field is also a setting (``engines_`` + its name)."""

    memory_gib: float = setting(0.0, "CPU: GiB of RAM the app's engines may hold together (KV cache, weights and server processes, "
                                     "as measured); a model that does not fit stops the least recently used idle engine, or waits. "
                                     "0: half of this machine's memory. One engine is always allowed.")
    gpu_share: float = setting(0.9, "GPU: the most the engines' gpu_memory_utilization shares may add up to (two engines at 0.4 fit, "
                                    "one at the default 0.85 holds the GPU alone).")
    replicas: str = setting("", "Models served by several replicas behind vllm-router, as NAME=K pairs separated by commas "
                                "(e.g. 'l1-tiny=2'); on a GPU machine each replica gets its own GPU.")
    router_policy: str = setting("round_robin", f"vllm-router's policy for replicated models: {', '.join(ROUTER_POLICIES)}.")

    def __post_init__(self) -> None:
        if self.memory_gib < 0:
            raise ValueError(f"memory_gib {self.memory_gib}: must be 0 (half of this machine's memory) or more")
        if not 0.0 < self.gpu_share <= 1.0:
            raise ValueError(f"gpu_share {self.gpu_share}: must be in (0, 1]")
        if self.router_policy not in ROUTER_POLICIES:
            raise ValueError(f"router_policy {self.router_policy!r}: choose one of {', '.join(ROUTER_POLICIES)}")
        self.replica_counts()  # refuse a malformed list at start

    def replica_counts(self) -> dict[str, int]:
        counts = {}
        for pair in filter(None, (p.strip() for p in self.replicas.split(","))):
            name, sep, k = pair.rpartition("=")
            if not sep or not name.strip() or not k.strip().isdigit() or int(k) < 1:
                raise ValueError(f"replicas {pair!r}: write NAME=K with K a whole number of replicas, 1 or more (e.g. 'l1-tiny=2')")
            counts[name.strip()] = int(k)
        return counts


@dataclass(frozen=True)
class EngineView:
    """One engine as the status line shows it."""

    model: str
    role: str
    state: State
    message: str
    memory_gib: float  # resident now (CPU), 0 before it has started
    holders: dict[str, int]
    replicas: int = 1
    restarts: int = 0


@dataclass
class _Member:
    spec: ModelSpec
    role: str
    engine: LocalEngine | ReplicaSet
    owned: bool  # False: an engine the pool was handed (the tests' shared one): never stopped by it
    need_gib: float  # what it is counted as holding before it is measured ready
    holders: collections.Counter = field(default_factory=collections.Counter)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def busy(self) -> bool:
        return sum(self.holders.values()) > 0


class EnginePool:
    """The app's local engines, one per (model, role), within a memory budget; see the module docstring."""

    def __init__(self, config: EngineConfig, pool: PoolConfig, log_dir: Path, base_env: Mapping[str, str],
                 adopted: tuple[LocalEngine, ...] = ()) -> None:
        """`adopted`: engines started by someone else (the tests' shared engine), used for the model
        they serve and never stopped by the pool."""
        self.config = config.resolved()
        self.pool = pool
        self.log_dir = log_dir
        self._base_env = dict(base_env)
        self._replicas = pool.replica_counts()
        self._members: dict[tuple[str, str], _Member] = {}
        self._seen_gib: dict[str, float] = {}  # the largest footprint each model was measured with
        self._waiting: dict[tuple[str, str], str] = {}  # why a model's lease is waiting
        self._stopping: list[_Member] = []  # being stopped to make room: still counted until gone
        self._changed = threading.Condition(threading.RLock())
        for engine in adopted:
            status = engine.status()
            spec = engine.spec
            if spec is not None and status.model == spec.name:
                self._members[(spec.name, engine.role)] = _Member(spec, engine.role, engine, False, self._estimate(spec))

    # --- budget
    @property
    def budget(self) -> float:
        """GiB of RAM (CPU) or the GPU share (GPU) all engines together may hold."""
        if self.config.device == "gpu":
            return self.pool.gpu_share
        return self.pool.memory_gib or _machine_gib() / 2

    def _estimate(self, spec: ModelSpec) -> float:
        k = self._replicas.get(spec.name, 1)
        if self.config.device == "gpu":
            return self.config.gpu_memory_utilization
        if spec.name in self._seen_gib:
            return self._seen_gib[spec.name]
        return k * (self.config.kv_cache_gib + _weights_gib(spec) + SERVER_OVERHEAD_GIB)

    def _held_gib(self, member: _Member) -> float:
        if self.config.device == "gpu":
            return self.config.gpu_memory_utilization
        resident = member.engine.resident_gib()
        if member.engine.status().ready and resident > 0:
            self._seen_gib[member.spec.name] = max(resident, self._seen_gib.get(member.spec.name, 0.0))
            return resident
        return max(resident, member.need_gib)

    # --- leases
    @contextlib.contextmanager
    def lease(self, spec: ModelSpec, holder: str, role: str = GENERATE, timeout_s: float | None = None) -> Iterator[Endpoint]:
        """The endpoint serving `spec` in `role`, held (not stopped for another model) until the block ends."""
        endpoint = self.acquire(spec, holder, role, timeout_s)
        try:
            yield endpoint
        finally:
            self.release(spec, holder, role)

    def acquire(self, spec: ModelSpec, holder: str, role: str = GENERATE, timeout_s: float | None = None) -> Endpoint:
        """Take a lease on `spec` in `role` (start it, or wait for memory) and wait until it serves.
        Every successful call is matched by one `release`. Raises EngineUnavailable with the reason."""
        if holder not in HOLDERS:
            raise ValueError(f"holder {holder!r}: one of {', '.join(HOLDERS)}")
        if role not in ROLES:
            raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
        timeout_s = self.config.start_timeout_s if timeout_s is None else timeout_s
        member = self._admit(spec, role, holder, timeout_s)
        try:
            status = member.engine.status()
            if status.state in (State.FAILED, State.STOPPED):
                member.engine.start(spec)  # a failed engine is tried again when someone asks for it
            return member.engine.wait_ready(spec.name, timeout_s + STOP_GRACE_S)
        except BaseException:
            self.release(spec, holder, role)
            raise

    def release(self, spec: ModelSpec, holder: str, role: str = GENERATE) -> None:
        with self._changed:
            member = self._members.get((spec.name, role))
            if member is not None and member.holders[holder] > 0:
                member.holders[holder] -= 1
                member.last_used = time.monotonic()
            self._changed.notify_all()

    def _admit(self, spec: ModelSpec, role: str, holder: str, timeout_s: float) -> _Member:
        """The member for (spec, role) with one more `holder`, started once room is made for it
        (waiting up to `timeout_s` for an engine in use to become idle)."""
        key = (spec.name, role)
        deadline = time.monotonic() + timeout_s
        while True:
            with self._changed:
                member = self._members.get(key)
                if member is not None and member.spec != spec and not member.busy and member.owned:
                    victims = [member]  # the folder was retrained in place: a new engine for it (never an adopted one)
                elif member is not None:
                    member.holders[holder] += 1
                    member.last_used = time.monotonic()
                    self._waiting.pop(key, None)
                    return member
                else:
                    victims = self._room_for(spec)
                    if victims == []:
                        member = self._launch(spec, role)
                        member.holders[holder] += 1
                        self._waiting.pop(key, None)
                        return member
                if victims is None:
                    self._waiting[key] = self._waiting_message()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        why = self._waiting.pop(key)
                        raise EngineUnavailable(f"{spec.name}: refused after {timeout_s:.0f} s {why}; "
                                                "try again when one of them is idle, or raise engines_memory_gib")
                    self._changed.wait(min(remaining, 1.0))
                    continue
                for victim in victims:
                    self._members.pop((victim.spec.name, victim.role), None)
                    self._stopping.append(victim)
                self._waiting[key] = f"stopping {', '.join(v.spec.name for v in victims)} (idle) to make room"
            self._stop_outside_lock(victims)

    def _stop_outside_lock(self, members: list[_Member]) -> None:
        """Stop members already moved to `_stopping` (still counted there until gone). Called without the
        lock: a stop takes up to STOP_GRACE_S, and nobody else should wait on it."""
        for member in members:
            try:
                member.engine.stop()
            finally:
                with self._changed:
                    self._stopping.remove(member)
                    self._changed.notify_all()

    def _room_for(self, spec: ModelSpec) -> list[_Member] | None:
        """The idle engines to stop (least recently used first) so that `spec` fits; None if it cannot fit now."""
        need = self._estimate(spec)
        held = {key: self._held_gib(m) for key, m in self._members.items()}
        free = self.budget - sum(held.values()) - sum(self._held_gib(m) for m in self._stopping)
        victims = []
        idle = sorted((m for m in self._members.values() if not m.busy and m.owned), key=lambda m: m.last_used)
        while free < need and idle:
            victim = idle.pop(0)
            victims.append(victim)
            free += held[(victim.spec.name, victim.role)]
        if free >= need or (len(victims) == len(self._members) and not self._stopping):
            return victims  # it fits, or it will be the only engine (one is always allowed)
        return None

    def _launch(self, spec: ModelSpec, role: str) -> _Member:
        log_name = "engine-" + re.sub(r"[^\w.-]+", "_", spec.name) + ("" if role == GENERATE else f"-{role}")
        k = self._replicas.get(spec.name, 1)
        if k > 1 and role == GENERATE:
            engine = ReplicaSet(self.config, k, self.log_dir, self._base_env, policy=self.pool.router_policy, log_name=log_name)
        else:
            engine = LocalEngine(self.config, self.log_dir, self._base_env, log_name=log_name + ".log", role=role)
        member = _Member(spec, role, engine, True, self._estimate(spec))
        self._members[(spec.name, role)] = member
        engine.start(spec)
        return member

    def _waiting_message(self) -> str:
        busy = [m for m in self._members.values() if m.busy]
        parts = ", ".join(f"{m.spec.name}: {_holders_text(m.holders)}" for m in busy)
        return f"waiting for memory: {len(busy)} engine{'s' if len(busy) != 1 else ''} busy ({parts})"

    # --- what the service and the status line ask
    def start(self, spec: ModelSpec, role: str = GENERATE) -> None:
        """Start serving `spec` in the background (the default model at launch); no lease is held."""
        self._admit(spec, role, "request", self.config.start_timeout_s)
        self.release(spec, "request", role)

    def ensure(self, spec: ModelSpec, timeout_s: float | None = None, role: str = GENERATE) -> Endpoint:
        """Serve `spec` and wait until it is ready, without holding it (a script's warm-up)."""
        with self.lease(spec, "request", role, timeout_s) as endpoint:
            return endpoint

    def recover(self, spec: ModelSpec, lost: Endpoint, role: str = GENERATE) -> Endpoint:
        member = self._members.get((spec.name, role))
        if member is None:
            raise EngineUnavailable(f"{spec.name}: its engine was stopped")
        return member.engine.recover(spec, lost)

    def describe(self, name: str, role: str = GENERATE) -> str:
        """What `name`'s engine is doing now, or why a lease on it waits."""
        with self._changed:
            why = self._waiting.get((name, role))
            member = self._members.get((name, role))
        if why:
            return why
        return member.engine.status().message if member else f"{name}: queued"

    def stop_model(self, name: str, role: str = GENERATE) -> bool:
        """Stop `name`'s engine if nobody holds it (True when it was stopped); an engine in use is left alone."""
        with self._changed:
            member = self._members.get((name, role))
            if member is None or member.busy or not member.owned:
                return False
            self._members.pop((name, role))
            self._stopping.append(member)
        self._stop_outside_lock([member])
        return True

    def engine_of(self, name: str, role: str = GENERATE) -> LocalEngine | ReplicaSet | None:
        member = self._members.get((name, role))
        return member.engine if member else None

    def views(self) -> list[EngineView]:
        with self._changed:
            members = list(self._members.values())
            waiting = dict(self._waiting)
        views = [EngineView(m.spec.name, m.role, m.engine.status().state, m.engine.status().message, round(m.engine.resident_gib(), 2),
                            {h: n for h, n in m.holders.items() if n}, len(getattr(m.engine, "replicas", [m.engine])),
                            m.engine.status().restarts)
                 for m in members]
        views += [EngineView(name, role, State.STARTING, why, 0.0, {}) for (name, role), why in waiting.items()]
        return views

    def status(self) -> EngineStatus:
        """All engines as one status: ready when every engine is, with one line per engine."""
        views = self.views()
        if not views:
            return EngineStatus(State.STOPPED, None, "no engine running: one starts when a model is asked for")
        order = (State.FAILED, State.STARTING, State.STOPPED, State.READY)
        state = min((v.state for v in views), key=order.index)
        lines = [f"{v.model}{'' if v.role == GENERATE else f' ({v.role})'}: {v.state.value}, {v.message.splitlines()[0]}"
                 + (f", {v.memory_gib:.1f} GiB" if v.memory_gib else "") for v in views]
        first = next((v for v in views if v.state is state), views[0])
        return EngineStatus(state, ", ".join(v.model for v in views), "; ".join(lines), restarts=first.restarts)

    def stop(self) -> None:
        with self._changed:
            members = list(self._members.values())
            self._members.clear()
        for member in members:
            if member.owned:
                member.engine.stop()


def _holders_text(holders: Mapping[str, int]) -> str:
    parts = []
    for holder in HOLDERS:
        n = holders.get(holder, 0)
        if n:
            parts.append(holder if n == 1 and holder == "sweep" else f"{n} {holder}{'s' if n > 1 else ''}")
    return ", ".join(parts)


def _weights_gib(spec: ModelSpec) -> float:
    if not spec.is_local:
        return 0.0
    return sum(f.stat().st_size for f in Path(spec.source).glob("*.safetensors")) / 2**30


def _machine_gib() -> float:
    try:
        text = Path("/proc/meminfo").read_text()
        return int(re.search(r"^MemTotal:\s+(\d+) kB", text, re.M).group(1)) / 2**20
    except (OSError, AttributeError):
        return 16.0
