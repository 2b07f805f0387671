"""The tiny model's training loop: plain PyTorch SFT with AdamW, warmup then cosine decay.

    info = train(model, tokenizer, seed=0, steps=2400, max_minutes=8.5)
"""

from __future__ import annotations

import math
import time

from training.tiny.data import batches


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
    opt = _optimizer(model, lr)
    budget_s = max_minutes * 60
    lr_at = lr_schedule(lr, warmup, steps, budget_s if time_aware_lr else None)
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
        cur_lr = lr_at(step, elapsed)
        losses.append(_step(model, opt, batch, cur_lr))
        n_tokens += int(batch[1].sum())
        if step % log_every == 0 or step == steps - 1:
            recent = sum(losses[-log_every:]) / len(losses[-log_every:])
            print(f"step {step:5d}  loss {recent:.4f}  lr {cur_lr:.2e}  tokens {n_tokens}  {time.time() - t0:6.1f}s", flush=True)
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


def _optimizer(model, lr: float):
    """AdamW with weight decay on matrices only (not on norms and biases)."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))


def lr_schedule(lr: float, warmup: int, steps: int, time_budget_s: float | None = None):
    """``lr_at(step, elapsed_s)``: linear warmup, then cosine to 5% at ``steps``.

    A function of the step only, so that a run is reproducible; the time budget only stops a run
    early (then it ends unannealed, and ``stopped_by`` says "time": give fewer --steps on a slower
    or busier CPU). With ``time_budget_s`` (time_aware_lr) the progress is the larger of steps and
    time used, so that a run cut by the time budget still ends annealed, at the cost of bitwise
    reproducibility."""
    def lr_at(step: int, elapsed: float) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        if time_budget_s is not None:
            progress = max(progress, elapsed / time_budget_s)
        return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    return lr_at


def _step(model, opt, batch, lr: float) -> float:
    """One optimizer step on a batch (weighted when it carries per-token weights); its loss."""
    import torch

    for g in opt.param_groups:
        g["lr"] = lr
    if len(batch) > 3:
        loss = weighted_loss(model, *batch)
    else:
        input_ids, attn, labels = batch
        loss = model(input_ids=input_ids, attention_mask=attn, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()
