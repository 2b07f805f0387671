"""The Compare cards' HTML (ui/render.py, pure functions): model text escaped, countdown ticks muted."""

from __future__ import annotations

from ui.render import render_card, thinking_html


def test_ticks_are_muted_and_model_text_is_escaped():
    html = thinking_html("‹24›Let me compute <b>step</b> by step.\n‹21›= 5")
    assert html.count('<span class="bl-tick">') == 2
    assert '<span class="bl-tick">‹24›</span>Let me compute &lt;b&gt;step&lt;/b&gt; by step.' in html
    assert "‹" not in html.replace('<span class="bl-tick">‹24›</span>', "").replace('<span class="bl-tick">‹21›</span>', "")


def test_a_card_shows_the_thinking_with_its_ticks_muted():
    generation = {"controller": "l1_exact", "budget": 64, "phase": "done", "thinking_tokens": 40, "answer_tokens": 12, "total_tokens": 53,
                  "thinking_text": "‹6›= 5\nSo it is 5.", "answer_text": "The answer is \\boxed{5}.", "correct": True}
    card = render_card(generation)
    assert '<span class="bl-tick">‹6›</span>= 5' in card and "correct" in card


def test_a_search_card_draws_its_tree_a_row_per_depth():
    from ui.render import render_card
    from ui.tree import score_colour

    nodes = [{"id": 0, "parent": None, "depth": 0, "tokens": 9, "text": "37 + 48:\n", "score": 0.9, "kept": True, "chosen": True, "done": False, "oracle": True},
             {"id": 1, "parent": None, "depth": 0, "tokens": 7, "text": "I guess <b>\n", "score": 0.1, "kept": False, "chosen": False, "done": False, "oracle": False},
             {"id": 2, "parent": 0, "depth": 1, "tokens": 5, "text": "85.", "score": 0.95, "kept": True, "chosen": True, "done": True, "oracle": True}]
    card = render_card({"controller": "beam2x1:l1_exact@oracle", "budget": 64, "phase": "done", "thinking_tokens": 21, "answer_tokens": 0,
                        "total_tokens": 21, "thinking_text": "37 + 48:\n85.", "answer_text": "", "inner_budget": 32, "verifier_tokens": 120,
                        "search_tree": nodes, "correct": True})
    assert card.count('class="bl-tree-row"') == 2 and card.count('class="bl-node') == 3
    assert card.count('data-chosen="true"') == 2 and 'class="bl-node pruned wrong"' in card
    assert "I guess &lt;b&gt;" in card and "<b>\n" not in card  # a step's text is escaped in its tooltip
    assert "verifier read <b>120</b> tokens" in card and "paths of at most 32 tokens" in card
    assert score_colour(0.0) != score_colour(1.0) and score_colour(None) == "#ccc"
