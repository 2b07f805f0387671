"""How good the tiny model is: a quick eval with transformers, and a check that vLLM serves it right.

    summary = quick_eval(model, tokenizer, seed=0, n=50)               # greedy, fresh problems
    served = check_vllm("models/tiny-r1-base")                        # format and accuracy in vLLM (CPU)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from backend.controllers.prompts import THINK_END, base_prompt, chat_messages
from backend.evaluation.arith import make_problems
from training.tiny.data import EVAL_SEED_OFFSET
from training.tiny.tokenizer import prompt_text
from training.traces import OPENINGS, STYLES

BOXED_RE = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")


def parse_output(text: str) -> tuple[bool, int | None]:
    """(well formed: `</think>` then `\\boxed{int}`, the boxed integer or None)."""
    if THINK_END not in text:
        return False, None
    m = BOXED_RE.search(text.split(THINK_END, 1)[1])
    if not m:
        return False, None
    return True, int(m.group(1))


def classify_style(thinking: str) -> str:
    if "=" not in thinking:
        return "terse"
    if "check" in thinking.lower() or "Wait" in thinking:
        return "checked"
    return "steps" if thinking.lstrip().startswith("Let me") else "brief"


def quick_eval(
    model,
    tokenizer,
    seed: int,
    n: int = 50,
    do_sample: bool = False,
    temperature: float = 0.6,
    style: str | None = None,
    max_new_tokens: int = 600,
    batch_size: int = 25,
) -> dict:
    """Generation with transformers on ``n`` fresh problems (a seed that training never uses).

    Greedy unless ``do_sample``; the base prompt. With ``style``, the think block is prefilled
    with that style's opening (`training.traces.OPENINGS`), to compare the styles on the same
    problems; thinking lengths count the prefilled tokens.
    """
    import torch

    problems = make_problems(seed + EVAL_SEED_OFFSET, n)
    prefill = OPENINGS[style] + ("" if style == "terse" else "\n") if style else ""
    tokenizer.padding_side = "left"
    rows = []
    torch.manual_seed(seed)
    try:
        for i in range(0, n, batch_size):
            chunk = problems[i : i + batch_size]
            outputs = _generate(model, tokenizer, chunk, prefill, max_new_tokens, temperature if do_sample else None)
            rows += [_row(tokenizer, p, ids, prefill) for p, ids in zip(chunk, outputs)]
    finally:
        tokenizer.padding_side = "right"
    decoding = f"sampled T={temperature}" if do_sample else "greedy"
    return _summary(rows, n, seed, decoding + (f", {style} opening prefilled" if style else ""))


def _generate(model, tokenizer, problems, prefill: str, max_new_tokens: int, temperature: float | None) -> list[list[int]]:
    """The completions' token ids (without EOS) of one batch; greedy when ``temperature`` is None."""
    import torch

    eos = tokenizer.eos_token_id
    texts = [prompt_text(tokenizer, base_prompt(p.question)) + prefill for p in problems]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=temperature is not None, temperature=temperature,
                             top_p=None, top_k=None, pad_token_id=eos, eos_token_id=eos)
    return [ids[: ids.index(eos)] if eos in ids else ids for ids in out[:, enc["input_ids"].shape[1]:].tolist()]


def _row(tokenizer, problem, ids: list[int], prefill: str) -> dict:
    think_end_id = tokenizer.convert_tokens_to_ids(THINK_END)
    n_prefill = len(tokenizer(prefill, add_special_tokens=False)["input_ids"]) if prefill else 0
    text = prefill + tokenizer.decode(ids, skip_special_tokens=True)
    ok, got = parse_output(text)
    return {
        "n_ops": problem.n_ops,
        "format_ok": ok,
        "correct": ok and got == problem.answer,
        "think_tokens": n_prefill + (ids.index(think_end_id) if think_end_id in ids else len(ids)),
        "style": classify_style(text.split(THINK_END, 1)[0]),
    }


def _accuracy(rows: list[dict]) -> float | None:
    return round(sum(r["correct"] for r in rows) / len(rows), 3) if rows else None


def _summary(rows: list[dict], n: int, seed: int, decoding: str) -> dict:
    by_style = {}
    for s in STYLES:
        rs = [r for r in rows if r["style"] == s]
        if rs:
            by_style[s] = {"count": len(rs), "accuracy": _accuracy(rs), "mean_think_tokens": round(sum(r["think_tokens"] for r in rs) / len(rs), 1)}
    return {
        "problems": n,
        "problem_seed": seed + EVAL_SEED_OFFSET,
        "decoding": decoding,
        "format_rate": round(sum(r["format_ok"] for r in rows) / n, 3),
        "accuracy": _accuracy(rows),
        "accuracy_1_2_ops": _accuracy([r for r in rows if r["n_ops"] <= 2]),
        "accuracy_5_6_ops": _accuracy([r for r in rows if r["n_ops"] >= 5]),
        "accuracy_by_ops": {k: _accuracy([r for r in rows if r["n_ops"] == k]) for k in range(1, 7)},
        "mean_think_tokens": round(sum(r["think_tokens"] for r in rows) / n, 1),
        "min_think_tokens": min(r["think_tokens"] for r in rows),
        "max_think_tokens": max(r["think_tokens"] for r in rows),
        "by_style": by_style,
    }


# ---------------------------------------------------------------- vLLM check


def check_vllm(model_dir: str | Path, n: int = 50, seed: int = 0) -> dict:
    """Load the model in vLLM (CPU) and check the served format on the quick-eval problems.

    One answer per problem at temperature 0.6 (format, ``</think>`` as a single id among the
    output token ids, accuracy) and one greedy (accuracy, comparable with the transformers
    greedy eval). Not a test: the engine takes about a minute to start. Run it with --check-vllm.
    """
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(model_dir), max_model_len=2048, enforce_eager=True, seed=seed)
    tok = llm.get_tokenizer()
    think_end_id = tok.convert_tokens_to_ids(THINK_END)
    problems = make_problems(seed + EVAL_SEED_OFFSET, n)
    prompts = [
        tok.apply_chat_template(chat_messages(base_prompt(p.question)), add_generation_prompt=True, tokenize=False)
        for p in problems
    ]
    sampled = llm.generate(prompts, SamplingParams(temperature=0.6, max_tokens=1024))
    greedy = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=1024))
    rows = []
    for p, o, g in zip(problems, sampled, greedy):
        c = o.outputs[0]
        ok, got = parse_output(c.text)
        g_ok, g_got = parse_output(g.outputs[0].text)
        ids = list(c.token_ids)
        rows.append(
            {
                "question": p.question,
                "answer": p.answer,
                "format_ok": ok,
                "correct": ok and got == p.answer,
                "think_end_single_id": think_end_id in ids and THINK_END in c.text,
                "n_tokens": len(ids),
                "greedy_correct": g_ok and g_got == p.answer,
                "text": c.text,
            }
        )
    return {
        "think_end_id": think_end_id,
        "format_rate": sum(r["format_ok"] for r in rows) / n,
        "think_end_single_id_rate": sum(r["think_end_single_id"] for r in rows) / n,
        "accuracy": sum(r["correct"] for r in rows) / n,
        "greedy_accuracy": sum(r["greedy_correct"] for r in rows) / n,
        "rows": rows,
    }


def vllm_version() -> str:
    import vllm

    return vllm.__version__
