"""The settings registry, the environment and the command line."""

import subprocess
import sys
from pathlib import Path

import pytest

from backend.settings import REPO_ROOT, AppSettings, SettingError, registry, settings_markdown


def test_every_setting_has_help_and_a_typed_default():
    specs = registry()
    assert len(specs) > 20
    for spec in specs:
        assert spec.help.strip(), spec.name
        assert isinstance(spec.default, spec.type), spec.name


def test_env_then_flags_override_defaults():
    env = {"BUDGETLAB_PORT": "9000", "BUDGETLAB_TEMPERATURE": "0.3", "BUDGETLAB_ENGINE_ENFORCE_EAGER": "false"}
    settings = AppSettings.from_sources(env=env, overrides={"port": 9100})
    assert settings.port == 9100
    assert settings.temperature == 0.3
    assert settings.engine_enforce_eager is False
    assert AppSettings().host == "127.0.0.1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BUDGETLAB_PORT": "http"}, "port='http': expected a int"),
        ({"BUDGETLAB_PORT": "0"}, "port 0: must be between 1 and 65535"),
        ({"BUDGETLAB_TOP_P": "1.5"}, "top_p 1.5"),
        ({"BUDGETLAB_ENGINE_ENFORCE_EAGER": "maybe"}, "expected true or false"),
        ({"BUDGETLAB_ANSWER_MAX_TOKENS": "0"}, "answer_max_tokens 0: must be a positive integer"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(env, message):
    with pytest.raises(SettingError, match=message.replace("(", r"\(")):
        AppSettings.from_sources(env=env)


def test_secrets_are_masked():
    assert AppSettings(backend_api_key="s3cret").public_dict()["backend_api_key"] == "***"


def test_reference_lists_every_setting():
    text = settings_markdown()
    for spec in registry():
        assert f"`--{spec.name.replace('_', '-')}`" in text


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "serve" in out.stdout and "settings" in out.stdout
    for command in ("serve", "sweep", "audit"):  # a setting's help with a literal % once broke these (argparse formats help with %)
        out = subprocess.run([sys.executable, "app.py", command, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr[-400:]
        assert "--search-verifier" in out.stdout
    # a prefix of a flag is not that flag: --models (meaning --model) once set --models-dir without a word
    out = subprocess.run([sys.executable, "app.py", "sweep", "--models", "l1-tiny", "--dataset", "arith"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "unrecognized arguments: --models" in out.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--port", "70000"], "port 70000: must be between 1 and 65535"),
        (["serve", "--temperature", "hot"], "temperature='hot': expected a float"),
        (["serve", "--model", "no-such-model", "--db", "{tmp}/x.duckdb"], "unknown model 'no-such-model'"),
        (["serve", "--model", "{tmp}", "--db", "{tmp}/x.duckdb"], "not a model folder (no config.json in it)"),
    ],
)
def test_cli_bad_input_exits_nonzero_with_one_line(argv, message, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out = subprocess.run([sys.executable, "app.py", *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_readme_configuration_reference_is_current():
    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("<!-- settings:start -->")[1].split("<!-- settings:end -->")[0].strip()
    assert block == settings_markdown(), "README's configuration table is stale: paste `python app.py settings` between the markers"


def test_dataset_settings_make_the_dashboards_policy_and_the_shells():
    from backend.evaluation.datasets import DatasetPolicy

    settings = AppSettings(dataset_dirs="data/datasets, /srv/questions,", dataset_max_mb=2)
    web, shell = settings.dataset_policy(), settings.dataset_policy(any_path=True)
    assert web.roots == ((REPO_ROOT / "data" / "datasets").resolve(), Path("/srv/questions").resolve())
    assert shell.roots is None and web.max_bytes == shell.max_bytes == 2 * 2**20
    assert AppSettings().dataset_policy(any_path=True) == DatasetPolicy()  # load_dataset's default is the setting's
    assert AppSettings(dataset_dirs="").dataset_policy().roots == ()
    with pytest.raises(SettingError, match="dataset_max_mb 0: must be a positive whole number of MB"):
        AppSettings(dataset_max_mb=0)
