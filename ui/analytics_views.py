"""The Analytics tab's charts, each one registered object: where it sits and how it draws its rows.

A view names its rows (`AnalyticsView.points` and kin, or one of `backend.service.analytics.VIEW_QUERIES`
by the same name in ``view.data``), its place (views with the same ``row`` sit side by side, rows in
the order of their first view) and a draw function. The tab builds one plot per view and fills them
in this order, so a new view is one entry here (and its query there), nothing else.

    ChartView("calibration", "Verifier calibration", row="search", draw=lambda view, options: calibration_chart(view.data["calibration"]))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from backend.service.analytics import AnalyticsView
from ui import charts
from ui.search_charts import calibration_chart, difficulty_chart


@dataclass(frozen=True)
class DrawOptions:
    """What the tab's controls change in a chart."""

    log_tokens: bool = False
    with_verifier: bool = False  # the equal-token axis adds the tokens a verifier read


@dataclass(frozen=True)
class ChartView:
    name: str  # its element id is bl-an-<name>
    label: str
    row: str  # views with the same row sit side by side
    draw: Callable[[AnalyticsView, DrawOptions], object]

    @property
    def elem_id(self) -> str:
        return f"bl-an-{self.name}"


CHART_VIEWS: tuple[ChartView, ...] = (
    ChartView("cost", "Accuracy against cost", "accuracy", lambda view, o: charts.cost_chart(view.costed, view.frontier)),
    ChartView("adherence", "Length adherence", "lengths", lambda view, o: charts.adherence_chart(view.spread)),
    ChartView("thinking", "Thinking and answer tokens", "lengths", lambda view, o: charts.thinking_answer_chart(view.points)),
    ChartView("votes", "Vote curves", "compute", lambda view, o: charts.vote_chart(view.data.get("votes", []))),
    ChartView("settling", "Where the answer settled", "compute", lambda view, o: charts.settling_chart(view.data.get("settling", []))),
    ChartView("calibration", "Verifier calibration", "search", lambda view, o: calibration_chart(view.data.get("calibration", []))),
    ChartView("difficulty", "Accuracy by difficulty", "search", lambda view, o: difficulty_chart(view.data.get("difficulty", []))),
    ChartView("keywords", "Keywords", "words", lambda view, o: charts.keyword_chart(view.keywords)),
)


def rows_of_views(views: tuple[ChartView, ...] = CHART_VIEWS) -> list[list[ChartView]]:
    """The views grouped by row, rows in the order of their first view."""
    rows: dict[str, list[ChartView]] = {}
    for view in views:
        rows.setdefault(view.row, []).append(view)
    return list(rows.values())
