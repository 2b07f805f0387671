"""A process reward model served by vLLM's pooling runner scores each step as the HF forward does (issue 33).

The PRM here is built as `training.prm` builds one (the l1-tiny backbone, the added <step> tag, a
two-class head) but its head is left untrained, seeded: only the serving is tested. The engine pool
starts it in the "score" role with step pooling at the tag (`backend.serving.local.step_pooling`);
`PRMVerifier` asks it for a trace's steps, on the trace's own token ids.
"""

from __future__ import annotations

import asyncio
import json
import os
import random

import pytest

from backend.controllers.prompts import chat_messages
from backend.evaluation.arith import make_problems
from backend.evaluation.verifiers import PRMVerifier
from backend.serving.client import EngineClient
from backend.serving.engine import EngineConfig
from backend.serving.pool import EnginePool, PoolConfig
from backend.serving.registry import ModelRegistry
from backend.settings import REPO_ROOT
from training.prm import STEP_TAG, prm_tokenizer, step_scores
from training.step_data import labelled, slipped_completion

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def prm_spec(tmp_path_factory):
    import torch
    from transformers import AutoModelForTokenClassification

    folder = tmp_path_factory.mktemp("prm") / "tiny-prm-untrained"
    torch.manual_seed(0)
    tokenizer = prm_tokenizer(REPO_ROOT / "models" / "l1-tiny")
    model = AutoModelForTokenClassification.from_pretrained(REPO_ROOT / "models" / "l1-tiny", num_labels=2, dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "prm_config.json").write_text(json.dumps({"step_tag": STEP_TAG, "step_tag_id": tokenizer.convert_tokens_to_ids(STEP_TAG)}))
    return ModelRegistry(folder.parent).resolve("tiny-prm-untrained"), folder, tokenizer


@pytest.fixture(scope="module")
def scoring(prm_spec, tmp_path_factory):
    config = EngineConfig(kv_cache_gib=1, max_model_len=2048, start_timeout_s=240, dtype="float32")
    pool = EnginePool(config, PoolConfig(memory_gib=6), log_dir=tmp_path_factory.mktemp("prm-logs"), base_env=os.environ)
    with pool.lease(prm_spec[0], "request", role="score") as endpoint:
        yield endpoint
    pool.stop()


def test_the_served_prm_scores_each_step_as_the_hf_forward_does(prm_spec, scoring):
    spec, folder, tokenizer = prm_spec
    problems = [p for p in make_problems(seed=77, n=20, min_ops=3) if slipped_completion(p, random.Random(1))][:4]
    examples = [labelled(p, slipped_completion(p, random.Random(1)), "slipped") for p in problems]
    expected = step_scores(folder, examples)

    async def served():
        async with EngineClient(scoring, timeout_s=60) as client:
            async def prompt_ids(question: str) -> list[int]:
                return await client.chat_prompt_ids(chat_messages(question))

            verifier = PRMVerifier(spec.name, client, tokenizer.convert_tokens_to_ids(STEP_TAG), prompt_ids)
            results = []
            for example in examples:
                step_ids = [tokenizer(step, add_special_tokens=False)["input_ids"] for step in example.steps]
                read = len(await prompt_ids(example.question)) + sum(len(ids) + 1 for ids in step_ids)  # each step and its tag
                results.append((await verifier.score(example.question, list(example.steps), step_ids), read))
            return results

    results = asyncio.run(served())
    for example, (result, read), hf in zip(examples, results, expected):
        assert len(result.scores) == len(example.steps) == len(hf)
        assert result.scores == pytest.approx(hf, abs=1e-4)
        assert result.tokens == read  # the verifier tokens billed: every token the PRM read
