"""`python app.py sweep` and `report` as a user runs them, against the session's real engine.

The sweeps use --backend-url, so no second engine starts. Bad input is checked
in-process through app.main (no engine is contacted before input is accepted).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import duckdb
import pytest

import app
from backend.interrupts import interrupts_held
from backend.settings import REPO_ROOT
from store.writer import StoreConfig, StoreWriter
from tests.conftest import SHARED_DATA, wait_for

SWEEP_KEYS = {"model", "controller", "budget", "questions", "samples", "pass_at_1", "pass_at_k", "mean_tokens", "mean_thinking_tokens",
              "mean_answer_tokens", "mean_rel_dev", "mean_abs_rel_dev", "violation_rate", "tokens_per_s", "wall_s"}


def _sweep_cmd(engine, spec, db, *args):
    endpoint = engine.ensure(spec, 300)
    return [sys.executable, "app.py", "sweep", "--backend-url", endpoint.base_url, f"--backend-api-key={endpoint.api_key}",
            "--model", spec.name, "--db", str(db), "--data-dir", str(db.parent), *args]


def _report(db, run):
    done = subprocess.run([sys.executable, "app.py", "report", "--db", str(db), "--run", run, "--json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _rows(db, run):
    with duckdb.connect(str(db), read_only=True) as con:
        total = con.execute("SELECT count(*), count(DISTINCT gen_id) FROM generations WHERE run_id = ?", [run]).fetchone()
        keys = con.execute("SELECT count(*) FROM (SELECT DISTINCT model, controller, budget, question_id, sample_idx FROM generations WHERE run_id = ?)", [run]).fetchone()[0]
    return total[0], total[1], keys


@pytest.mark.engine
def test_sweep_end_to_end_then_report_gives_the_same_numbers(engine, tiny_spec, tmp_path):
    db = tmp_path / "sweep.duckdb"
    cmd = _sweep_cmd(engine, tiny_spec, db, "--dataset", "arith", "--limit", "3", "--controllers", "l1_exact,l1_max,s1",
                     "--budgets", "32,64", "--samples", "2", "--run", "e2e", "--json")
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)  # stdout holds the JSON list and nothing else
    assert [(g["controller"], g["budget"]) for g in summary] == [(c, b) for c in ("l1_exact", "l1_max", "s1") for b in (32, 64)]
    for group in summary:
        assert SWEEP_KEYS <= group.keys()
        assert (group["model"], group["questions"], group["samples"]) == (tiny_spec.name, 3, 2)
        assert 0 <= group["pass_at_1"] <= group["pass_at_k"] <= 1
        assert group["tokens_per_s"] > 0 and group["wall_s"] > 0
    s1 = [g for g in summary if g["controller"] == "s1"]
    assert all(g["mean_thinking_tokens"] == g["budget"] for g in s1)  # budget forcing: thinking is exactly N
    assert "100%" in done.stderr and "36/36" in done.stderr  # the tqdm bar
    assert _rows(db, "e2e") == (36, 36, 36)
    assert _most_s1_in_flight(db, "e2e") >= 4  # multi-turn s1 generations ran side by side
    assert _report(db, "e2e") == summary

    again = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "36 generations stored (36 from before)" in again.stderr
    assert json.loads(again.stdout) == summary and _rows(db, "e2e") == (36, 36, 36)


def _most_s1_in_flight(db, run) -> int:
    """The largest number of s1 generations whose [start, end] spans share one moment."""
    with duckdb.connect(str(db), read_only=True) as con:
        spans = con.execute("SELECT epoch(created_at) - latency_s, epoch(created_at) FROM generations WHERE run_id = ? AND controller = 's1'", [run]).fetchall()
    return max(sum(start <= moment <= end for start, end in spans) for moment, _ in spans)


def test_sweep_refuses_a_store_another_process_holds(tmp_path):
    db = tmp_path / "held.duckdb"
    with StoreWriter(StoreConfig(db)):
        done = subprocess.run([sys.executable, "app.py", "sweep", "--backend-url", "http://127.0.0.1:9", "--dataset", "arith", "--budgets", "64", "--db", str(db)],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "has it open" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


class _Progress:
    """Reads a sweep's stderr as it runs and knows how many generations its bar has reached."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.text = ""
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc) -> None:
        while chunk := proc.stderr.read1(4096) if hasattr(proc.stderr, "read1") else proc.stderr.read(1):
            self.text += chunk.decode(errors="replace")

    def reached(self) -> int:
        return bar_count(self.text)


def bar_count(text: str) -> int:
    """The last count a tqdm bar printed (what the store has acknowledged)."""
    counts = re.findall(r"(\d+)/(\d+) \[", text)
    return int(counts[-1][0]) if counts else 0


