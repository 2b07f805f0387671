"""Step-level beam search guided by a verifier: ``beamWxM`` (Snell et al. 2024; HF search-and-learn).

W beams are kept; each is expanded M ways by one step (a line), every new path is scored by the
verifier, and the W best unfinished paths go on; a path that ends (the model's end of sequence,
or the per-path budget) joins the finished ones, and the search stops once W paths are finished
or N is spent. The answer is the finished path with the best aggregated score (last step, lowest
step, or product: the ``search_aggregation`` setting). The first level draws W x M first steps
from the prompt.

Budget: W x M paths are alive per level, so each path may write floor(N / (W M)) tokens (its
prompt: the inner controller's, ``l1_exact`` unless named, at that budget); the levels share N
(`backend.controllers.search`), so the tree never generates more than N policy tokens.

    make_controller("beam4x4", config)              # W=4, M=4, l1_exact prompts, the default verifier
    make_controller("beam2x4:hard_cap@oracle", config)
"""

from __future__ import annotations

from backend.controllers.live import LiveGeneration
from backend.controllers.search import best_path, SearchController, SearchRun
from backend.controllers.session import ModelSession
from backend.serving.sampling import Sampling

PREFIX = "beam"


class BeamSearch(SearchController):
    def __init__(self, width: int, expansions: int, inner, verifier_name: str) -> None:
        super().__init__(inner, verifier_name)
        self.width, self.expansions = width, expansions
        self.name = f"{PREFIX}{width}x{expansions}:{inner.name}@{verifier_name}"
        self.description = (f"beam search: {width} beams x {expansions} expansions a step, scored by {verifier_name}; "
                            f"each path floor(N/{width * expansions}) tokens, N in all.")

    async def run(self, session: ModelSession, question: str, budget: int, sampling: Sampling, live: LiveGeneration) -> None:
        paths = self.width * self.expansions
        search = await SearchRun.open(self, session, question, budget, sampling, live, paths=paths)
        finished, active, level = [], [search.root], 0
        while active and len(finished) < self.width:
            parents = [search.root] * paths if level == 0 else [p for p in active for _ in range(self.expansions)]
            children = await search.expand(parents, level)
            if not children:
                break
            finished += [c for c in children if c.done]
            growing = sorted((c for c in children if not c.done), key=lambda c: -c.score)
            keep = max(0, self.width - len(finished))
            active = growing[:keep]
            search.prune(growing[keep:])
            level += 1
        pool = finished or active
        search.finish(best_path(pool))
