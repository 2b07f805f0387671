"""A verifier-guided search's tree in a Compare card: one row per depth, one box per step.

Each box is a step (a line the policy wrote), coloured by the verifier's score (red 0 to green 1),
with its text, score and the oracle's verdict on hover; pruned steps are muted, steps of the chosen
path are outlined, and a path's last step is rounded. The rows fill in as the search grows (the card
is redrawn with every snapshot), so a viewer sees beams survive and die level by level.

    html = tree_html(generation["search_tree"])
"""

from __future__ import annotations

from html import escape

TREE_CSS = """
.bl-tree {margin:0 0 6px 0; font-size:11px; max-height:220px; overflow:auto;}
.bl-tree-row {display:flex; align-items:center; gap:2px; min-height:12px;}
.bl-tree-row > span.bl-depth {width:22px; color:var(--body-text-color-subdued,#888); flex:none;}
.bl-node {display:inline-block; width:10px; height:10px; border-radius:2px; flex:none; border:1px solid rgba(0,0,0,0.15);}
.bl-node.pruned {opacity:0.3;} .bl-node.chosen {outline:2px solid #222; outline-offset:0;} .bl-node.done {border-radius:50%;}
.bl-node.wrong::after {content:""; display:block; width:100%; height:2px; margin-top:4px; background:#222;}
.bl-tree-legend {font-size:11px; color:var(--body-text-color-subdued,#666); margin-bottom:2px;}
"""

MAX_ROWS = 64  # deeper trees show their first rows and say how many more


def score_colour(score: float | None) -> str:
    """Red (0) through amber to green (1); grey when not scored."""
    if score is None:
        return "#ccc"
    score = min(1.0, max(0.0, float(score)))
    red, green = (int(228 - 144 * score), int(87 + 75 * score)) if score >= 0.5 else (228, int(87 + 120 * score))
    return f"rgb({red},{green},86)"


def tree_html(nodes: list[dict]) -> str:
    """The tree as rows of boxes (see the module docstring); '' for no nodes."""
    if not nodes:
        return ""
    depths: dict[int, list[dict]] = {}
    for node in nodes:
        depths.setdefault(int(node["depth"]), []).append(node)
    rows = []
    for depth in sorted(depths)[:MAX_ROWS]:
        boxes = "".join(_box(node) for node in depths[depth])
        rows.append(f'<div class="bl-tree-row"><span class="bl-depth">{depth + 1}</span>{boxes}</div>')
    if len(depths) > MAX_ROWS:
        rows.append(f"<div>… {len(depths) - MAX_ROWS} more levels</div>")
    kept = sum(1 for n in nodes if n.get("kept", True))
    wrong = sum(1 for n in nodes if n.get("oracle") is False)
    oracle = f" · the oracle marks {wrong} wrong (underlined)" if any(n.get("oracle") is not None for n in nodes) else ""
    legend = (f'<div class="bl-tree-legend">{len(nodes)} steps, {kept} kept, {len(depths)} levels · colour: verifier score '
              f'(red 0, green 1) · outlined: the chosen path · muted: pruned{oracle}</div>')
    return f'<div class="bl-tree" data-nodes="{len(nodes)}">{legend}{"".join(rows)}</div>'


def _box(node: dict) -> str:
    classes = ["bl-node"]
    if not node.get("kept", True):
        classes.append("pruned")
    if node.get("chosen"):
        classes.append("chosen")
    if node.get("done"):
        classes.append("done")
    if node.get("oracle") is False:
        classes.append("wrong")
    score = node.get("score")
    verdict = {True: "oracle: right", False: "oracle: wrong"}.get(node.get("oracle"), "")
    if node.get("closed"):
        verdict += " · closed by the app at the path's limit"
    title = f'{node.get("text", "").rstrip()}\nscore {score if score is not None else "?"} · {node.get("tokens", 0)} tokens {verdict}'.strip()
    return (f'<span class="{" ".join(classes)}" data-node="{node["id"]}" data-chosen="{str(bool(node.get("chosen"))).lower()}" '
            f'style="background:{score_colour(score)}" title="{escape(title)}"></span>')
