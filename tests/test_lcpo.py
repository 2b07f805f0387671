"""LCPO jobs: config validation, and real TRL GRPO steps on the tiny base model (CPU), with resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from backend.settings import REPO_ROOT
from training.config import ConfigError, LCPOConfig, config_from_dict, load_config, load_job
from training.lcpo import training_rows

BASE = REPO_ROOT / "models" / "tiny-r1-base"


@pytest.mark.parametrize(("changes", "message"), [
    ({"num_generations": 1}, "needs at least 2"),
    ({"num_generations": 4, "per_device_train_batch_size": 6}, "not divisible by num_generations 4"),
    ({"n_max": 4096, "max_context": 2048, "max_completion_length": 8192}, "n_max 4096: must be below the model's context of 2048"),
    ({"n_min": 300, "n_max": 200}, "need 1 <= n_min <= n_max"),
    ({"max_completion_length": 100, "n_max": 256}, "below n_max 256"),
    ({"mode": "medium"}, "mode 'medium'"),
    ({"loss_type": "ppo"}, "loss_type 'ppo'"),
    ({"delta": 1.5}, "delta 1.5"),
    ({"base_model": ""}, "base_model is empty"),
    ({"warm_start_problems": 10, "warm_start_max_slack": 0.9}, r"warm_start_max_slack 0.9: must be 1 or more"),
    ({"warm_start_problems": 10, "warm_start_traces": 100}, "two kinds of warm start: set one of them to 0"),
    ({"warm_start_traces": 100, "dataset": "gsm8k.jsonl"}, "budget-aware traces are written for the arith suite"),
    ({"warm_start_traces": 100, "warm_start_tick_style": "roman"}, "warm_start_tick_style 'roman': choose token or digits"),
    ({"warm_start_traces": 100, "n_min": 64, "warm_start_n_min": 80}, r"warm_start_n_min 80: must be 0 \(n_min\) or from 1 to n_min \(64\)"),
    ({"warm_start_traces": 100, "n_max": 512, "warm_start_n_max": 400}, r"warm_start_n_max 400: must be 0 \(n_max\) or at least n_max \(512\)"),
    ({"warm_start_traces": 100, "warm_start_tick_every": 10, "n_max": 512, "warm_start_n_max": 600}, "the largest SFT budget 600: the countdown's ticks"),
    ({"warm_start_traces": 100, "warm_start_close_tick_weight": 0.0}, "warm_start_close_tick_weight 0.0: a positive weight"),
    ({"warm_start_traces": 100, "warm_start_column_style": "wide"}, "warm_start_column_style 'wide': choose compact or explicit"),
    ({"warm_start_traces": 100, "warm_start_slip_share": 0.3, "warm_start_column_style": "explicit"}, "slips are written for the compact column style only"),
])
def test_bad_configs_are_refused_with_what_to_change(changes, message):
    with pytest.raises(ConfigError, match=message):
        LCPOConfig(**{"base_model": "m", **changes})


def test_each_problem_names_its_field_for_the_form():
    with pytest.raises(ConfigError) as caught:
        LCPOConfig(base_model="m", num_generations=1, learning_rate=0.0, delta=2.0)
    assert [field for field, _ in caught.value.problems] == ["num_generations", "learning_rate", "delta"]
    assert all(message in str(caught.value) for _, message in caught.value.problems)
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"base_model": "m", "max_steps": "3"})
    assert caught.value.problems == (("max_steps", "max_steps = '3' is a str; it must be int"),)


def test_job_files_are_checked_field_by_field(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("base_model: m\nmax_steps: 3\nlearning_rate: 1\n")
    config = load_config(job, output_dir="/tmp/x")
    assert (config.max_steps, config.learning_rate, config.output_dir) == (3, 1.0, "/tmp/x")
    with pytest.raises(ConfigError, match="unknown field 'max_step'"):
        config_from_dict({"base_model": "m", "max_step": 3})
    with pytest.raises(ConfigError, match="max_steps = '3' is a str; it must be int"):
        config_from_dict({"base_model": "m", "max_steps": "3"})
    job.write_text("base_model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(job)


def test_a_folder_holding_another_jobs_config_is_refused(tmp_path):
    """Running a changed recipe in an old job's folder would resume the old warm start and
    checkpoints: refused, naming what changed; the same job (or a longer one, or one exported
    elsewhere) resumes."""
    import dataclasses

    from training.lcpo import CONFIG_FILE, check_same_job

    job = LCPOConfig(base_model="m", output_dir=str(tmp_path), max_steps=30, learning_rate=1e-6)
    check_same_job(tmp_path, job)  # an empty folder
    (tmp_path / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(job)))
    check_same_job(tmp_path, job)
    check_same_job(tmp_path, dataclasses.replace(job, export_dir=str(tmp_path / "elsewhere"), max_steps=60))  # a longer run of it
    with pytest.raises(ConfigError, match=r"holds a job with another config \(learning_rate: 1e-06 -> 2e-05; warm_start_epochs: 2 -> 5\).*another --output-dir"):
        check_same_job(tmp_path, dataclasses.replace(job, learning_rate=2e-5, warm_start_epochs=5))


def test_training_rows_use_the_controllers_prompts_and_draw_targets_in_range():
    config = LCPOConfig(base_model="m", mode="both", num_examples=40, n_min=32, n_max=64)
    rows = training_rows(config)
    assert len(rows) == 40 and {r["mode"] for r in rows} == {"exact", "max"}
    assert sum(r["mode"] == "max" for r in rows) == 20
    for row in rows:
        assert 32 <= row["target_tokens"] <= 64
        text = row["prompt"][-1]["content"]
        phrase = f"Think for maximum {row['target_tokens']} tokens." if row["mode"] == "max" else f"Think for {row['target_tokens']} tokens."
        assert phrase in text
    assert len({r["target_tokens"] for r in rows}) > 10
    assert training_rows(config) == rows  # seeded


def _train(tmp_path, *extra):
    cmd = [sys.executable, "app.py", "train", "--config", "training/configs/tiny-smoke.yaml", "--output-dir", str(tmp_path / "job"), *extra]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)


@pytest.mark.train
def test_grpo_steps_change_the_model_log_metrics_and_resume(tmp_path):
    job = tmp_path / "job"
    done = _train(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "reward" in line]
    assert [line["step"] for line in steps] == [1, 2, 3, 4]
    for key in ("reward", "lcpo/correct", "lcpo/mean_abs_rel_dev", "lcpo/mean_length", "completions/clipped_ratio"):
        assert all(isinstance(line[key], float) for line in steps), key
    before, after = load_file(BASE / "model.safetensors"), load_file(job / "final" / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not before[k].equal(after[k]) for k in before)
    assert json.loads((job / "final" / "lcpo_config.json").read_text())["mode"] == "both"
    assert (job / "final" / "tokenizer.json").is_file() and (job / "checkpoint-4").is_dir()

    # A longer job on the same folder resumes from checkpoint-4 instead of starting over.
    job_file = tmp_path / "longer.yaml"
    job_file.write_text((REPO_ROOT / "training/configs/tiny-smoke.yaml").read_text().replace("max_steps: 4", "max_steps: 6"))
    cmd = [sys.executable, "app.py", "train", "--config", str(job_file), "--output-dir", str(job)]
    again = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    lines = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "reward" in line] == [1, 2, 3, 4, 5, 6]
    state = json.loads((job / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6


def test_train_refuses_a_bad_job_with_one_line(tmp_path):
    job = tmp_path / "bad.yaml"
    job.write_text("base_model: tiny-r1-base\nnum_generations: 3\nper_device_train_batch_size: 8\noutput_dir: x\n")
    done = subprocess.run([sys.executable, "app.py", "train", "--config", str(job)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "not divisible by num_generations 3" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_base_model_jobs_are_typed_and_checked(tmp_path):
    from training.tiny.job import TinyBaseConfig

    job = tmp_path / "base.yaml"
    job.write_text("job: tiny_base\nsteps: 10\nmax_minutes: 1\n")
    config = load_job(job, output_dir=str(tmp_path / "out"))
    assert isinstance(config, TinyBaseConfig) and (config.steps, config.out) == (10, str(tmp_path / "out"))
    job.write_text("job: tiny_base\nhidden_size: 100\nhead_dim: 32\n")
    with pytest.raises(ConfigError, match="hidden_size 100 is not a multiple of head_dim 32"):
        load_job(job)
    job.write_text("job: distill\n")
    with pytest.raises(ConfigError, match="job 'distill': choose lcpo, tiny_base or prm"):
        load_job(job)
    with pytest.raises(ConfigError, match="warm_start_epochs 0: must be a positive whole number"):
        LCPOConfig(base_model="m", warm_start_problems=10, warm_start_epochs=0)


def test_warm_start_relabels_samples_with_their_own_length():
    """Exact: every well-formed sample in range with its own length as N, a wrong one only when
    no correct sample of its problem is as short; Max: the same samples, under a maximum a
    little above their length (a wrong one's below the shortest correct length)."""
    import random

    from training.warm_start import relabel

    def sample(answer, n, closed=True, question="Compute 2 + 3.", gold="5"):
        text = f"x\n</think>\n\nThe answer is \\boxed{{{answer}}}." if closed else "x = 5, so"
        return {"question": question, "gold": gold, "text": text, "token_ids": list(range(n))}

    samples = [sample(5, 40), sample(6, 40), sample(5, 10), sample(5, 300), sample(5, 100), sample(5, 80, closed=False)]
    hard = [sample(3, 40, question="Compute 9 + 8.", gold="17"), sample(17, 120, question="Compute 9 + 8.", gold="17"),
            sample(16, 150, question="Compute 9 + 8.", gold="17")]
    examples, counts = relabel(samples + hard, "both", 32, 256, random.Random(0))
    assert counts == {"samples": 9, "well_formed": 8, "correct": 5, "examples": 9, "exact_examples": 4, "max_examples": 5}
    exact = [e for e in examples if e["mode"] == "exact"]
    # 10 and 300 tokens are outside [32, 256]; the wrong 40 of "2 + 3" is as long as a correct one,
    # the wrong 150 of "9 + 8" longer than its correct 120; the wrong 40 of "9 + 8" is its best guess
    assert [(e["user"].split(".")[0], e["target"]) for e in exact] == [("Compute 2 + 3", 40), ("Compute 2 + 3", 100),
                                                                      ("Compute 9 + 8", 40), ("Compute 9 + 8", 120)]
    assert exact[0]["user"].endswith("Think for 40 tokens.")
    maxes = [e for e in examples if e["mode"] == "max"]
    assert [len(e["completion_ids"]) for e in maxes] == [40, 10, 100, 40, 120]
    assert maxes[1]["target"] == 32  # a 10-token answer obeys the smallest maximum
    assert 40 <= maxes[3]["target"] <= 48  # the guess: below the 120 of the correct sample
    for e in maxes:
        n = len(e["completion_ids"])
        assert n <= e["target"] <= max(32, 1.2 * n + 1)
        assert e["user"].endswith(f"Think for maximum {e['target']} tokens.")
    assert relabel(samples, "exact", 32, 256, random.Random(0))[1]["max_examples"] == 0
    wide = [e for e in relabel(samples, "max", 32, 256, random.Random(0), max_slack=2.0)[0]]
    assert [len(e["completion_ids"]) for e in wide] == [40, 10, 100]
    assert all(len(e["completion_ids"]) <= e["target"] <= max(32, 2 * len(e["completion_ids"]) + 1) for e in wide)
    assert wide[2]["target"] > 120  # drawn in [100, 200] (seeded), beyond the default 1.2 slack


@pytest.mark.train
def test_warm_start_then_grpo_runs_end_to_end(tmp_path):
    """The tiny L1 recipe's path in small: vLLM samples the base model (a child process), the
    samples are relabeled and fine-tuned on with entropy weights, then one GRPO step."""
    job = tmp_path / "warm.yaml"
    job.write_text((REPO_ROOT / "training/configs/tiny-smoke.yaml").read_text().replace("max_steps: 4", "max_steps: 1")
                   + "warm_start_problems: 6\nwarm_start_per_problem: 2\nwarm_start_epochs: 1\nwarm_start_decision_weight: 10.0\n"
                   + f"export_dir: {tmp_path / 'exported'}\n")
    out = tmp_path / "job"
    done = subprocess.run([sys.executable, "app.py", "train", "--config", str(job), "--output-dir", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "warm_start" / "warm_start.json").read_text())
    assert summary["samples"] == 12 and summary["well_formed"] >= 6
    assert summary["exact_examples"] + summary["max_examples"] == summary["examples"] > 0
    samples = [json.loads(line) for line in (out / "warm_start_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12 and all(s["token_ids"] for s in samples)
    base, warm = load_file(BASE / "model.safetensors"), load_file(out / "warm_start" / "model.safetensors")
    assert any(not base[k].equal(warm[k]) for k in base)
    exported = tmp_path / "exported"
    assert (exported / "model.safetensors").is_file() and json.loads((exported / "lcpo_config.json").read_text())["warm_start_problems"] == 6
    card = (exported / "README.md").read_text()
    assert f"--config {job}" in card and "warm start" in card and "quality:start" in card


@pytest.mark.train
def test_a_warm_start_on_budget_aware_traces_adds_the_ticks_and_trains_on_them(tmp_path):
    """The generated-traces warm start (training/budget_sft.py): no sampling, the tick tokens in the
    model's spare embedding rows (same shapes as the base), then one GRPO step on the result."""
    job = tmp_path / "traces.yaml"
    job.write_text((REPO_ROOT / "training/configs/tiny-smoke.yaml").read_text().replace("max_steps: 4", "max_steps: 1")
                   + "warm_start_traces: 40\nwarm_start_steps: 3\nwarm_start_tick_every: 10\n")
    out = tmp_path / "job"
    done = subprocess.run([sys.executable, "app.py", "train", "--config", str(job), "--output-dir", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "warm_start" / "warm_start.json").read_text())
    assert summary["sft"]["steps_done"] == 3 and sum(summary["plans"].values()) - summary["plans"]["unplaceable"] == 40
    assert not (out / "warm_start_samples.jsonl").exists()
    base, warm, final = (load_file(d / "model.safetensors") for d in (BASE, out / "warm_start", out / "final"))
    assert {k: v.shape for k, v in warm.items()} == {k: v.shape for k, v in base.items()} == {k: v.shape for k, v in final.items()}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    assert tokenizer.convert_tokens_to_ids("‹24›") < warm["model.embed_tokens.weight"].shape[0]
    assert "budget-aware traces" in (out / "final" / "README.md").read_text()


@pytest.mark.train
def test_two_processes_train_one_job_data_parallel(tmp_path):
    """What `accelerate launch` / `torchrun` runs on several GPUs, here with two CPU processes (gloo):
    the warm start runs once (in the first process, the other waits and reuses it), each step
    is logged once, and both processes finish the job."""
    job = tmp_path / "ddp.yaml"
    job.write_text((REPO_ROOT / "training/configs/tiny-smoke.yaml").read_text().replace("max_steps: 4", "max_steps: 2")
                   + "warm_start_problems: 6\nwarm_start_per_problem: 2\nwarm_start_epochs: 1\n")
    out = tmp_path / "job"
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run([str(torchrun), "--nproc_per_node", "2", "app.py", "train", "--config", str(job), "--output-dir", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (done.stdout + done.stderr).count("app.py train: model saved in") == 2  # both processes ran the job to its end
    assert len((out / "warm_start_samples.jsonl").read_text().splitlines()) == 12  # sampled once, not once per process
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 2]  # each step once, then the run's summary line
    assert (out / "final" / "model.safetensors").is_file() and (out / "final" / "README.md").is_file()
