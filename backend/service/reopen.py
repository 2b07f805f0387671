"""A stored comparison reopened read-only (a shared link): its cards as they were, from the store alone.

Nothing is generated again and no engine is asked: the cards are rebuilt from the run's record
(question, models, controllers, budgets, seed) and its stored generations, in the order the
comparison showed them. A parallel answer (``maj4:l1_exact``) is rebuilt from its samples' rows
as the comparison summed them. A column that failed was never stored, so a link shows the rest.

    cards = stored_cards(run, rows)   # run: store.queries.get_run, rows: store.queries.get_generations
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

# The counts a group's card shows are its samples' sums (backend.controllers.parallel.sum_samples).
SUMMED = ("prompt_tokens", "thinking_tokens", "answer_tokens", "total_tokens", "probe_tokens", "verifier_tokens", "waits_used")


def stored_cards(run: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cards of a stored comparison, in the order of its columns (models x controllers x budgets)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    cards = []
    for row in rows:
        if row.get("group_id"):
            groups[row["group_id"]].append(row)
        else:
            cards.append(_card(row))
    cards += [_group_card(sorted(samples, key=lambda r: r["group_idx"])) for samples in groups.values()]
    config = run.get("config") or {}
    order = {name: [str(v) for v in config.get(name) or []] for name in ("models", "controllers", "budgets")}
    order["models"] = order["models"] or [str(config.get("model", ""))]
    return sorted(cards, key=lambda c: tuple(_position(order[name], str(c[key])) for name, key in
                                             (("models", "model"), ("controllers", "controller"), ("budgets", "budget"))))


def _position(values: list[str], value: str) -> int:
    return values.index(value) if value in values else len(values)


def _card(row: dict[str, Any]) -> dict[str, Any]:
    card = {key: row.get(key) for key in ("gen_id", "model", "controller", "budget", "budget_kind", "prompt", "thinking_text", "answer_text",
                                          "extracted_answer", "correct", "finish_reason", "ttft_s", "latency_s", "inner_budget", "group_idx",
                                          "answer_class", "chosen", "answer_logprob", "settled_at", "token_counts", "verifier_score", *SUMMED)}
    card.update(phase="done", error=None, samples=[], probes=json.loads(row["probes"]) if row.get("probes") else [],
                search_tree=json.loads(row["search_tree"]) if row.get("search_tree") else [],
                full_text=row.get("full_text") or "", delimiter_tokens=row["total_tokens"] - row["thinking_tokens"] - row["answer_tokens"])
    for key in ("probe_tokens", "verifier_tokens", "waits_used"):
        card[key] = card[key] or 0
    return card


def _group_card(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """A parallel answer: its samples' sums, and the chosen sample's answer and grade."""
    cards = [_card(sample) for sample in samples]
    chosen = next((c for c in cards if c["chosen"]), None)
    group = {**cards[0], "gen_id": samples[0]["group_id"], "group_idx": None, "answer_class": None, "chosen": None, "answer_logprob": None,
             "samples": cards, "probes": [], "settled_at": None, "search_tree": [], "verifier_score": None}
    for key in SUMMED:
        group[key] = sum(c[key] or 0 for c in cards)
    group["delimiter_tokens"] = sum(c["delimiter_tokens"] for c in cards)
    ttfts = [c["ttft_s"] for c in cards if c["ttft_s"] is not None]
    group["ttft_s"] = min(ttfts) if ttfts else None
    group["latency_s"] = max((c["latency_s"] or 0.0) for c in cards)
    group["thinking_text"] = "\n\n".join(f"[sample {c['group_idx'] + 1}/{len(cards)}] {c['thinking_text']}" for c in cards)
    group["extracted_answer"] = chosen["extracted_answer"] if chosen else None
    group["correct"] = chosen["correct"] if chosen else (None if samples[0].get("gold") is None else False)
    group["answer_text"] = chosen["answer_text"] if chosen else ""
    return group
