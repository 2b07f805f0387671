"""The tiny "reasoning" base model, trained from scratch on the arith suite (CPU minutes).

The base of the LCPO model ``l1-tiny`` (and the model the s1 baseline runs on): a Qwen2 causal
LM of a few million parameters with an R1-style chat format (the generation prompt opens
``<think>\\n``; the model thinks, closes ``</think>`` and answers ``The answer is \\boxed{N}.``,
or ``Final Answer: \\boxed{N}``, the opening s1 forces). It is fine-tuned (SFT) on thinking
traces of four styles from `training.traces` (terse / brief / steps / checked: tens to hundreds
of tokens, and only the worked ones reliable), under the three prompt forms of
`backend.controllers.prompts` (base, L1-Exact and L1-Max with a random N), so that LCPO and
serving are in distribution. For this base model the trace style does not depend on N.

The parts: ``tokenizer`` (a byte-level BPE fitted on the suite, digits split, think tags as
single added tokens), ``model`` (the Qwen2 shape, saving), ``data`` (SFT examples and padded
batches), ``sft`` (the plain-PyTorch training loop), ``evaluate`` (a quick eval with
transformers, a check in vLLM), ``job`` (the job that ties them together, and its command
line); the model card is written by `training.model_card`.

Everything runs on CPU with two torch threads. The shipped model is made by the job file
``training/configs/tiny-r1-base.yaml`` (6000 steps, about 12 minutes):

    python app.py train --config training/configs/tiny-r1-base.yaml
    python -m training.tiny --out /tmp/tiny --seed 0 --steps 2400   # the same, by flags
    python -m training.tiny --out models/tiny-r1-base --check-only --check-vllm
"""
