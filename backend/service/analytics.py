"""What the Analytics tab asks of the store, answered in one place: views, one generation, exports.

`Analytics` runs the aggregates of `store.analytics` under one set of filters and prices them
(`backend.evaluation.costs`); the tab only draws what it gets. Filters come from the form's
loose values (`filters_from_form`), checked here.

    analytics = Analytics(store, default_price=Price(0.5, 2.0))
    view = analytics.view(filters_from_form(["l1-tiny"], [], [], [], 64, 0), prices={}, target=0.8)
    view.recommendation      # "For at least 80% accuracy, the cheapest setting is ..."
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.evaluation.costs import Price, pareto_frontier, parse_prices, priced, recommend, recommendation_text
from backend.evaluation.keywords import KEYWORD_CATEGORIES, KEYWORDS_VERSION
from backend.service.trained_range import TrainedBudgets, flag_rows
from backend.controllers.registry import controller_family
from store import analytics, queries, search
from store.analytics import Filters

EXPORT_FORMATS = ("csv", "parquet")

# The views beyond the core ones (accuracy, cost, adherence, keywords), each one query under the
# filters, by name; `AnalyticsView.data[name]` holds its rows and the tab's registered chart of the same
# name draws them (ui/analytics_views.py). A new view: its query here, its chart there.
VIEW_QUERIES: dict[str, Callable[[Any, Filters], list[dict[str, Any]]]] = {
    "votes": analytics.vote_curves,  # maj@k of parallel methods for every k <= K
    "settling": analytics.settling,  # early exit: thinking spent after the answer settled
    "calibration": search.calibration,  # a verifier's step scores against the oracle's verdicts
    "difficulty": search.by_difficulty,  # accuracy by number of operations: which method wins where
}


def filters_from_form(models, controllers, datasets, runs, budget_min, budget_max) -> Filters:
    """The form's values as filters; a 0 (or empty) budget bound means open. ValueError says what is wrong."""
    return Filters(tuple(models or ()), tuple(controllers or ()), tuple(datasets or ()), tuple(runs or ()),
                   int(budget_min) if budget_min else None, int(budget_max) if budget_max else None)


@dataclass(frozen=True)
class AnalyticsView:
    """Every view under one set of filters: the aggregates, priced, and what they recommend."""

    points: list[dict[str, Any]]  # store.analytics.tradeoff rows, flagged outside their model's trained range (service/trained_range.py)
    costed: list[dict[str, Any]]  # the same, with cost_per_1k at each model's price
    frontier: list[dict[str, Any]]  # the Pareto frontier of cost against accuracy
    spread: list[dict[str, Any]]  # store.analytics.adherence rows
    keywords: list[dict[str, Any]]  # store.analytics.keyword_rates rows
    recent: list[dict[str, Any]]  # the newest generations under the filters
    recommendation: str
    data: Mapping[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)  # each registered view's rows (VIEW_QUERIES), by name

    @property
    def series(self) -> list[dict[str, Any]]:
        """One entry per line of the equal-token view: model, controller, sequential or parallel, budget kind,
        and its budgets outside the model's trained range (``outside``: (N, why) pairs)."""
        seen = {}
        for p in self.points:
            seen.setdefault((p["model"], p["controller"]), {"model": p["model"], "controller": p["controller"], "budget_kind": p.get("budget_kind"),
                                                            "shape": p.get("family") or ("parallel" if (p.get("samples") or 1) > 1 else "sequential"),
                                                            "probed": bool(p.get("mean_probe_tokens")),
                                                            "token_counts": p.get("token_counts") or "counted", "outside": []})
            if p.get("trained_range_note"):
                seen[(p["model"], p["controller"])]["outside"].append((p["budget"], p["trained_range_note"]))
        return list(seen.values())

    @property
    def generations(self) -> int:
        """Stored generations behind the points (a parallel answer is K of them)."""
        return sum(p["n"] * (p.get("samples") or 1) for p in self.points)

    @property
    def answers(self) -> int:
        return sum(p["n"] for p in self.points)


class Analytics:
    def __init__(self, store, default_price: Price, price_of: Callable[[str], Price] | None = None,
                 trained_range_of: Callable[[str], TrainedBudgets | None] | None = None, min_answers: int = 1) -> None:
        """`price_of`: a model's own prices (an endpoint's from the endpoints file); default: `default_price` for all.
        `trained_range_of`: the budgets a model was trained on (None: unknown, nothing flagged).
        `min_answers`: the fewest answers a setting needs before the recommender judges it."""
        self.store = store
        self.min_answers = min_answers
        self.default_price = default_price
        self.price_of = price_of or (lambda model: default_price)
        self.trained_range_of = trained_range_of or (lambda model: None)

    def filter_options(self) -> dict[str, Any]:
        """What the filters can pick: models, controllers, datasets, runs that have generations."""
        with self.store.reader() as cur:
            return analytics.filter_options(cur)

    def prices(self, table: Sequence[Sequence[Any]]) -> dict[str, Price]:
        """Prices per model from the tab's table rows; ValueError for a cell that is not an amount."""
        return parse_prices(table, self.default_price)

    def view(self, filters: Filters, prices: Mapping[str, Price], target: float) -> AnalyticsView:
        """Every view under ``filters``; ``target``: the accuracy (0-1) the recommender looks for."""
        with self.store.reader() as cur:
            points = flag_rows(analytics.tradeoff(cur, filters), self.trained_range_of)
            spread = analytics.adherence(cur, filters)
            words = analytics.keyword_rates(cur, filters, KEYWORD_CATEGORIES, KEYWORDS_VERSION)
            recent = analytics.list_generations(cur, filters)
            data = {name: query(cur, filters) for name, query in VIEW_QUERIES.items()}
        for point in points:
            point["family"] = controller_family(point["controller"])
        prices = {**{p["model"]: self.price_of(p["model"]) for p in points}, **prices}  # the table's prices win
        costed = priced(points, prices, self.default_price)
        best = recommend(costed, target, self.min_answers)
        return AnalyticsView(points, costed, pareto_frontier(costed), spread, words, recent,
                             recommendation_text(best, target, costed, self.min_answers), data)

    def generation(self, gen_id: str) -> dict[str, Any] | None:
        with self.store.reader() as cur:
            return queries.get_generation(cur, gen_id)

    def export(self, filters: Filters, folder: Path, file_format: str) -> Path:
        """The filtered generations as a new CSV or Parquet file in ``folder`` (and nowhere else)."""
        if file_format not in EXPORT_FORMATS:
            raise ValueError(f"export format {file_format!r}: choose csv or parquet")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"generations-{dt.datetime.now():%Y%m%d-%H%M%S}.{file_format}"
        with self.store.reader() as cur:
            analytics.export_generations(cur, filters, path, file_format)
        return path
