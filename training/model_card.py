"""Model cards (README.md): the tiny base model's, and the LCPO models' (recipe, numbers, measured quality).

`write_base_card` is called when the tiny base model's job (`training.tiny.job`) finishes or is
checked in vLLM: what it is, how it was made, its quick eval. `write_lcpo_card` is called when an LCPO job finishes; it writes what the job knows (config,
warm start, GRPO metrics, time) and keeps the block between ``<!-- quality:start -->`` and
``<!-- quality:end -->`` of an existing card, which ``bench/tiny_l1_quality.py --write-card``
fills with measured numbers. So retraining never erases a measurement silently: the old one
stays until the bench is run again, and the card says which job it belongs to.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

QUALITY_START, QUALITY_END = "<!-- quality:start -->", "<!-- quality:end -->"
EXAMPLE_START, EXAMPLE_END = "<!-- example:start -->", "<!-- example:end -->"
NOT_MEASURED = "Not measured yet: run `python bench/tiny_l1_quality.py --write-card <this folder>/README.md`."


def card_block(card: str, start: str = QUALITY_START, end: str = QUALITY_END) -> str:
    """A measured block of a card (the quality table, or the Compare example), or a placeholder saying how to measure."""
    if start in card and end in card:
        return card[card.index(start): card.index(end) + len(end)]
    return f"{start}\n{NOT_MEASURED}\n{end}"


def replace_card_block(card: str, text: str, start: str = QUALITY_START, end: str = QUALITY_END, heading: str = "Measured quality") -> str:
    """The card with the block between ``start`` and ``end`` holding ``text`` (appended under ``heading`` if absent)."""
    block = f"{start}\n{text}\n{end}"
    if start in card and end in card:
        return card[: card.index(start)] + block + card[card.index(end) + len(end):]
    return card.rstrip() + f"\n\n## {heading}\n\n" + block + "\n"


def _metrics_summary(lines: list[dict[str, Any]]) -> dict[str, Any]:
    steps = [m for m in lines if "reward" in m]
    if not steps:
        return {}
    head, tail = steps[: max(1, len(steps) // 5)], steps[-max(1, len(steps) // 5):]

    def mean(rows, key):
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        return round(sum(values) / len(values), 4) if values else None

    keys = ("reward", "lcpo/correct", "lcpo/mean_abs_rel_dev", "lcpo/over_target", "lcpo/mean_length")
    return {"steps": steps[-1]["step"], "seconds": round(steps[-1].get("elapsed_s", 0.0)),
            "first": {k: mean(head, k) for k in keys}, "last": {k: mean(tail, k) for k in keys}}


def _warm_start_line(warm_info: dict[str, Any], config: dict[str, Any]) -> str:
    sft = warm_info["sft"]
    if "plans" in warm_info:  # budget-aware traces (training/budget_sft.py)
        ticks = (f"a countdown tick about every {config['warm_start_tick_every']} tokens ({config['warm_start_tick_style']}, "
                 f"{config['warm_start_tick_place']})" if config["warm_start_tick_every"] else "no ticks")
        return (f"- warm start (`training/budget_sft.py`): SFT of the base on {config['warm_start_traces']} generated budget-aware traces "
                f"(`training/budget_traces.py`: each worked for exactly N tokens, or at most M, N uniform in [{config.get('warm_start_n_min') or config['n_min']}, {config.get('warm_start_n_max') or config['n_max']}]; {ticks}), {sft['steps_done']} steps, "
                f"final loss {sft['final_loss']}, {sft['train_seconds']:.0f} s training")
    return (f"- warm start (`training/warm_start.py`): {warm_info['samples']} samples of the base model "
            f"({config['warm_start_problems']} problems x {config['warm_start_per_problem']}, T={config['warm_start_temperature']}), "
            f"{warm_info['correct']} correct, relabeled into {warm_info['exact_examples']} Exact and {warm_info['max_examples']} Max "
            f"examples; SFT {sft['steps_done']} steps, final loss {sft['final_loss']}; "
            f"{warm_info['sampling_seconds']:.0f} s sampling + {sft['train_seconds']:.0f} s training")


def write_lcpo_card(model_dir: Path, job_dir: Path, config: dict[str, Any], command: str, existing: str = "", name: str = "") -> None:
    """README.md of an LCPO model (``name``: default the folder's): recipe, warm start, GRPO
    metrics, job time; the measured blocks of ``existing`` (quality table, Compare example) kept."""
    warm = job_dir / "warm_start" / "warm_start.json"
    warm_info = json.loads(warm.read_text()) if warm.exists() else None
    metrics_path = job_dir / "metrics.jsonl"
    metrics = [json.loads(line) for line in metrics_path.read_text().splitlines()] if metrics_path.exists() else []
    grpo = _metrics_summary(metrics)
    name = name or model_dir.name
    lines = [
        f"# {name}",
        "",
        f"An L1-style length-controlled model: `{Path(config['base_model']).name}` after LCPO (GRPO with the L1 paper's "
        f"length-aware reward) in mode `{config['mode']}`, for target lengths N in [{config['n_min']}, {config['n_max']}] "
        "tokens (n_y counts the whole completion: thinking and answer). Prompts are the L1 release's: "
        "\"... Think for N tokens.\" (Exact) and \"... Think for maximum N tokens.\" (Max).",
        "",
        "## How it was made",
        "",
        "```",
        command,
        "```",
        "",
        f"- job config: `lcpo_config.json` in this folder (seed {config['seed']}, training problems: "
        f"{config['dataset']} seed {config['dataset_seed']})",
        f"- reward: Exact `1[correct] - {config['alpha_exact']} * |N - n_y|`; "
        f"Max `1[correct] * clip({config['alpha_max']} * (N - n_y) + {config['delta']}, 0, 1)`",
    ]
    if warm_info:
        lines.append(_warm_start_line(warm_info, config))
    if grpo:
        first, last = grpo["first"], grpo["last"]
        lines += [
            f"- GRPO: {grpo['steps']} steps of {config['per_device_train_batch_size']} completions "
            f"({config['num_generations']} per prompt), lr {config['learning_rate']}, loss `{config['loss_type']}`, "
            f"{grpo['seconds']} s; first fifth -> last fifth of the steps: reward {first['reward']} -> {last['reward']}, "
            f"correct {first['lcpo/correct']} -> {last['lcpo/correct']}, mean |n_y - N| / N "
            f"{first['lcpo/mean_abs_rel_dev']} -> {last['lcpo/mean_abs_rel_dev']} (`metrics.jsonl` of the job folder)",
        ]
    config_file = job_dir / "lcpo_config.json"  # written when the job (or its last resumption) started
    if config_file.exists():
        lines.append(f"- job wall time (warm start and GRPO, from the job's last start to this card): {time.time() - config_file.stat().st_mtime:.0f} s")
    lines += ["", "## Measured quality", "", card_block(existing), "", "## A Compare example", "",
              card_block(existing, EXAMPLE_START, EXAMPLE_END), ""]
    (model_dir / "README.md").write_text("\n".join(lines))


def write_base_card(out: Path, summary: dict) -> None:
    """``out/README.md`` of the tiny base model: what it is, how it was made, the quick eval (and the vLLM check)."""
    lines = _base_intro() + _base_recipe(summary) + _base_eval(summary)
    if "vllm_check" in summary:
        lines += _base_vllm(summary["vllm_check"])
    (out / "README.md").write_text("\n".join(lines) + "\n")


def _base_intro() -> list[str]:
    return [
        "# tiny-r1-base",
        "",
        "A tiny Qwen2 \"reasoning\" model trained from scratch on CPU on budgetlab's built-in arithmetic",
        "suite (`backend/evaluation/arith.py`, dataset `arith`), by `training/tiny/`: the base that the",
        "LCPO model `l1-tiny` is trained from, and the model the `s1` baseline runs on. It thinks inside",
        "`<think> ... </think>` (the chat template's generation prompt opens `<think>\\n`, as",
        "DeepSeek-R1-Distill's does) and answers `The answer is \\boxed{N}.` (or `Final Answer: \\boxed{N}`,",
        "the opening s1 forces). Its traces come in four styles of very different lengths (terse / brief /",
        "steps / checked, see `training/traces.py`), and only the worked ones are reliable; it was not taught",
        "to obey a thinking budget (that is what LCPO adds).",
        "",
    ]


def _base_recipe(summary: dict) -> list[str]:
    tr = summary["train"]
    return [
        "## How it was made",
        "",
        "```",
        summary["command"],
        "```",
        "",
        f"- seed: {summary['seed']}",
        f"- parameters: {summary['parameters']:,} ({summary['shape']})",
        f"- vocabulary: {summary['tokenizer_size']} tokens (byte-level BPE, digits split), model vocab {summary['vocab_size']}",
        f"- weights: {summary['weights_dtype']} safetensors, {summary['weights_bytes'] / 1e6:.1f} MB",
        (f"- training: {tr['steps_done']} steps, {tr['train_tokens']:,} tokens, {tr['train_seconds']:.0f} s "
         f"on {summary['threads']} CPU threads (shared machine), stopped by {tr['stopped_by']}; final loss {tr['final_loss']}"),
        f"- total time (tokenizer + training + eval): {summary['total_seconds']:.0f} s",
        f"- token ids: {summary['token_ids']}",
        "",
    ]


def _base_eval(summary: dict) -> list[str]:
    ev = summary["eval_greedy"]
    lines = [
        "## Quick eval",
        "",
        f"{ev['problems']} fresh problems (seed {ev['problem_seed']}), base prompt, {ev['decoding']} decoding with transformers `generate`:",
        "",
        f"- format (`</think>` then `\\boxed{{...}}`): {ev['format_rate']:.0%}",
        f"- accuracy: {ev['accuracy']:.0%} (1-2 ops: {ev['accuracy_1_2_ops']}, 5-6 ops: {ev['accuracy_5_6_ops']})",
        f"- accuracy by number of operations: {ev['accuracy_by_ops']}",
        f"- thinking tokens: mean {ev['mean_think_tokens']}, min {ev['min_think_tokens']}, max {ev['max_think_tokens']}",
        f"- by style: {ev['by_style']}",
    ]
    if "eval_sampled" in summary:
        es = summary["eval_sampled"]
        lines += ["", (f"Same problems, {es['decoding']}: format {es['format_rate']:.0%}, accuracy {es['accuracy']:.0%}, "
                       f"thinking tokens mean {es['mean_think_tokens']} (min {es['min_think_tokens']}, "
                       f"max {es['max_think_tokens']}), by style: {es['by_style']}")]
    if "eval_forced_style" in summary:
        lines += ["", "Same problems, greedy, with each style's opening prefilled in the think block:", "",
                  "| style | format | accuracy | 1-2 ops | 5-6 ops | mean thinking tokens |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {style} | {e['format_rate']:.0%} | {e['accuracy']:.0%} | {e['accuracy_1_2_ops']} | {e['accuracy_5_6_ops']} | {e['mean_think_tokens']} |"
                  for style, e in summary["eval_forced_style"].items()]
    return lines


def _base_vllm(vc: dict) -> list[str]:
    return [
        "",
        "## Served by vLLM",
        "",
        (f"vLLM {vc['vllm']} on CPU (`LLM(model=..., max_model_len=2048, enforce_eager=True)`, "
         "`VLLM_CPU_KVCACHE_SPACE=1`, weights cast to bf16 by vLLM), chat template applied, "
         f"temperature 0.6, {vc['problems']} problems: format {vc['format_rate']:.0%}, "
         f"`</think>` a single id ({vc['think_end_id']}) in the output token ids "
         f"{vc['think_end_single_id_rate']:.0%}, accuracy {vc['accuracy']:.0%}; greedy on the same "
         f"problems (those of the quick eval): accuracy {vc['greedy_accuracy']:.0%}. Example output:"),
        "",
        "```",
        vc["example"],
        "```",
    ]
