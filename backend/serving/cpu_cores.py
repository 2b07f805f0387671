"""Which CPU cores each local engine's worker runs on, when several engines run at once.

vLLM's CPU worker pins its OpenMP threads to cores (``VLLM_CPU_OMP_THREADS_BIND``). Left to itself
("auto") every engine picks the same ones: all cores but the last, which it keeps for the
schedulers. So two engines at once (a policy and its process reward model, replicas behind the
router, two models side by side) share one core on a 2-core machine while the other serves only
the engines' busy-polling schedulers. Measured in sweep search-eq: the PRM's worker, pinned to the
core of a busy policy, ran one batch per 5-10 s (86 requests waiting, none running).

`CorePlacer` gives each engine this process starts the cores the others leave free: the first
gets all but the last core (as vLLM would), the next the free ones, and, when none is free, the
least loaded core (among those, the one whose engines hold the fewest cores). Cores are the
machine's, so the app holds one placer (`PLACER`); two processes (a dashboard and an `app.py
sweep` beside it) do not see each other's engines. On a machine with many cores the first engine
keeps most of them (a policy beside a small verifier); replicas of one model are not split evenly::

    placer = CorePlacer(cores=[0, 1])
    placer.take("policy")   # (0,)
    placer.take("prm")      # (1,)
    placer.give_back("policy")
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Hashable, Sequence

BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
CPU_BINDS = ("spread", "vllm")  # the engine_cpu_bind setting: ours, or vLLM's own "auto"


class CorePlacer:
    def __init__(self, cores: Sequence[int] | None = None) -> None:
        self.cores = sorted(cores if cores is not None else os.sched_getaffinity(0))
        if not self.cores:
            raise ValueError("no CPU core to place engines on")
        self._held: dict[Hashable, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    def take(self, holder: Hashable) -> tuple[int, ...]:
        """The cores `holder`'s worker gets (what it held before is given back first: a restart)."""
        with self._lock:
            self._held.pop(holder, None)
            if not self._held:
                chosen = self.cores[:-1] or self.cores
            else:
                load = Counter(core for cores in self._held.values() for core in cores)
                chosen = [c for c in self.cores if not load[c]] or [min(self.cores, key=lambda c: (load[c], self._sharers_cores(c), c))]
            self._held[holder] = tuple(chosen)
            return self._held[holder]

    def _sharers_cores(self, core: int) -> int:
        """How many cores the engines on `core` hold: sharing a one-core engine's core slows one thread, sharing a
        core of a many-core engine slows all its threads (they wait for each other at every step)."""
        return sum(len(cores) for cores in self._held.values() if core in cores)

    def give_back(self, holder: Hashable) -> None:
        with self._lock:
            self._held.pop(holder, None)

    def held(self) -> dict[Hashable, tuple[int, ...]]:
        with self._lock:
            return dict(self._held)


def bind_value(cores: Sequence[int]) -> str:
    """The cores as vLLM's ``VLLM_CPU_OMP_THREADS_BIND`` writes a list ("0,2,3")."""
    return ",".join(str(core) for core in cores)


PLACER = CorePlacer()
