"""Engines started together get different CPU cores (`backend.serving.cpu_cores`), and the engine's
command environment says which (vLLM's VLLM_CPU_OMP_THREADS_BIND)."""

import pytest

from backend.serving.cpu_cores import BIND_ENV, PLACER, CorePlacer
from backend.serving.engine import EngineConfig
from backend.serving.local import LocalEngine
from backend.serving.registry import local_spec
from backend.settings import REPO_ROOT


def test_two_engines_on_two_cores_get_one_core_each_and_a_third_the_least_loaded():
    placer = CorePlacer(cores=[0, 1])
    assert placer.take("policy") == (0,)  # all but the last core, as vLLM's own binding
    assert placer.take("prm") == (1,)
    assert placer.take("replica") == (0,)
    placer.give_back("policy")
    placer.give_back("replica")
    assert placer.take("next") == (0,)  # the core the others left free
    assert placer.take("prm") == (1,)  # a restart gives back what it held first, then takes what is free
    assert placer.held() == {"next": (0,), "prm": (1,)}


def test_a_big_machine_gives_the_first_engine_all_but_one_core_and_the_next_the_rest():
    placer = CorePlacer(cores=range(8))
    assert placer.take("a") == tuple(range(7))
    assert placer.take("b") == (7,)
    # no core free: a third shares the one-core engine's core, not one of the seven-core engine's
    assert placer.take("c") == (7,)


def test_a_single_core_is_shared():
    placer = CorePlacer(cores=[3])
    assert placer.take("a") == (3,) and placer.take("b") == (3,)


def test_the_binding_setting_is_checked():
    with pytest.raises(ValueError, match="cpu_bind 'all': must be one of spread, vllm"):
        EngineConfig(cpu_bind="all")


def test_a_cpu_engine_puts_its_cores_in_its_environment_and_gives_them_back(tmp_path):
    engine = LocalEngine(EngineConfig(device="cpu"), tmp_path, {})
    env: dict[str, str] = {}
    assert "worker on cores" in engine._place(env)
    assert env[BIND_ENV] == ",".join(map(str, PLACER.held()[engine]))
    engine._stop_process()
    assert engine not in PLACER.held()
    # the user's own binding, and vLLM's, are left alone
    assert LocalEngine(EngineConfig(device="cpu"), tmp_path, {BIND_ENV: "0"})._place({}) == ""
    assert LocalEngine(EngineConfig(device="cpu", cpu_bind="vllm"), tmp_path, {})._place({}) == ""


def test_a_start_that_fails_gives_its_cores_back(tmp_path):
    (tmp_path / "engine.log").mkdir()  # the engine's log cannot be opened: nothing is started
    engine = LocalEngine(EngineConfig(device="cpu"), tmp_path, {})
    with pytest.raises(IsADirectoryError):
        engine.start(local_spec("l1-tiny", REPO_ROOT / "models" / "l1-tiny", "the embedded model"))
    assert engine not in PLACER.held()
