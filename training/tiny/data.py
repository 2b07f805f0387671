"""The tiny model's SFT data: examples of the arith suite under the three prompt forms, in padded batches.

    text, completion, style = make_example(problem, random.Random(0))
    for input_ids, attention_mask, labels in padded_batches(pool, pad_id, 1024, random.Random(0)): ...
"""

from __future__ import annotations

import random

from backend.controllers.prompts import THINK_END, base_prompt, l1_exact_prompt, l1_max_prompt
from backend.evaluation.arith import ArithProblem, make_problems
from training.tiny.tokenizer import encode_example
from training.traces import format_completion, make_trace

STYLE_WEIGHTS = {"terse": 0.2, "brief": 0.2, "steps": 0.3, "checked": 0.3}
# Share of completions answered "Final Answer: \\boxed{N}" (the s1 controller's answer opening).
FINAL_ANSWER_FORM_SHARE = 0.2
PROMPT_FORMS = ("base", "l1_exact", "l1_max")
BUDGET_RANGE = (16, 512)

# Seeds of the problem streams, offset from --seed so that they never meet.
TOKENIZER_SEED_OFFSET = 1_000
TRAIN_SEED_OFFSET = 2_000
EVAL_SEED_OFFSET = 9_000


def user_text(problem: ArithProblem, rng: random.Random) -> str:
    """One of the three prompt forms of backend/controllers/prompts.py, with a random budget N."""
    form = rng.choice(PROMPT_FORMS)
    if form == "base":
        return base_prompt(problem.question)
    budget = rng.randint(*BUDGET_RANGE)
    if form == "l1_exact":
        return l1_exact_prompt(problem.question, budget)
    return l1_max_prompt(problem.question, budget)


def pick_style(rng: random.Random) -> str:
    return rng.choices(list(STYLE_WEIGHTS), weights=list(STYLE_WEIGHTS.values()))[0]


def make_example(problem: ArithProblem, rng: random.Random) -> tuple[str, str, str]:
    """(user text, assistant completion without EOS, style) for one problem."""
    style = pick_style(rng)
    thinking = make_trace(problem, style, rng)
    final_form = rng.random() < FINAL_ANSWER_FORM_SHARE
    return user_text(problem, rng), format_completion(thinking, problem.answer, final_form), style


def plain_example(problem: ArithProblem, rng: random.Random, column_style: str = "compact") -> tuple[str, str]:
    """(user text, completion) under the plain prompt (no length instruction), in the base's styles:
    what s1, hard_cap and the other plain-prompt controllers send, so that a model fine-tuned
    further (the L1 warm start) keeps reasoning there as its base did."""
    thinking = make_trace(problem, pick_style(rng), rng, column_style)
    return base_prompt(problem.question), format_completion(thinking, problem.answer, rng.random() < FINAL_ANSWER_FORM_SHARE)


def tokenizer_corpus(seed: int, n: int = 3000) -> list[str]:
    """Plain texts (prompts and completions, without the think tags) to train BPE on."""
    rng = random.Random(seed + TOKENIZER_SEED_OFFSET)
    texts = []
    for p in make_problems(seed + TOKENIZER_SEED_OFFSET, n):
        prompt, completion, _ = make_example(p, rng)
        texts.append(prompt)
        texts.append(completion.replace(THINK_END, ""))
        # a few extra traces in the long style so that "Wait", "check", ... become single tokens
        texts.append(make_trace(p, "checked", rng))
    return texts


def batches(tokenizer, seed: int, tokens_per_batch: int, pool_size: int = 512):
    """Endless padded batches of arith SFT examples (see `padded_batches`), seeded."""
    rng = random.Random(seed + TRAIN_SEED_OFFSET)
    chunk = 0
    while True:
        problems = make_problems(seed + TRAIN_SEED_OFFSET + 7919 * chunk, pool_size)
        chunk += 1
        pool = [encode_example(tokenizer, *make_example(p, rng)[:2]) for p in problems]
        yield from padded_batches(pool, tokenizer.pad_token_id, tokens_per_batch, rng)


def padded_batches(pool: list[tuple], pad: int, tokens_per_batch: int, rng: random.Random):
    """One pass over ``pool`` (token ids, prompt length[, per-token loss weights]) as padded,
    length-bucketed batches (input_ids, attention_mask, labels[, weights]) in a shuffled order.

    Labels are -100 on the prompt and on padding: the loss is on thinking + answer + EOS.
    """
    import torch

    pool = sorted(pool, key=lambda x: len(x[0]))
    groups, cur = [], []
    for ex in pool:
        if cur and (len(cur) + 1) * len(ex[0]) > tokens_per_batch:
            groups.append(cur)
            cur = []
        cur.append(ex)
    if cur:
        groups.append(cur)
    rng.shuffle(groups)
    weighted = len(pool[0]) > 2 if pool else False
    for group in groups:
        width = max(len(ex[0]) for ex in group)
        input_ids = torch.full((len(group), width), pad, dtype=torch.long)
        attn = torch.zeros((len(group), width), dtype=torch.long)
        labels = torch.full((len(group), width), -100, dtype=torch.long)
        weights = torch.zeros((len(group), width), dtype=torch.float32)
        for i, ex in enumerate(group):
            ids, n_prompt = ex[0], ex[1]
            t = torch.tensor(ids, dtype=torch.long)
            input_ids[i, : len(ids)] = t
            attn[i, : len(ids)] = 1
            labels[i, n_prompt : len(ids)] = t[n_prompt:]
            if weighted:
                weights[i, n_prompt : len(ids)] = torch.tensor(ex[2][n_prompt:], dtype=torch.float32)
        yield (input_ids, attn, labels, weights) if weighted else (input_ids, attn, labels)
