"""The tiny base model's training job: tokenizer, model, SFT, evals, card, in one run.

``app.py train`` runs it for a job file with ``job: tiny_base`` (`TinyBaseConfig`);
``python -m training.tiny`` runs it from flags.

    python app.py train --config training/configs/tiny-r1-base.yaml
    python -m training.tiny --out models/tiny-r1-base --check-only --check-vllm
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from training.model_card import write_base_card
from training.tiny.data import STYLE_WEIGHTS, tokenizer_corpus
from training.tiny.evaluate import check_vllm, quick_eval, vllm_version
from training.tiny.model import ModelShape, build_model, save
from training.tiny.sft import train
from training.tiny.tokenizer import build_tokenizer, token_ids
from training.traces import OPENINGS


def build_untrained(out_dir: str | Path, seed: int = 0) -> Path:
    """A random-weight model directory (tokenizer trained on a small corpus) in a few seconds."""
    out = Path(out_dir)
    tokenizer = build_tokenizer(tokenizer_corpus(seed, n=600))
    model = build_model(tokenizer, seed)
    save(model, tokenizer, out)
    return out


def _f(default, help: str):  # noqa: A002 - "help" reads best in the field list
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TinyBaseConfig:
    """The base model's training job (``job: tiny_base`` in a job file for ``app.py train``; the flags of ``python -m training.tiny``)."""

    out: str = _f("models/tiny-r1-base", "folder the model, its card and train_summary.json are saved to")
    seed: int = _f(0, "seed of the tokenizer corpus, the weights and the training problems")
    steps: int = _f(2400, "planned optimizer steps (the LR schedule's length)")
    max_minutes: float = _f(8.5, "stop training after this long even if steps remain")
    hidden_size: int = _f(ModelShape.hidden_size, "model width, a multiple of head_dim")
    layers: int = _f(ModelShape.num_hidden_layers, "transformer layers")
    head_dim: int = _f(ModelShape.hidden_size // ModelShape.num_attention_heads, "width of one attention head")
    intermediate_size: int = _f(ModelShape.intermediate_size, "MLP width")
    lr: float = _f(3e-3, "peak AdamW learning rate")
    batch_tokens: int = _f(1024, "padded tokens per batch")
    time_aware_lr: bool = _f(False, "cosine progress = max(steps, time) used: annealed even if cut by time, not bit-reproducible")
    eval_n: int = _f(50, "fresh problems of the quick evals")
    threads: int = _f(2, "torch CPU threads")
    check_vllm: bool = _f(False, "afterwards, load the saved model in vLLM (CPU) and check its output format")

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

    @property
    def shape(self) -> ModelShape:
        heads = self.hidden_size // self.head_dim
        return ModelShape(hidden_size=self.hidden_size, intermediate_size=self.intermediate_size, num_hidden_layers=self.layers,
                          num_attention_heads=heads, num_key_value_heads=heads)

    def command(self) -> str:
        """The ``python -m training.tiny`` command that runs this job."""
        flags = [f"--{f.name.replace('_', '-')}" + ("" if isinstance(f.default, bool) else f" {getattr(self, f.name)}")
                 for f in dataclasses.fields(self) if getattr(self, f.name) != f.default or f.name in ("out", "seed", "steps")]
        return " ".join(["python -m training.tiny", *flags])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the tiny R1-style base model on the arith suite (CPU).")
    for f in dataclasses.fields(TinyBaseConfig):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            ap.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            ap.add_argument(flag, type=type(f.default), default=f.default, help=f"{f.metadata['help']} [default: %(default)s]")
    ap.add_argument("--check-only", action="store_true", help="skip training; only the checks on --out")
    args = ap.parse_args(argv)
    fields = {f.name for f in dataclasses.fields(TinyBaseConfig)}
    run_base_job(TinyBaseConfig(**{k: v for k, v in vars(args).items() if k in fields}), check_only=args.check_only)


def run_base_job(cfg: TinyBaseConfig, check_only: bool = False, command: str = "") -> Path:
    """Train (unless ``check_only``), evaluate and save the base model into ``cfg.out``, then check
    it in vLLM if asked; ``command`` is how the job was started, for the model card."""
    # On a shared CPU, OpenMP's default spin-waiting makes 2 threads ~5x slower than 1 when
    # other processes hold the cores; passive waiting avoids that. Read when torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    if not check_only:
        summary = _train_and_evaluate(cfg, out, command or cfg.command())
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_base_card(out, summary)
        print(f"saved to {out} ({summary['weights_bytes'] / 1e6:.1f} MB weights) in {summary['total_seconds']:.0f} s")
    if cfg.check_vllm:
        _check_in_vllm(cfg, out)
    return out


def _train_and_evaluate(cfg: TinyBaseConfig, out: Path, command: str) -> dict:
    """Tokenizer, model, SFT, save, quick evals: the summary the card and train_summary.json hold."""
    import torch

    t0 = time.time()
    random.seed(cfg.seed)
    tokenizer = build_tokenizer(tokenizer_corpus(cfg.seed))
    print(f"tokenizer: {len(tokenizer)} tokens, ids {token_ids(tokenizer)}", flush=True)
    model = build_model(tokenizer, cfg.seed, cfg.shape)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters", flush=True)
    train_info = train(model, tokenizer, cfg.seed, cfg.steps, cfg.max_minutes, lr=cfg.lr, tokens_per_batch=cfg.batch_tokens,
                       time_aware_lr=cfg.time_aware_lr)
    save(model, tokenizer, out)
    evals = _quick_evals(model, tokenizer, cfg)
    return {
        "command": command,
        "seed": cfg.seed,
        "threads": cfg.threads,
        "parameters": n_params,
        "shape": cfg.shape.__dict__,
        "tokenizer_size": len(tokenizer),
        "vocab_size": model.config.vocab_size,
        "weights_dtype": "float32",
        "weights_bytes": sum(f.stat().st_size for f in out.glob("*.safetensors")),
        "token_ids": token_ids(tokenizer),
        "style_weights": STYLE_WEIGHTS,
        "train": train_info,
        **evals,
        "total_seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
    }


def _quick_evals(model, tokenizer, cfg: TinyBaseConfig) -> dict:
    """Greedy, sampled, and greedy with each style's opening prefilled, on the same fresh problems."""
    greedy = quick_eval(model, tokenizer, cfg.seed, n=cfg.eval_n)
    print("greedy eval:", json.dumps(greedy), flush=True)
    sampled = quick_eval(model, tokenizer, cfg.seed, n=cfg.eval_n, do_sample=True)
    print("sampled eval:", json.dumps(sampled), flush=True)
    forced = {}
    for style in OPENINGS:
        forced[style] = quick_eval(model, tokenizer, cfg.seed, n=cfg.eval_n, style=style)
        print(f"greedy eval, {style} forced:", json.dumps(forced[style]), flush=True)
    return {"eval_greedy": greedy, "eval_sampled": sampled, "eval_forced_style": forced}


def _check_in_vllm(cfg: TinyBaseConfig, out: Path) -> None:
    """Serve the saved model in vLLM and record the check next to the training numbers."""
    res = check_vllm(out, seed=cfg.seed)
    for r in res["rows"]:
        print(json.dumps(r))
    print(f"vLLM: format {res['format_rate']:.0%}, </think> as one id ({res['think_end_id']}) {res['think_end_single_id_rate']:.0%}, "
          f"accuracy {res['accuracy']:.0%} (T=0.6), {res['greedy_accuracy']:.0%} (greedy)")
    summary_path = out / "train_summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        summary["vllm_check"] = {k: v for k, v in res.items() if k != "rows"} | {
            "vllm": vllm_version(),
            "problems": len(res["rows"]),
            "example": next((r["text"] for r in res["rows"] if r["correct"]), res["rows"][0]["text"]),
        }
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        write_base_card(out, summary)