@pytest.mark.engine
def test_sweep_resumes_after_ctrl_c_and_after_a_crash_without_duplicates(engine, tiny_spec, tmp_path):
    db = tmp_path / "resume.duckdb"
    # Enough generations (about 0.1 s each here) that both signals land while the sweep still runs:
    # with 32 the whole sweep once finished before the first signal, which then hit the shutdown.
    cmd = _sweep_cmd(engine, tiny_spec, db, "--dataset", "arith", "--limit", "12", "--controllers", "l1_exact,s1",
                     "--budgets", "32,64", "--samples", "2", "--concurrency", "1", "--run", "resume", "--json")
    total = 12 * 2 * 2 * 2

    def start_and_stop(sig, after: int) -> tuple[int, str]:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        progress = _Progress(proc)
        # The bar counts what the store has acknowledged, so everything it shows survives the signal.
        wait_for(lambda: progress.reached() >= after or proc.poll() is not None, timeout_s=300, interval_s=0.05)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        progress.thread.join(timeout=10)
        return proc.returncode, progress.text

    code, err = start_and_stop(signal.SIGINT, after=3)
    assert code == 130, err[-2000:]
    assert "interrupted" in err and "--run resume" in err
    stored_after_interrupt = _rows(db, "resume")[0]
    assert 3 <= stored_after_interrupt < total

    code, err = start_and_stop(signal.SIGKILL, after=stored_after_interrupt + 3)
    assert code == -signal.SIGKILL
    stored_after_crash = _rows(db, "resume")[0]
    assert stored_after_interrupt < stored_after_crash < total
    assert stored_after_crash >= bar_count(err)  # nothing the bar showed as stored was lost

    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{total} generations stored ({stored_after_crash} from before)" in done.stderr
    assert _rows(db, "resume") == (total, total, total)
    assert _report(db, "resume") == json.loads(done.stdout)


@pytest.mark.engine
def test_a_test_time_compute_sweep_resumes_after_ctrl_c_with_whole_groups(engine, tiny_spec, tmp_path):
    """Parallel answers (K rows each), the engine's thinking cap and early exit: interrupted, then
    resumed; every group is stored whole, once, and the summary names each parallel form."""
    db = tmp_path / "ttc.duckdb"
    cmd = _sweep_cmd(engine, tiny_spec, db, "--dataset", "arith", "--limit", "8", "--controllers", "maj2:l1_exact,thinking_cap,early_exit",
                     "--budgets", "32,64", "--samples", "2", "--concurrency", "2", "--run", "ttc", "--json")
    items, rows = 3 * 2 * 8 * 2, 8 * 2 * 2 * (2 + 1 + 1)
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    progress = _Progress(proc)
    wait_for(lambda: progress.reached() >= 3 or proc.poll() is not None, timeout_s=300, interval_s=0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    progress.thread.join(timeout=10)
    with duckdb.connect(str(db), read_only=True) as con:
        partial = con.execute("SELECT count(*) FROM generations WHERE run_id = 'ttc' AND group_id IS NOT NULL GROUP BY group_id").fetchall()
    stored, distinct, _ = _rows(db, "ttc")
    assert 3 <= stored == distinct < rows and all(n == 2 for (n,) in partial)  # no half group, even interrupted

    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{items} generations stored" in done.stderr
    assert _rows(db, "ttc")[:2] == (rows, rows)
    with duckdb.connect(str(db), read_only=True) as con:
        sizes = con.execute("SELECT count(*), sum(chosen::INTEGER) FROM generations WHERE run_id = 'ttc' AND group_id IS NOT NULL GROUP BY group_id").fetchall()
        over = con.execute("SELECT count(*) FROM generations WHERE run_id = 'ttc' AND controller IN ('thinking_cap', 'early_exit') AND thinking_tokens > budget").fetchall()
        probed = con.execute("SELECT count(*) FROM generations WHERE run_id = 'ttc' AND controller = 'early_exit' AND probe_tokens IS NOT NULL").fetchall()
    assert len(sizes) == 8 * 2 * 2 and all(n == 2 and chosen <= 1 for n, chosen in sizes)
    assert over == [(0,)] and probed == [(8 * 2 * 2,)]
    summary = {(g["controller"], g["budget"]): g for g in json.loads(done.stdout)}
    assert (summary[("maj2:l1_exact", 64)]["k"], summary[("maj2:l1_exact", 64)]["inner"], summary[("maj2:l1_exact", 64)]["generations"]) == (2, "l1_exact", 32)
    assert summary[("thinking_cap", 32)]["k"] == 1 and summary[("thinking_cap", 32)]["inner"] is None
    assert "mean_probe_tokens" in summary[("early_exit", 32)]
    assert _report(db, "ttc") == json.loads(done.stdout)


@pytest.mark.engine
@pytest.mark.parametrize("name", ["gsm8k_test.jsonl", "math500.jsonl"])
def test_sweep_reads_both_shared_dataset_layouts(engine, tiny_spec, tmp_path, name):
    db = tmp_path / "shared.duckdb"
    cmd = _sweep_cmd(engine, tiny_spec, db, "--dataset", str(SHARED_DATA / name), "--limit", "2", "--controllers", "l1_exact",
                     "--budgets", "32", "--run", "shared", "--json")
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)[0]["questions"] == 2
    raw = [json.loads(line) for line in (SHARED_DATA / name).read_text().splitlines()]
    by_question = {(r.get("problem") or r.get("question")).strip(): str(r["answer"]) for r in raw}
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute("SELECT question, gold, dataset FROM generations").fetchall()
    assert len(stored) == 2
    for question, gold, dataset in stored:
        expected = by_question[question]
        assert gold == (expected.rsplit("####", 1)[1].strip().replace(",", "") if "####" in expected else expected.strip())
        assert dataset == name.removesuffix(".jsonl")


