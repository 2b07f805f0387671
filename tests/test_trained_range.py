"""Budgets outside the served model's trained range (issue 30): the range read from the model's
lcpo_config.json, the budget each generation is asked for (N, or N/K for majK / bestK), and where
the app says so: the Compare cards, the summary rows (Sweep tab, app.py report), the equal-token
chart and its line list; and the equal-token preset's budgets, all inside the range.

Everything but the last test runs without the engine (a store in a temp dir, the real service
with an engine it never starts); the last goes through the real app's Compare."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from html import escape

import pytest

from backend.controllers.registry import budget_split
from backend.factory import open_app
from backend.service.trained_range import budgets_inside, range_flag
from backend.serving.registry import PRESETS, TINY_BUDGETS, ModelRegistry, ModelSpec
from backend.settings import REPO_ROOT, AppSettings
from store.analytics import Filters
from ui import charts
from ui.analytics_tab import _series_markdown
from ui.render import SUMMARY_COLUMNS, render_card, summary_rows
from ui.sweep_tab import PRESET_CONTROLLERS, preset_form
from ui.terminal import print_summary

MODELS = REPO_ROOT / "models"
SHIPPED = json.loads((MODELS / "l1-tiny" / "lcpo_config.json").read_text())
SHIPPED_RANGE = (SHIPPED["n_min"], SHIPPED["n_max"])


def asked(controller: str, budget: int) -> int:
    return budget // budget_split(controller)


def test_the_budget_each_generation_is_asked_for_and_its_flag():
    assert [budget_split(c) for c in ("l1_exact", "s1", "maj4:l1_exact", "best8:hard_cap", "unconstrained", "maj4:unconstrained", "telepathy")] == [
        1, 1, 4, 8, None, None, None]
    trained = (64, 512)
    below = range_flag("l1-tiny", trained, "maj4:l1_exact", 128)  # 32 tokens per sample
    assert (below.side, below.asked) == ("below", 32)
    assert below.note == "N/4 = 32 tokens per sample: below l1-tiny's trained range (64-512)"
    assert below.fields() == {"outside_trained_range": "below", "trained_range_note": below.note}
    assert range_flag("l1-tiny", trained, "l1_exact", 1024).note == "N = 1024 tokens: above l1-tiny's trained range (64-512)"
    assert range_flag("l1-tiny", trained, "s1", 32).side == "below"  # every controller's budget, not only the L1 prompts'
    # Inside, at the edges: N = 64..512, N/K = floor(N/K) in 64..512.
    for controller, budget in (("l1_exact", 64), ("l1_max", 512), ("maj4:l1_exact", 256), ("maj4:l1_exact", 2051), ("best2:l1_exact", 129)):
        assert range_flag("l1-tiny", trained, controller, budget) is None, (controller, budget)
    assert range_flag("l1-tiny", trained, "maj4:l1_exact", 2052).side == "above"  # 513 per sample
    assert range_flag("l1-tiny", trained, "unconstrained", 8) is None  # takes no budget
    assert range_flag("tiny-r1-base", None, "maj4:l1_exact", 128) is None  # no known range: no flag


def test_the_trained_range_is_read_from_the_model_folder_and_only_there(tmp_path):
    registry = ModelRegistry(MODELS)
    tiny = registry.resolve("l1-tiny")
    assert tiny.trained_budgets == SHIPPED_RANGE
    assert f"with budgets of {SHIPPED_RANGE[0]} to {SHIPPED_RANGE[1]} tokens" in tiny.trained_on  # the Compare tab's note, from the file
    assert registry.resolve("tiny-r1-base").trained_budgets is None  # a base model: no lcpo_config.json
    assert registry.resolve("some-org/some-model").trained_budgets is None and all(p.trained_budgets is None for p in PRESETS)
    assert ModelSpec("obey@stub", "obey@stub", "", (64,)).trained_budgets is None

    folder = tmp_path / "retrained"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    config = folder / "lcpo_config.json"
    config.write_text(json.dumps({"n_min": 100, "n_max": 700}))
    assert ModelRegistry(tmp_path).resolve("retrained").trained_budgets == (100, 700)
    config.write_text(json.dumps({"n_min": 128, "n_max": 1024}))
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))  # retrained in place: read again
    assert ModelRegistry(tmp_path).resolve("retrained").trained_budgets == (128, 1024)
    config.write_text("{not json")
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 2 * 10**9))
    assert ModelRegistry(tmp_path).resolve("retrained").trained_budgets is None  # unreadable: unknown, never a guess
    assert ModelRegistry(tmp_path).resolve(str(folder)).trained_budgets is None


@pytest.mark.parametrize("trained", [(64, 512), (100, 700), (32, 1024), (16, 64)])
def test_budgets_inside_put_every_controllers_generations_in_the_range(trained):
    budgets = budgets_inside(trained, PRESET_CONTROLLERS, TINY_BUDGETS)
    assert len(budgets) == (1 if trained == (16, 64) else 3) and list(budgets) == sorted(budgets)  # 16-64: only N = 64 = 4 x 16
    for controller in PRESET_CONTROLLERS:
        for budget in budgets:
            assert trained[0] <= asked(controller, budget) <= trained[1], (trained, controller, budget)
    if trained == (64, 512):
        assert budgets == (256, 384, 512)  # N in [4 x 64, 512]: the suggested budgets that fit


def test_budgets_inside_fall_back_to_the_suggested_spread():
    assert budgets_inside(None, PRESET_CONTROLLERS, TINY_BUDGETS) == (64, 256, 512)  # no range known: as before
    assert budgets_inside((100, 300), PRESET_CONTROLLERS, TINY_BUDGETS) == (64, 256, 512)  # no N suits both N and N/4


@pytest.fixture()
def quiet_app(tmp_path):
    """The app as the factory builds it over a store in a temp dir, with a models folder holding the
    shipped models' configs and a model trained on 100-700: its engine is never started."""
    models = tmp_path / "models"
    for name, files in (("l1-tiny", ("config.json", "lcpo_config.json")), ("tiny-r1-base", ("config.json",))):
        (models / name).mkdir(parents=True)
        for file in files:
            (models / name / file).write_text((MODELS / name / file).read_text())
    (models / "l1-wide").mkdir()
    (models / "l1-wide" / "config.json").write_text("{}")
    (models / "l1-wide" / "lcpo_config.json").write_text(json.dumps({"n_min": 100, "n_max": 700}))
    settings = AppSettings(model="l1-tiny", db=str(tmp_path / "store.duckdb"), data_dir=str(tmp_path), models_dir=str(models),
                           trained_models_dir=str(tmp_path / "trained"), export_dir=str(tmp_path / "exports"))
    with open_app(settings, env={}) as app:
        yield app


