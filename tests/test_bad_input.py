"""Bad input, in one table: the command line, the dashboard's API and dataset files and job configs.

Each case states where the input goes, the input, and a fragment of the message it must get. After
every case: the message appeared (CLI: exit 2 and one line on stderr), nothing was half-written (the
store's generation and run counts unchanged, no new training job), no child process was left behind
(no new children of the test process, none a zombie); after the table, the app still serves.

Placeholders in inputs: ``{data}`` is the shared app's first dataset folder (the dashboard may read
it), ``{outside}`` a folder it may not read, ``{tmp}`` the case's own temp folder.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

import app
from backend.serving.registry import ModelRegistry
from backend.settings import REPO_ROOT
from store import queries
from tests.test_training_jobs import TINY_JOB
from training.jobs import form_defaults
from ui.train_tab import FORM_FIELDS, JOB_INPUTS

MB = 2**20


@dataclass(frozen=True)
class Case:
    where: str  # cli | cli-train | compare | sweep | sweep_stream | train_submit | train_start | train_cancel
    inputs: Any  # cli: argv; cli-train: the job file's changes (a dict) or its raw text; API: the endpoint's arguments
    message: str  # a fragment of the message the user must get


def case(where: str, inputs: Any, message: str, id: str):  # noqa: A002 - pytest's word
    marks = () if where.startswith("cli") else (pytest.mark.engine,)
    return pytest.param(Case(where, inputs, message), id=f"{where}-{id}", marks=marks)


def sweep(dataset: str, *, controllers=("l1_exact",), budgets=(32,), limit=2, samples=1, model="l1-tiny", run=""):
    """The /sweep endpoint's arguments: models, dataset, controllers, budgets, limit, samples, seed, run."""
    return ([model], dataset, list(controllers), list(budgets), limit, samples, 0, run)


def sweep_form(dataset: str, skip_bad: bool = False):
    """The Sweep tab's button (/sweep_stream): the form's values, ending with parallel, run name, skip_bad."""
    return (["l1-tiny"], dataset, ["l1_exact"], ["32"], 2, 1, 0, 4, "", skip_bad)


def job(name="bad job", model_name="bad-ft", schedule="now", run_at="", cron="", **changes):
    """The /train_submit endpoint's arguments: the config dict, then the job's name, model name and schedule."""
    return ({**TINY_JOB, **changes}, name, model_name, schedule, run_at, cron)


def form(name="bad form", model_name="bad-form-ft", schedule="now", run_at="", cron="", **changes):
    """The /train_start endpoint's arguments, in the order the Train tab's Start button sends them."""
    fields = {**form_defaults(ModelRegistry(REPO_ROOT / "models")), **TINY_JOB, **changes}
    values = {"name": name, "model_name": model_name, "schedule": schedule, "run_at": run_at, "cron": cron}
    return [values[k] for k in JOB_INPUTS] + [fields[k] for k in FORM_FIELDS]


NOT_INSIDE = "not inside a dataset folder the dashboard may read"

