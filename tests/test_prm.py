"""The PRM's data and metrics (issue 33): slipped traces carried forward, labels on the step tags only,
AUROC and calibration against brute force. No engine, no training (the training run is an experiment,
models/tiny-prm/EXPERIMENTS.md)."""

from __future__ import annotations

import itertools
import random

import pytest

from backend.evaluation.arith import make_problems
from backend.evaluation.oracle import first_error
from backend.settings import REPO_ROOT
from training.prm import STEP_TAG, auroc, encode, expected_calibration_error, prm_metrics, prm_tokenizer
from training.step_data import StepExample, labelled, lines_of, slipped_completion, synthetic_examples


def test_a_slip_is_carried_forward_and_the_labels_turn_bad_there_for_good():
    problems = make_problems(seed=31, n=80, min_ops=3, max_ops=6)
    checked = 0
    for problem in problems:
        completion = slipped_completion(problem, random.Random(problem.id))
        if completion is None:
            continue
        example = labelled(problem, completion, "slipped")
        assert "".join(example.steps) == completion.replace("\n\n", "\n")  # the steps are the lines (an empty one is none)
        wrong_at = first_error(problem.question, list(example.steps))
        assert wrong_at is not None and example.labels == tuple(i < wrong_at for i in range(len(example.steps)))
        assert f"boxed{{{problem.answer}}}" not in completion  # carried forward: the answer is wrong too
        checked += 1
    assert checked > 60


def test_synthetic_examples_mix_clean_and_slipped_traces():
    examples = synthetic_examples(make_problems(seed=32, n=200), random.Random(0), slip_share=0.5)
    sources = {e.source for e in examples}
    assert sources == {"clean", "slipped"}
    assert all(all(e.labels) for e in examples if e.source == "clean")
    assert all(not all(e.labels) for e in examples if e.source == "slipped")


def test_lines_keep_their_newlines_and_rejoin():
    text = "Let me compute.\n37 + 48\n= 85\n</think>\n\nThe answer is \\boxed{85}."
    assert "".join(lines_of(text)) == text.replace("\n\n", "\n")  # an empty line is not a step
    assert lines_of(text)[0] == "Let me compute.\n"


def test_labels_sit_on_the_step_tags_only():
    tokenizer = prm_tokenizer(REPO_ROOT / "models" / "l1-tiny")
    tag = tokenizer.convert_tokens_to_ids(STEP_TAG)
    assert tag == 448  # one new id after the policy's 448
    example = StepExample("Compute 37 + 48.", ("37 + 48: 7 + 8 = 15, 3 + 4 + 1 = 8, so 85.\n", "So the answer is 84.\n"), (True, False), "clean", 1)
    encoded = encode(tokenizer, example, 1000)
    tagged = [i for i, token in enumerate(encoded["input_ids"]) if token == tag]
    assert len(tagged) == 2
    assert [encoded["labels"][i] for i in tagged] == [1, 0]
    assert all(label == -100 for i, label in enumerate(encoded["labels"]) if i not in tagged)
    # Cut at a step when too long: never half a step, never a tag without its step.
    short = encode(tokenizer, example, len(encoded["input_ids"]) - 3)
    assert short["input_ids"].count(tag) == 1 and short["input_ids"][-1] == tag


def _auroc_brute(scores, labels):
    pairs = [(p, n) for p, lp in zip(scores, labels) if lp for n, ln in zip(scores, labels) if not ln]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_brute_force_with_ties(seed):
    rng = random.Random(seed)
    scores = [round(rng.random(), 1) for _ in range(60)]
    labels = [rng.random() < 0.6 for _ in range(60)]
    assert auroc(scores, labels) == pytest.approx(_auroc_brute(scores, labels))


def test_calibration_error_and_first_error_detection():
    assert expected_calibration_error([0.9] * 10, [True] * 9 + [False]) == pytest.approx(0.0)
    assert expected_calibration_error([0.9] * 10, [True] * 5 + [False] * 5) == pytest.approx(0.4)
    examples = [StepExample("q", ("a", "b", "c"), labels, "policy", 1) for labels in itertools.islice(
        [(True, True, True), (True, False, False), (False, False, False)], 3)]
    scores = [[0.9, 0.8, 0.7], [0.9, 0.2, 0.1], [0.8, 0.3, 0.1]]
    metrics = prm_metrics(examples, scores)
    assert metrics["clean_without_alarm"] == 1.0
    assert metrics["first_error_exact"] == 0.5 and metrics["first_error_within_1"] == 1.0
    assert metrics["traces_with_error"] == 2 and metrics["step_accuracy"] == pytest.approx(8 / 9, abs=1e-4)


def test_the_prm_job_file_reads_as_a_prm_job():
    from training.config import ConfigError, config_from_dict, load_job
    from training.prm import PRMConfig

    job = load_job(REPO_ROOT / "training" / "configs" / "tiny-prm.yaml", output_dir="/tmp/prm-out")
    assert isinstance(job, PRMConfig) and job.output_dir == "/tmp/prm-out" and job.policy == "models/l1-tiny"
    with pytest.raises(ValueError, match="slip_share 2"):
        PRMConfig(slip_share=2.0)
    with pytest.raises(ConfigError, match="unknown field 'learning_rat'"):
        config_from_dict({"learning_rat": 0.1}, where="tiny-prm.yaml", cls=PRMConfig)


def test_a_prm_folder_is_a_verifier_and_not_a_model_to_generate_with(tmp_path):
    import json

    from backend.serving.registry import ModelRegistry

    for name, extra in (("policy", {}), ("judge", {"prm_config.json": json.dumps({"step_tag_id": 448})})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        for file, text in extra.items():
            (tmp_path / name / file).write_text(text)
    registry = ModelRegistry(tmp_path)
    assert [s.is_verifier for s in registry.local_models()] == [True, False]  # judge, policy (sorted)
    from backend.service.budgetlab import Budgetlab

    lab = Budgetlab.__new__(Budgetlab)  # only the registry is needed for these two lists
    lab.registry, lab.default_model, lab.endpoints, lab.remote_verifiers = registry, "policy", {}, {}
    assert "judge" not in lab.model_names() and "policy" in lab.model_names()
    assert lab.verifier_names() == ["oracle", "judge"]