def test_the_equal_token_preset_picks_budgets_inside_the_default_models_range(quiet_app):
    service = quiet_app.service
    for model, trained in (("l1-tiny", SHIPPED_RANGE), ("l1-wide", (100, 700))):
        service.default_model = model
        models, dataset, controllers, budgets, *_ = preset_form(service)
        chosen = [int(b) for b in budgets["value"]]
        # l1-tiny's preset puts the base it was trained from next to it (the plain-prompt methods run there);
        # l1-wide's lcpo_config names no registered base.
        assert (models, dataset, controllers, len(chosen)) == ([model, "tiny-r1-base"] if model == "l1-tiny" else [model], "arith", PRESET_CONTROLLERS, 3)
        assert set(budgets["value"]) <= set(budgets["choices"])
        for controller in PRESET_CONTROLLERS:
            assert all(trained[0] <= asked(controller, b) <= trained[1] for b in chosen), (model, controller, chosen)
    service.default_model = "tiny-r1-base"  # no known range: the suggested spread, as before
    assert [int(b) for b in preset_form(service)[3]["value"]] == [TINY_BUDGETS[0], TINY_BUDGETS[len(TINY_BUDGETS) // 2], TINY_BUDGETS[-1]]


T0 = dt.datetime(2026, 12, 1, 12, 0, 0)


def rows_of(model: str, controller: str, budget: int, k: int, start: int) -> list[dict]:
    """One answer (a group of k samples when k > 1) to one question, stored as a sweep stores it."""
    rows = []
    for j in range(k):
        rows.append({"gen_id": f"g{start}.{j}", "run_id": "ranges", "created_at": T0 + dt.timedelta(seconds=start), "model": model,
                     "controller": controller, "budget": budget, "question": "Compute 2 + 3.", "question_id": "q1", "dataset": "arith",
                     "gold": "5", "correct": True, "total_tokens": budget // k, "prompt_tokens": 10, "thinking_tokens": budget // k - 5,
                     "answer_tokens": 4, "budget_kind": "hint", "latency_s": 1.0,
                     **({"group_id": f"g{start}", "group_idx": j, "inner_budget": budget // k, "chosen": j == 0} if k > 1 else {})})
    return rows


@pytest.fixture()
def stored(quiet_app):
    rows = (rows_of("l1-tiny", "maj4:l1_exact", 128, 4, 1) + rows_of("l1-tiny", "maj4:l1_exact", 256, 4, 2)
            + rows_of("l1-tiny", "l1_exact", 32, 1, 3) + rows_of("l1-tiny", "l1_exact", 256, 1, 4) + rows_of("tiny-r1-base", "maj4:l1_exact", 128, 4, 5))
    quiet_app.store.upsert_run("ranges", "ranges", "sweep", {}, "finished").result()
    assert quiet_app.store.insert_generations(rows).result() == len(rows)
    return quiet_app.service


FLAGGED = {("l1-tiny", "maj4:l1_exact", 128): "N/4 = 32 tokens per sample: below l1-tiny's trained range ({}-{})",
           ("l1-tiny", "l1_exact", 32): "N = 32 tokens: below l1-tiny's trained range ({}-{})"}


def expected_note(key) -> str | None:
    return FLAGGED[key].format(*SHIPPED_RANGE) if key in FLAGGED else None


def test_summary_rows_say_which_budgets_are_outside_the_range(stored, capsys):
    summary = stored.run_report("ranges")
    assert len(summary) == 5
    for group in summary:
        key = (group["model"], group["controller"], group["budget"])
        assert group["trained_range_note"] == expected_note(key), key
        assert group["outside_trained_range"] == ("below" if key in FLAGGED else None)
    # The Sweep tab's table: a column with the words, empty inside the range.
    notes = [row[SUMMARY_COLUMNS.index("trained_range_note")] for row in summary_rows(summary)]
    assert sorted(filter(None, notes)) == sorted(expected_note(key) for key in FLAGGED)
    # app.py report / sweep: a column saying below / above, and the reason under the table.
    print_summary(summary, as_json=False)
    out = capsys.readouterr().out
    header, *lines = out.splitlines()
    assert header.split()[-1] == "outside_trained_range"
    assert sum(line.split()[-1] == "below" for line in lines[:5]) == 2
    assert f"l1-tiny maj4:l1_exact N=128: {expected_note(('l1-tiny', 'maj4:l1_exact', 128))}" in lines
    print_summary(summary, as_json=True)
    assert json.loads(capsys.readouterr().out) == summary


def test_the_equal_token_chart_rings_points_outside_the_range_and_the_line_list_says_which(stored):
    view = stored.analytics.view(Filters(runs=("ranges",)), prices={}, target=0.5)
    flagged = {(p["model"], p["controller"], p["budget"]): p["outside_trained_range"] for p in view.points}
    assert flagged == {("l1-tiny", "l1_exact", 32): "below", ("l1-tiny", "l1_exact", 256): None, ("l1-tiny", "maj4:l1_exact", 128): "below",
                       ("l1-tiny", "maj4:l1_exact", 256): None, ("tiny-r1-base", "maj4:l1_exact", 128): None}
    spec = charts.tradeoff_chart(view.points).to_dict()
    rings = [layer for layer in spec["layer"] if layer["mark"].get("filled") is False]
    assert len(rings) == 1
    ring = rings[0]
    assert {"filter": "isValid(datum.outside_trained_range)"} in ring["transform"]
    assert ring["encoding"]["stroke"]["scale"]["domain"] == [charts.OUTSIDE_RANGE]  # the legend's entry
    assert any(t.get("field") == "trained_range_note" for t in ring["encoding"]["tooltip"])
    data = next(iter(spec["datasets"].values()))
    marked = {(d["model"], d["controller"], d["budget"]) for d in data if d["outside_trained_range"]}
    assert marked == {("l1-tiny", "l1_exact", 32), ("l1-tiny", "maj4:l1_exact", 128)}
    dots = next(layer for layer in spec["layer"] if layer["mark"].get("filled") is True)
    assert dots["encoding"]["opacity"]["condition"]["test"] == "isValid(datum.outside_trained_range)"  # faded, too

    lines = _series_markdown(view.series)
    assert f"`l1-tiny · maj4:l1_exact`: parallel, budget hint, **outside the trained range at N = 128** ({expected_note(('l1-tiny', 'maj4:l1_exact', 128))})" in lines
    assert "outside the trained range at N = 256" not in lines
    assert re.search(r"`tiny-r1-base · maj4:l1_exact`: [^;]*outside", lines) is None  # no known range: never flagged
    # Nothing outside: no ring layer, no legend entry.
    inside = [p for p in view.points if not p["outside_trained_range"]]
    assert all(layer["mark"].get("filled") is not False for layer in charts.tradeoff_chart(inside).to_dict()["layer"])


def test_a_card_outside_the_range_says_so_and_one_inside_does_not():
    card = {"controller": "maj4:l1_exact", "budget": 128, "phase": "done", "thinking_tokens": 120, "answer_tokens": 12, "total_tokens": 136,
            "thinking_text": "", "answer_text": "", "correct": True, "samples": [], "inner_budget": 32, "model": "l1-tiny"}
    note = expected_note(("l1-tiny", "maj4:l1_exact", 128))
    html = render_card({**card, "outside_trained_range": "below", "trained_range_note": note + " <b>"})
    assert 'data-outside-range="below"' in html and '<div class="bl-range" title="' in html and f"{escape(note)} &lt;b&gt;</div>" in html
    plain = render_card({**card, "budget": 256, "outside_trained_range": None, "trained_range_note": None})
    assert 'data-outside-range=""' in plain and "bl-range" not in plain


@pytest.mark.engine
def test_a_comparison_through_the_app_flags_the_card_outside_the_range(app_url, service):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    status, cards, generations = client.predict("Compute 12 + 7 - 3.", "l1-tiny", ["128", "256"], ["maj4:l1_exact"], "16", "5", 0, 0, "",
                                                api_name="/compare_stream")
    by_budget = {g["budget"]: g for g in generations}
    assert all(g["phase"] == "done" for g in generations), [g["error"] for g in generations]
    assert by_budget[128]["outside_trained_range"] == "below" and by_budget[128]["trained_range_note"] == expected_note(("l1-tiny", "maj4:l1_exact", 128))
    assert by_budget[256]["outside_trained_range"] is None and by_budget[256]["trained_range_note"] is None
    card_128 = re.search(r'<div class="bl-card"[^>]*data-budget="128"[^>]*>.*?(?=<div class="bl-card"|$)', cards, re.S).group(0)
    card_256 = re.search(r'<div class="bl-card"[^>]*data-budget="256"[^>]*>.*?(?=<div class="bl-card"|$)', cards, re.S).group(0)
    assert 'data-outside-range="below"' in card_128 and "N/4 = 32 tokens per sample: below l1-tiny&#x27;s trained range" in card_128
    assert 'data-outside-range=""' in card_256 and "bl-range" not in card_256
    # A link to the comparison reopens it with the same flags.
    run_id = re.search(r"run (compare-[0-9a-f]+)", status).group(1)
    reopened = {g["budget"]: g["outside_trained_range"] for g in service.stored_comparison(run_id)["generations"]}
    assert reopened == {128: "below", 256: None}
