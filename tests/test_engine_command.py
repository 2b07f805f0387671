"""The command line the app starts its vLLM engine with (no engine is started here)."""

from __future__ import annotations

import shutil

from backend.serving.engine import EngineConfig
from backend.serving.local import server_command
from backend.serving.registry import ModelRegistry, ModelSpec
from backend.settings import REPO_ROOT


def test_the_reasoning_parser_is_passed_only_to_models_with_think_tags(tmp_path):
    tiny = ModelRegistry(REPO_ROOT / "models").resolve("l1-tiny")
    assert tiny.thinks_in_tags
    command = server_command(tiny, EngineConfig(device="cpu"), 8000, "-key")
    assert command[command.index("--reasoning-parser") + 1] == "deepseek_r1"
    assert "--reasoning-parser" not in server_command(tiny, EngineConfig(device="cpu", reasoning_parser=""), 8000, "k")
    # A model whose vocabulary lacks the tags: vLLM would refuse to start with the parser.
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(REPO_ROOT / "models" / "l1-tiny" / "config.json", plain)
    (plain / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0, "b": 1}}}')
    spec = ModelSpec("plain", str(plain), "no tags", (64,))
    assert not spec.thinks_in_tags
    assert "--reasoning-parser" not in server_command(spec, EngineConfig(device="cpu"), 8000, "k")
    assert ModelSpec("l3lab/L1-Qwen-1.5B-Exact", "l3lab/L1-Qwen-1.5B-Exact", "", (512,)).thinks_in_tags
    assert not ModelSpec("someone/plain-model", "someone/plain-model", "", (512,)).thinks_in_tags