CASES = [
    # --- the command line: settings, then each subcommand
    case("cli", ["serve", "--port", "0"], "port 0: must be between 1 and 65535", "port-zero"),
    case("cli", ["serve", "--temperature", "hot"], "temperature='hot': expected a float", "temperature-not-a-number"),
    case("cli", ["serve", "--dataset-max-mb", "0"], "dataset_max_mb 0: must be a positive whole number of MB", "dataset-limit-zero"),
    case("cli", ["serve", "--engine-dtype", "int4"], "engine_dtype 'int4': choose auto, float32, bfloat16 or float16", "engine-dtype"),
    case("cli", ["serve", "--auth", "nopassword"], "auth: give user:password, both non-empty", "auth-without-password"),
    case("cli", ["serve", "--host", "0.0.0.0"], "not a loopback address, and no --auth is set", "open-host-without-auth"),
    case("cli", ["serve", "--model", "no-such-model"], "unknown model 'no-such-model'", "unknown-model"),
    case("cli", ["sweep", "--dataset", "arith", "--samples", "0"], "--samples 0: must be between 1 and 1024", "samples-zero"),
    case("cli", ["sweep", "--dataset", "arith", "--budgets", "64,-5"], "budget -5: must be a positive whole number of tokens", "negative-budget"),
    case("cli", ["sweep", "--dataset", "arith", "--budgets", "64", "--controllers", "telepathy"], "unknown controller 'telepathy'", "unknown-controller"),
    case("cli", ["sweep", "--dataset", "{data}/big.jsonl", "--budgets", "64", "--dataset-max-mb", "1"],
         "big.jsonl: 1.1 MB is over the 1 MB limit (--dataset-max-mb)", "dataset-over-the-limit"),
    case("cli", ["sweep", "--dataset", "{data}/pipe.jsonl", "--budgets", "64"], "pipe.jsonl: not a regular file (a FIFO)", "dataset-fifo"),
    case("cli", ["sweep", "--dataset", "{outside}/missing.jsonl", "--budgets", "64"], "no such file: ", "dataset-missing"),
    case("cli", ["sweep", "--dataset", "{data}/malformed.jsonl", "--budgets", "64"],
         "2 malformed records (line 2: invalid JSON; line 3: empty question); fix them or pass --skip-bad", "dataset-malformed"),
    case("cli", ["report", "--db", "{tmp}/none.duckdb", "--run", "x"], "no store", "report-without-store"),
    case("cli-train", {"num_generations": 1}, "num_generations 1: GRPO compares completions within a group, so it needs at least 2", "group-of-one"),
    case("cli-train", {"per_device_train_batch_size": 6}, "per_device_train_batch_size 6 is not divisible by num_generations 4", "batch-not-divisible"),
    case("cli-train", {"n_max": 4096, "max_completion_length": 8192}, "n_max 4096: must be below the model's context of 2048 tokens", "n-max-above-context"),
    case("cli-train", {"learning_rat": 0.1}, "unknown field 'learning_rat'", "unknown-field"),
    case("cli-train", {"max_steps": "ten"}, "max_steps = 'ten' is a str; it must be int", "wrong-type"),
    case("cli-train", {"learning_rate": -0.001}, "learning_rate -0.001: must be positive", "negative-lr"),
    case("cli-train", {"base_model": "no-such-model"}, "unknown model 'no-such-model'", "unknown-base-model"),
    case("cli-train", {"dataset": "{data}/pipe.jsonl"}, "pipe.jsonl: not a regular file (a FIFO)", "dataset-fifo"),
    case("cli-train", "base_model: [tiny-r1-base\n", "not valid YAML", "not-yaml"),
    # --- the dashboard's API: Compare
    case("compare", ("   ", "l1-tiny", [64], ["s1"], "", None), "the question is empty", "empty-question"),
    case("compare", ("Q?", "l1-tiny", [0], ["s1"], "", None), "budget 0: must be a positive whole number of tokens", "budget-zero"),
    case("compare", ("Q?", "l1-tiny", [9999], ["s1"], "", None), "budget 9999: larger than the model's context of 2048 tokens", "budget-above-context"),
    case("compare", ("Q?", "not a model", [64], ["s1"], "", None), "unknown model 'not a model'", "unknown-model"),
    case("compare", ("Q?", "l1-tiny", [64], ["telepathy"], "", None), "unknown controller 'telepathy'", "unknown-controller"),
    case("compare", ("Q?", "{outside}", [64], ["s1"], "", None), "the dashboard loads only registered models", "model-path-outside"),
    case("compare", ("Q?", "models/l1-tiny", [64], ["s1"], "", None), "model path models/l1-tiny: the dashboard loads only registered models", "model-path-relative"),
    case("compare", ("Q?", "l1-tiny", list(range(1, 10)), ["l1_exact", "l1_max", "s1"], "", None), "27 columns", "too-many-columns"),
    # --- Sweep: paths the dashboard may not open, then dataset files it may open but cannot use
    case("sweep", sweep("/etc/passwd"), f"/etc/passwd: {NOT_INSIDE}", "etc-passwd"),
    case("sweep", sweep("{outside}/good.jsonl"), NOT_INSIDE, "file-outside-the-folders"),
    case("sweep", sweep("../outside/good.jsonl"), NOT_INSIDE, "relative-path-out-of-the-folder"),
    case("sweep", sweep("escape.jsonl"), f"escape.jsonl: {NOT_INSIDE}", "symlink-out-of-the-folder"),
    case("sweep", sweep("pipe.jsonl"), "pipe.jsonl: not a regular file (a FIFO)", "fifo"),
    case("sweep", sweep("big.jsonl"), "big.jsonl: 1.1 MB is over the 1 MB limit (--dataset-max-mb)", "over-the-size-limit"),
    case("sweep", sweep("folder"), "folder is a folder: give a JSONL, JSON, Parquet or CSV file inside it", "directory"),
    case("sweep", sweep("bad\x00name.jsonl"), "not a usable path (embedded null byte)", "nul-in-the-name"),
    case("sweep", sweep("missing.jsonl"), "no such file: missing.jsonl (looked in ", "missing-file"),
    case("sweep", sweep("binary.jsonl"), "binary.jsonl: not UTF-8 text (byte ", "binary-file"),
    case("sweep", sweep("latin1.csv"), "latin1.csv: not UTF-8 text (byte ", "non-utf8-csv"),
    case("sweep", sweep("empty.jsonl"), "empty.jsonl is empty: no records", "empty-file"),
    case("sweep", sweep("malformed.jsonl"), "2 malformed records (line 2: invalid JSON; line 3: empty question)", "malformed-jsonl"),
    case("sweep", sweep("columns.jsonl"), "no question field in columns.jsonl: its fields are text, label; name one with --question-field", "wrong-columns"),
    case("sweep", sweep("noquestion.csv"), "no question field in noquestion.csv: its fields are answer, notes", "csv-without-question-column"),
    case("sweep", sweep("fake.parquet"), "fake.parquet: not a readable Parquet file", "parquet-that-is-not-parquet"),
    case("sweep", sweep("twice.jsonl"), "twice.jsonl: id 'q1' appears twice (line 1 and line 2)", "duplicate-ids"),
    case("sweep", sweep("notes.txt"), "notes.txt: unsupported file type '.txt'", "unsupported-suffix"),
    case("sweep_stream", sweep_form("allbad.jsonl", skip_bad=True), "allbad.jsonl: no valid questions (3 malformed records skipped)", "all-records-bad"),
    case("sweep_stream", sweep_form("/etc/passwd"), f"/etc/passwd: {NOT_INSIDE}", "etc-passwd"),
    case("sweep", sweep("arith", samples=0), "--samples 0: must be between 1 and 1024", "samples-zero"),
    case("sweep", sweep("arith", controllers=["telepathy"]), "unknown controller 'telepathy'", "unknown-controller"),
    case("sweep", sweep("arith", model="no-such-model"), "unknown model 'no-such-model'", "unknown-model"),
    case("sweep", sweep("arith", model="/tmp"), "model path /tmp: the dashboard loads only registered models", "model-path"),
    case("sweep", sweep("arith", budgets=[9999], run="too-big"), "budget 9999: larger than the model's context of 2048 tokens", "budget-above-context"),
    # --- Train: job configs through the API and the form
    case("train_submit", job(num_generations=1, per_device_train_batch_size=8), "num_generations 1: GRPO compares completions", "group-of-one"),
    case("train_submit", job(per_device_train_batch_size=6), "per_device_train_batch_size 6 is not divisible by num_generations 4", "batch-not-divisible"),
    case("train_submit", job(n_max=4096, max_completion_length=8192), "n_max 4096: must be below the model's context of 2048 tokens", "n-max-above-context"),
    case("train_submit", job(learning_rat=0.1), "unknown field 'learning_rat'", "unknown-field"),
    case("train_submit", job(max_steps="ten"), "max_steps = 'ten' is a str; it must be int", "wrong-type"),
    case("train_submit", job(learning_rate=-0.001), "learning_rate -0.001: must be positive", "negative-lr"),
    case("train_submit", job(base_model="no-such-model"), "unknown model 'no-such-model'", "unknown-base-model"),
    case("train_submit", job(base_model="{outside}"), "the dashboard loads only registered models", "base-model-path"),
    case("train_submit", job(dataset="/etc/passwd"), f"/etc/passwd: {NOT_INSIDE}", "dataset-etc-passwd"),
    case("train_submit", job(dataset="pipe.jsonl"), "pipe.jsonl: not a regular file (a FIFO)", "dataset-fifo"),
    case("train_submit", job(name="  "), "job name is empty", "empty-name"),
    case("train_submit", job(schedule="cron", cron="every night"), "cron 'every night': ", "bad-cron"),
    case("train_submit", job(schedule="at", run_at="2001-01-01 00:00"), "that is in the past", "time-in-the-past"),
    case("train_start", form(num_generations=3), "per_device_train_batch_size 8 is not divisible by num_generations 3", "batch-not-divisible"),
    case("train_start", form(model_name="l1-tiny"), "model name 'l1-tiny': a shipped model has it", "shipped-model-name"),
    case("train_start", form(dataset="{outside}/good.jsonl"), NOT_INSIDE, "dataset-outside"),
    case("train_cancel", ("job-that-does-not-exist",), "job-that-does-not-exist", "unknown-job"),
]


