"""Particle filtering guided by a verifier: ``particlesP`` (Puri et al. 2025, arXiv 2502.01618; its_hub).

P particles (partial solutions) each grow one step (a line) per round; the verifier scores every
new step and the unfinished particles are resampled, with replacement, in proportion to their
scores (the weights), so that likely-right partial solutions multiply and likely-wrong ones die
out while sampling keeps them diverse. A particle that ends (end of sequence, or its budget) is
kept as it is. The answer is the finished particle with the best aggregated score.

Budget: P particles alive, each with floor(N / P) tokens (the inner controller's prompt at that
budget, ``l1_exact`` unless named); rounds share N (`backend.controllers.search`). Resampling
draws from a generator seeded by the search's seed, so a seeded run repeats.

    make_controller("particles4", config)
    make_controller("particles8:hard_cap@oracle", config)
"""

from __future__ import annotations

import random

from backend.controllers.live import LiveGeneration
from backend.controllers.search import best_path, Path, SearchController, SearchRun, step_seed
from backend.controllers.session import ModelSession
from backend.serving.sampling import Sampling

PREFIX = "particles"
WEIGHT_FLOOR = 1e-6  # a particle scored 0 keeps a tiny weight: if every score is 0, resampling is uniform


class ParticleFilter(SearchController):
    def __init__(self, particles: int, inner, verifier_name: str) -> None:
        super().__init__(inner, verifier_name)
        self.particles = particles
        self.name = f"{PREFIX}{particles}:{inner.name}@{verifier_name}"
        self.description = (f"particle filtering: {particles} particles resampled each step by {verifier_name}'s scores; "
                            f"each floor(N/{particles}) tokens, N in all.")

    async def run(self, session: ModelSession, question: str, budget: int, sampling: Sampling, live: LiveGeneration) -> None:
        search = await SearchRun.open(self, session, question, budget, sampling, live, paths=self.particles)
        rng = random.Random(step_seed(sampling.seed, -1))
        finished: list[Path] = []
        alive, level = [search.root] * self.particles, 0
        while alive:
            children = await search.expand(alive, level)
            if not children:
                break
            finished += [c for c in children if c.done]
            growing = [c for c in children if not c.done]
            slots = self.particles - len(finished)
            if not growing or slots < 1:
                search.prune(growing)
                alive = []
                break
            alive = rng.choices(growing, weights=[max(c.score, WEIGHT_FLOOR) for c in growing], k=slots)
            search.prune([c for c in growing if all(c is not a for a in alive)])
            level += 1
        pool = finished or alive
        search.finish(best_path(pool))
