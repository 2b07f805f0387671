"""The command line the app starts its vLLM engine with, and the priority it runs at (no engine is started here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import partial

import pytest

from backend.processes import engine_child
from backend.serving.engine import EngineConfig
from backend.serving.local import server_command
from backend.serving.registry import ModelRegistry, ModelSpec
from backend.settings import REPO_ROOT, AppSettings


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


def test_the_engine_child_runs_at_lower_cpu_priority_and_so_does_what_it_starts(tmp_path):
    """`engine_child(nice)` is the engine's preexec: the child, its threads and its own children run at
    ``nice``; where the kernel groups sessions (autogroup) the new session's group is lowered too."""
    script = ("import os, subprocess, sys\n"
              "print(os.getpriority(os.PRIO_PROCESS, 0))\n"
              "print(subprocess.run([sys.executable, '-c', 'import os; print(os.getpriority(os.PRIO_PROCESS, 0))'],"
              " capture_output=True, text=True).stdout.strip())\n"
              "print(open('/proc/self/autogroup').read().strip() if os.path.exists('/proc/self/autogroup') else 'no autogroup')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, start_new_session=True,
                         preexec_fn=partial(engine_child, 7)).stdout.splitlines()
    assert out[:2] == ["7", "7"]
    assert out[2] == "no autogroup" or out[2].endswith("nice 7"), out[2]
    # nice 0: left as the app is.
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, start_new_session=True,
                         preexec_fn=partial(engine_child, 0)).stdout.splitlines()
    assert out[:2] == [str(os.getpriority(os.PRIO_PROCESS, 0))] * 2


@pytest.mark.parametrize("nice", [-1, 20])
def test_engine_nice_out_of_range_is_refused_with_the_setting_name(nice):
    with pytest.raises(ValueError, match=f"nice {nice}: must be 0"):
        EngineConfig(nice=nice)
    with pytest.raises(ValueError, match=f"engine_nice {nice}: must be 0"):
        AppSettings(engine_nice=nice)