# --- the files the cases name


@pytest.fixture(scope="module")
def folders(app_settings, tmp_path_factory) -> dict[str, Path]:
    """``{data}``: the shared app's first dataset folder, with the files below; ``{outside}``: next to it, not readable from the dashboard."""
    data = app_settings.dataset_folders()[0]
    outside = data.parent / "outside"
    outside.mkdir(exist_ok=True)
    good = '{"question": "Compute 1 + 1.", "answer": "2"}\n'
    (outside / "good.jsonl").write_text(good)
    files = {
        "empty.jsonl": b"",
        "binary.jsonl": bytes(range(256)) * 4,
        "latin1.csv": "question,answer\nCombien font 2 + 2, café ?,4\n".encode("latin-1"),
        "malformed.jsonl": (good + '{not json\n{"question": "", "answer": "3"}\n').encode(),
        "allbad.jsonl": b"{\n[\nnot json\n",
        "columns.jsonl": b'{"text": "Compute 1 + 1.", "label": "2"}\n',
        "noquestion.csv": b"answer,notes\n2,easy\n",
        "fake.parquet": b"PAR1 this is not parquet",
        "twice.jsonl": b'{"id": "q1", "question": "Compute 1 + 1.", "answer": "2"}\n{"id": "q1", "question": "Compute 2 + 2.", "answer": "4"}\n',
        "notes.txt": good.encode(),
        "big.jsonl": (good * (MB // len(good) + 1)).encode()[: MB + 1],  # one byte over the shared app's 1 MB
    }
    for name, content in files.items():
        (data / name).write_bytes(content)
    assert (data / "big.jsonl").stat().st_size == MB + 1
    (data / "folder").mkdir(exist_ok=True)
    if not (data / "pipe.jsonl").exists():
        os.mkfifo(data / "pipe.jsonl")
    if not (data / "escape.jsonl").is_symlink():
        (data / "escape.jsonl").symlink_to("/etc/passwd")
    return {"data": data, "outside": outside}


def fill(value: Any, places: dict[str, Path]) -> Any:
    if isinstance(value, str):
        for key, path in places.items():
            value = value.replace("{" + key + "}", str(path))
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(fill(v, places) for v in value)
    if isinstance(value, dict):
        return {k: fill(v, places) for k, v in value.items()}
    return value


# --- what must hold after every case


def children() -> dict[int, str]:
    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            found[child.pid] = child.status()
        except psutil.NoSuchProcess:
            pass
    return found


def footprint(store, training_jobs) -> tuple[int, int, list[str]]:
    with store.reader() as cur:
        return queries.count_generations(cur), queries.count_runs(cur), sorted(j["job_id"] for j in training_jobs.jobs())


@pytest.fixture()
def sigterm_kept():
    """app.main installs a SIGTERM handler; the test process keeps its own."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


# --- running a case


def run_cli(case: Case, places: dict[str, Path], capsys) -> str:
    tmp = places["tmp"]
    argv = fill(case.inputs, places)
    if argv[0] in ("serve", "sweep"):  # their own store in the case's folder; a sweep needs no engine to be refused
        argv = [argv[0], "--db", str(tmp / "cli.duckdb"), "--data-dir", str(tmp), *argv[1:]]
    if argv[0] == "sweep":
        argv = [argv[0], "--backend-url", "http://127.0.0.1:9", "--model", "l1-tiny", *argv[1:]]
    return main_refused(argv, capsys)


def run_cli_train(case: Case, places: dict[str, Path], capsys) -> str:
    tmp = places["tmp"]
    config = tmp / "job.yaml"
    if isinstance(case.inputs, str):
        config.write_text(case.inputs)
    else:
        config.write_text(yaml.safe_dump({**TINY_JOB, **fill(case.inputs, places)}))
    err = main_refused(["train", "--config", str(config), "--output-dir", str(tmp / "out")], capsys)
    assert not (tmp / "out").exists(), "a refused job must not create its output folder"
    return err


def main_refused(argv: list[str], capsys) -> str:
    code = app.main(argv, env={})
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, f"exit {code}; stderr: {captured.err}"
    assert len(lines) == 1, f"expected one line on stderr, got: {captured.err}"
    return lines[0]


def run_api(case: Case, places: dict[str, Path], client) -> str:
    inputs = fill(case.inputs, places)
    if case.where in ("sweep_stream", "train_start"):  # a form's button: the message is the first output, not an error
        return str(client.predict(*inputs, api_name=f"/{case.where}")[0])
    with pytest.raises(Exception) as refused:  # noqa: PT011 - gradio_client's AppError carries the message
        client.predict(*inputs, api_name=f"/{case.where}")
    return str(refused.value)


@pytest.fixture(scope="module")
def client(request):
    from gradio_client import Client

    return Client(request.getfixturevalue("app_url"), verbose=False)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_a_clear_message_and_leaves_nothing_behind(case: Case, folders, store, training_jobs, tmp_path, capsys, sigterm_kept, request):
    places = {**folders, "tmp": tmp_path}
    api = None if case.where.startswith("cli") else request.getfixturevalue("client")
    before_store, before_children = footprint(store, training_jobs), children()

    if case.where == "cli":
        message = run_cli(case, places, capsys)
    elif case.where == "cli-train":
        message = run_cli_train(case, places, capsys)
    else:
        message = run_api(case, places, api)

    assert fill(case.message, places) in message, message
    assert footprint(store, training_jobs) == before_store, "a refused input must not store a row or schedule a job"
    if (tmp_path / "cli.duckdb").exists():  # a sweep refused after opening its store: no run in it
        with queries.open_readonly(tmp_path / "cli.duckdb") as con:
            assert (queries.count_runs(con), queries.count_generations(con)) == (0, 0)
    after = children()
    assert set(after) <= set(before_children), f"new child processes: {set(after) - set(before_children)}"
    zombies = [pid for pid, status in after.items() if status == psutil.STATUS_ZOMBIE and before_children.get(pid) != psutil.STATUS_ZOMBIE]
    assert not zombies, f"zombie children: {zombies}"


def test_the_table_covers_every_area():
    areas = {c.values[0].where for c in CASES}
    assert len(CASES) >= 30
    assert {"cli", "cli-train", "compare", "sweep", "sweep_stream", "train_submit", "train_start"} <= areas


@pytest.mark.engine
def test_the_app_still_serves_after_the_table(client, store):
    result = client.predict("Compute 1 + 2.", "l1-tiny", [16], ["hard_cap"], "3", 1, api_name="/compare")
    assert [g["phase"] for g in result["generations"]] == ["done"]
    with store.reader() as cur:
        assert queries.count_generations(cur, result["run_id"]) == 1
    assert json.dumps(result)  # plain JSON for scripts
