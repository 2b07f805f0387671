"""The Compare tab: one question, several budgets and controllers, side by side, live.

`build_compare_tab(service)` adds the tab to the enclosing Blocks. Handlers
are thin: they parse input with backend.service.compare, stream from the service,
and render with ui.render. The same comparison is the named API endpoint
``/compare`` (JSON in, JSON out) for scripts driving the app with gradio_client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import gradio as gr

from backend.controllers.registry import controller_facts, controller_names
from backend.errors import InputError
from backend.evaluation.costs import billed_tokens, estimate_cost
from backend.service.budgetlab import Budgetlab
from backend.service.compare import parse_compare_request
from backend.service.examples import builtin_examples
from backend.serving.engine import EngineUnavailable
from ui.render import render_columns

DEFAULT_CONTROLLERS = ["l1_exact", "s1", "hard_cap"]
# The link of the comparison just run, built in the browser (it knows the address it was opened at),
# from the run id in the status line: ?run=compare-... opens it read-only.
SHARE_LINK_JS = """(status) => {
  const match = /run (compare-[0-9a-f]+)/.exec(status || '');
  return match ? location.origin + location.pathname + '?run=' + match[1] : '';
}"""


def build_compare_tab(service: Budgetlab, concurrency_limit: int = 32) -> CompareHandles:
    examples = builtin_examples()
    default_spec = service.suggested_budgets()
    with gr.Tab("Compare", id="compare") as tab:
        with gr.Row():
            with gr.Column(scale=3):
                question = gr.Textbox(label="Question", lines=4, value=examples[0].question, elem_id="bl-question")
                example = gr.Dropdown(label="Built-in examples", choices=[e.label for e in examples], value=examples[0].label, elem_id="bl-example")
                gold = gr.Textbox(label="Gold answer (optional, for grading)", value=examples[0].gold, elem_id="bl-gold")
            with gr.Column(scale=2):
                model = gr.Dropdown(label="Model", choices=service.model_names(), value=service.default_model, allow_custom_value=True, elem_id="bl-model")
                model_note = gr.Markdown(_model_note(service, service.default_model), elem_id="bl-model-note")
                other_model = gr.Dropdown(label="Next to (optional): a second model, served or a chat endpoint's (MODEL_ID@NAME)",
                                          choices=["", *service.model_names()], value="", allow_custom_value=True, elem_id="bl-other-model")
                each_on_its_model = gr.Checkbox(label="Each method on the model it is meant for (L1 prompts on the L1 model, the others on the base)",
                                                value=True, elem_id="bl-each-on-its-model")
                budgets = gr.Dropdown(label="Budgets (tokens)", choices=[str(b) for b in default_spec], value=[str(b) for b in default_spec[1:4]],
                                      multiselect=True, allow_custom_value=True, elem_id="bl-budgets")
                controllers = gr.CheckboxGroup(label="Controllers", choices=controller_names(), value=DEFAULT_CONTROLLERS, elem_id="bl-controllers")
                verifier = _verifier_box(service)
                with gr.Accordion("What each controller does with N (hint: the model may overrun it; guaranteed: enforced)", open=False):
                    gr.Markdown(_controller_table(service), elem_id="bl-controller-table")
                with gr.Row():
                    seed = gr.Textbox(label="Seed (empty: random)", value="", elem_id="bl-seed")
                    price_in = gr.Number(label="$ per 1M input tokens", value=service.price.input_per_m, minimum=0)
                    price_out = gr.Number(label="$ per 1M output tokens", value=service.price.output_per_m, minimum=0)
                run = gr.Button("Compare", variant="primary", elem_id="bl-run")
        status = gr.Markdown("", elem_id="bl-compare-status")
        share = gr.Textbox(label="Link to this comparison (opens it read-only, from the store)", interactive=False, buttons=["copy"],
                           elem_id="bl-share-link", placeholder="appears when a comparison is done")
        cards = gr.HTML(render_columns([]), elem_id="bl-cards")
        with gr.Accordion("Generations as JSON", open=False):
            raw = gr.JSON(label="generations")

        # A fine-tune that finished since the page loaded is listed when the tab is opened again.
        tab.select(lambda: (gr.update(choices=service.model_names()), gr.update(choices=["", *service.model_names()])),
                   outputs=[model, other_model], api_visibility="private", queue=False)
        by_label = {e.label: e for e in examples}

        def pick_example(label: str):
            chosen = by_label.get(label)
            return (chosen.question, chosen.gold) if chosen else (gr.skip(), gr.skip())

        def pick_model(name: str):
            try:
                spec = service.resolve_model(name)
            except InputError:
                return gr.skip(), gr.skip()
            return gr.Dropdown(choices=[str(b) for b in spec.budgets], value=[str(b) for b in spec.budgets[1:4]]), _model_note(service, name)

        async def compare_stream(question, model, budgets, controllers, gold, seed, price_in, price_out, other_model="", each_on_its_model=True,
                                 verifier=""):
            try:
                request = parse_compare_request(question, model, budgets, controllers, gold, seed, other_model, each_on_its_model,
                                                max_columns=service.max_columns, verifier=verifier)
                notes = "".join(f"\n\n**Note:** {note}" for note in filter(None, (service.domain_note(m, request.question) for m in request.models)))
                async for snapshot in service.compare_stream(request):
                    generations = [g.as_dict() for g in snapshot.generations]
                    costs = [_card_cost(service, g, price_in, price_out) for g in generations]
                    yield snapshot.message + notes, render_columns(generations, costs), generations if snapshot.done else gr.skip()
            except (InputError, EngineUnavailable) as exc:
                gr.Warning(str(exc))
                yield f"**Error:** {exc}", gr.skip(), gr.skip()

        example.change(pick_example, inputs=example, outputs=[question, gold], api_visibility="private")
        # A question typed by hand is no longer the example: its name and gold go (else every card is graded against the old gold).
        # (`input` fires on the user's edits only, not when an example fills the box.)
        question.input(lambda: (None, ""), outputs=[example, gold], api_visibility="private", queue=False)
        model.change(pick_model, inputs=model, outputs=[budgets, model_note], api_visibility="private")
        run.click(
            compare_stream,
            inputs=[question, model, budgets, controllers, gold, seed, price_in, price_out, other_model, each_on_its_model, verifier],
            outputs=[status, cards, raw],
            api_name="compare_stream",
            concurrency_limit=concurrency_limit,
        ).then(None, inputs=status, outputs=share, js=SHARE_LINK_JS)

        _api(service, concurrency_limit)

    return CompareHandles(partial(_reopen, service), [question, model, gold, status, cards, raw, share])


def _verifier_box(service: Budgetlab) -> gr.Dropdown:
    """The verifier of the verifier-guided controllers that name none (the search_verifier setting's by default)."""
    return gr.Dropdown(label="Verifier of prmK / pvoteK / beamWxM / particlesP (a name's own @VERIFIER wins)",
                       choices=service.verifier_names(), value=service.controller_config.search_verifier,
                       allow_custom_value=True, elem_id="bl-verifier")


@dataclass
class CompareHandles:
    """What a shared link needs: `reopen(run_id)` fills `outputs` with a stored comparison."""

    reopen: Callable[[str], tuple]
    outputs: list


def _api(service: Budgetlab, concurrency_limit: int) -> None:
    async def compare(question: str, model: str, budgets: list[int], controllers: list[str], gold: str = "", seed: int | None = None,
                      other_model: str = "", each_on_its_model: bool = True, verifier: str = "") -> dict:
        """Compare one question at several budgets and controllers (on a second model too: other_model, served or
        MODEL_ID@ENDPOINT; with each_on_its_model, L1 prompts run on the L1 model and the others on the other model);
        verifier: of the verifier-guided controllers that name none (default: the search_verifier setting);
        returns every generation as JSON, each with its cost at its model's prices."""
        try:
            request = parse_compare_request(question, model, budgets, controllers, gold, seed, other_model, each_on_its_model,
                                            max_columns=service.max_columns, verifier=verifier)
            return await service.compare(request)
        except (InputError, EngineUnavailable) as exc:
            raise gr.Error(str(exc)) from None

    gr.api(compare, api_name="compare", concurrency_limit=concurrency_limit)


def _reopen(service: Budgetlab, run_id: str) -> tuple:
    """A stored comparison for a shared link: question, model, gold, status, cards, JSON, link."""
    try:
        stored = service.stored_comparison(run_id)
    except InputError as exc:
        return gr.skip(), gr.skip(), gr.skip(), f"**Error:** {exc}", gr.skip(), gr.skip(), gr.skip()
    generations = stored["generations"]
    note = (f"Stored comparison **{stored['run_id']}** of {stored['created_at']:%Y-%m-%d %H:%M} UTC, reopened read-only from the store "
            f"({' vs '.join(m for m in stored['models'] if m)}, seed {stored['seed']}); press Compare to run it again.")
    return (stored["question"], stored["model"], stored["gold"] or "", note,
            render_columns(generations, [g["cost_usd"] for g in generations]), generations, gr.skip())


def _model_note(service: Budgetlab, name: str) -> str:
    """One line under the model: what it was trained on (the shipped tiny models), else what it is."""
    try:
        spec = service.resolve_model(name)
    except InputError:
        return ""
    if spec.trained_on:
        return f"**{spec.name}** was trained on {spec.trained_on}: the arith examples below are its domain."
    return f"**{spec.name}**: {spec.description}"


def _card_cost(service: Budgetlab, generation: dict, price_in, price_out) -> float:
    """A card's cost: an endpoint model's at the endpoint's prices, a served model's at the form's (probe
    tokens and a verifier's reads are billed too: `billed_tokens`)."""
    if service.is_endpoint_model(generation.get("model") or ""):
        return service.with_cost(dict(generation))["cost_usd"]
    return estimate_cost(*billed_tokens(generation), price_in or 0, price_out or 0)


# What a controller promises about N, in words no audit verdict uses (the audit says what was observed).
PROMISES = {"hint": "a hint: the model may overrun N", "guaranteed": "a guarantee: the controller enforces N", "none": "no budget"}


def _controller_table(service: Budgetlab) -> str:
    rows = [f"| `{f['controller']}` | {PROMISES[f['budget']]} | {f['what it does with N']} |" for f in controller_facts(service.controller_config)]
    return "| controller | what it promises | what it does with N |\n|---|---|---|\n" + "\n".join(rows) + (
        "\n\nAny `majK:INNER` or `bestK:INNER` may be sent through the API and `app.py sweep` (K samples of INNER at floor(N/K) tokens each).")