def test_a_signal_during_shutdown_is_held_until_the_block_ends():
    closed = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)  # delivered to this (main) thread at once
            time.sleep(0.05)
            closed.append("store")  # still runs: the signal was only recorded
    assert closed == ["store"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    with interrupts_held():  # no signal, no exception
        closed.append("engine")
    assert closed == ["store", "engine"]


def _main(capsys, *args) -> tuple[int, str]:
    code = app.main(["sweep", "--backend-url", "http://127.0.0.1:9", "--model", "tiny-r1-base", *args], env={})
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "arith", "--budgets", "0"], "budget 0: must be a positive whole number of tokens"),
    (["--dataset", "arith", "--budgets", "64", "--controllers", "l1_exact,nope"], "unknown controller 'nope'"),
    (["--dataset", "arith", "--budgets", "64", "--samples", "0"], "--samples 0"),
    (["--dataset", "arith", "--budgets", "64", "--limit", "0"], "--limit 0"),
    (["--dataset", "arith", "--budgets", "64", "--concurrency", "x"], "--concurrency 'x'"),
    (["--dataset", "no/such/file.jsonl", "--budgets", "64"], "no such file"),
    (["--dataset", "no-such-hub-dataset-xyz/none", "--budgets", "64"], "Hugging Face Hub"),
])
def test_bad_sweep_input_exits_2_with_one_line(capsys, tmp_path, args, message):
    code, err = _main(capsys, "--db", str(tmp_path / "b.duckdb"), *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_malformed_lines_are_refused_with_line_numbers_unless_skipped(capsys, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"question": "Compute 1 + 1.", "answer": "2"}\n{not json\n{"question": "", "answer": "3"}\n{"question": "Compute 2 + 2."}\n')
    code, err = _main(capsys, "--db", str(tmp_path / "b.duckdb"), "--dataset", str(data), "--budgets", "64")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "3 malformed" in err and "line 2" in err and "line 3" in err and "line 4" in err and "--skip-bad" in err


def test_a_run_name_cannot_be_reused_for_other_questions(capsys, tmp_path):
    db = tmp_path / "runs.duckdb"
    with StoreWriter(StoreConfig(db)) as store:
        store.upsert_run("taken", "taken", "sweep", {"dataset": "arith", "dataset_source": "built-in", "limit": 2, "seed": 0, "temperature": 0.6, "top_p": 0.95}, "finished").result()
        store.upsert_run("cmp", "cmp", "compare", {}, "finished").result()
    code, err = _main(capsys, "--db", str(db), "--dataset", "arith", "--limit", "2", "--budgets", "64", "--seed", "1", "--run", "taken")
    assert code == 2 and "seed=0" in err and "another --run name" in err
    code, err = _main(capsys, "--db", str(db), "--dataset", "arith", "--budgets", "64", "--run", "cmp")
    assert code == 2 and "compare run" in err


def test_report_refuses_unknown_runs_and_missing_stores(capsys, tmp_path):
    assert app.main(["report", "--db", str(tmp_path / "none.duckdb"), "--run", "x"], env={}) == 2
    assert "no store" in capsys.readouterr().err
    with StoreWriter(StoreConfig(tmp_path / "s.duckdb")):
        pass
    assert app.main(["report", "--db", str(tmp_path / "s.duckdb"), "--run", "x"], env={}) == 2
    assert "no run 'x'" in capsys.readouterr().err
