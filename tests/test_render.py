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
