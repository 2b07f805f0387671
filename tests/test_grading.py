"""Tests for backend/evaluation/grading.py and verifier.py: extraction, gold parsing, MATH-500 / GSM8K round trips,
threads, and the wall-clock timeout of the math-verify worker."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backend.evaluation import grading, verifier
from backend.evaluation.grading import Grade, extract_boxed, gold_answer, grade, verify_equivalent

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

# An answer sympy cannot compare in any reasonable time: it tries to evaluate 9^(9^387420489).
HOPELESS = r"\boxed{9^{9^{9^{9}}}}"


def _rows(name: str) -> list[dict]:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def math500() -> list[dict]:
    rows = _rows("math500.jsonl")
    assert len(rows) == 500
    return rows


@pytest.fixture(scope="module")
def gsm8k() -> list[dict]:
    rows = _rows("gsm8k_test.jsonl")
    assert len(rows) == 1319
    return rows


# ------------------------------------------------------------------------------- extract_boxed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so the answer is \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),
        (r"$\boxed{\left( 3, \frac{\pi}{2} \right)}$", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"\boxed{\sqrt{\frac{a^{2}}{b_{1}}}}", r"\sqrt{\frac{a^{2}}{b_{1}}}"),
        (r"first \boxed{1}, then \boxed{2}, finally \boxed{3}", "3"),
        (r"\boxed{1} and \fbox{7}", "7"),
        (r"\fbox{7} and \boxed{1}", "1"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces don't count
        (r"\boxed{\text{Evelyn}}", r"\text{Evelyn}"),
        (r"\boxed { 12 }", "12"),
        (r"The answer is $\boxed 5$.", "5"),
        (r"The answer is \boxed 5.", "5"),
        (r"\boxed{\boxed{5}}", r"\boxed{5}"),  # outer box wins; math-verify unwraps the rest
        (r"\boxed{}", ""),
        ("no box here, the answer is 5", None),
        ("", None),
        (r"\boxed{\frac{1}{2}", None),  # unbalanced
        (r"\boxed{3} ... then it got cut off \boxed{\frac{1", None),  # last box unbalanced
        (r"trailing \boxed", None),
        (r"\boxedtext{3}", None),  # a different command
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


# --------------------------------------------------------------------------------- gold_answer


@pytest.mark.parametrize(
    ("gold", "expected"),
    [
        ("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", "18"),
        ("lots of work\n#### 1,234", "1234"),
        ("#### -10", "-10"),
        (r"  \left( 3, \frac{\pi}{2} \right) ", r"\left( 3, \frac{\pi}{2} \right)"),
        ("42", "42"),
        ("$42$", "42"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\$18.90", r"\$18.90"),
    ],
)
def test_gold_answer(gold: str, expected: str) -> None:
    assert gold_answer(gold) == expected


# --------------------------------------------------------------------------- grade: basics


def test_no_gold_is_undecided() -> None:
    assert grade(r"\boxed{5}", None) == Grade("5", None)
    assert grade(r"\boxed{5}", "  ") == Grade("5", None)


def test_no_box_is_incorrect() -> None:
    assert grade("the answer is 5", "5") == Grade(None, False)
    assert grade(r"\boxed{}", "5") == Grade("", False)


def test_falls_back_to_full_text() -> None:
    full = r"<think>... so \boxed{5}</think> The answer is five."
    assert grade("The answer is five.", "5", full_text=full) == Grade("5", True)
    # the answer part wins when it has a box of its own
    assert grade(r"\boxed{6}", "5", full_text=full) == Grade("6", False)


def test_fast_path_needs_no_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_math_verify(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fast path should have decided this")

    monkeypatch.setattr(grading, "verify_equivalent", no_math_verify)
    assert grade(r"\boxed{1,234}", "#### 1234").correct is True
    assert grade(r"\boxed{10080}", r"10,\!080").correct is True
    assert grade(r"\boxed{17}", "#### 18").correct is False
    assert grade(r"\boxed{ \dfrac{1}{2} }", r"\frac{1}{2}").correct is True
    assert grade(r"\boxed{\left(3,\frac{\pi}{2}\right)}", r"\left( 3, \frac{\pi}{2} \right)").correct


def test_list_is_not_a_thousands_number() -> None:
    # "-2, 1" (MATH: two solutions) must not become the integer -21.
    assert grade(r"\boxed{-21}", "-2,1").correct is False
    assert grade(r"\boxed{1, -2}", "-2,1").correct is True


# ------------------------------------------------------------------------------- MATH-500


def test_math500_gold_against_itself(math500: list[dict]) -> None:
    failures = [
        r["answer"]
        for r in math500
        if grade(f"... so the answer is \\boxed{{{r['answer']}}}", r["answer"]) != Grade(r["answer"], True)
    ]
    assert failures == []


def test_math500_gold_against_itself_through_math_verify(math500: list[dict]) -> None:
    # Same round trip without the fast path, so math-verify's parse of every gold is exercised.
    golds = [r["answer"] for r in math500]
    with ThreadPoolExecutor(max_workers=verifier._POOL.size) as ex:  # all workers at once
        verdicts = list(ex.map(lambda g: verify_equivalent(g, g, timeout_s=30), golds))
    assert [g for g, v in zip(golds, verdicts) if v is not True] == []


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        (r"\frac{1}{2}", r"\frac{1}{2}"),
        ("0.5", r"\frac12"),
        (r"\dfrac{3\sqrt{3}}{4}", r"\frac{3\sqrt{3}}{4}"),
        (r"(3, \tfrac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"\sqrt{13} \cdot 3", r"3\sqrt{13}"),
        ("-q + p", "p - q"),
        (r"1 - \sqrt{19}, 1 + \sqrt{19}", r"1 \pm \sqrt{19}"),
        (r"x \in [-2, 7]", r"[-2,7]"),
        (r"90^\circ", "90"),
        (r"\text{(C)}", "C"),
        ("10080", r"10,\!080"),
        (r"\$32,348", r"\$32,\!348"),
    ],
)
def test_equivalent_forms_are_correct(pred: str, gold: str) -> None:
    assert grade(rf"The final answer is $\boxed{{{pred}}}$.", gold).correct is True


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        (r"\frac{1}{3}", r"\frac{1}{2}"),
        (r"\left( 3, \frac{\pi}{3} \right)", r"\left( 3, \frac{\pi}{2} \right)"),
        ("p + q", "p - q"),
        (r"[3, 4]", "(3,4]"),  # closed vs half-open interval
        (r"\begin{pmatrix} -1 \\ 2 \\ 5 \end{pmatrix}", r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}"),
        (r"\text{Navin}", r"\text{Evelyn}"),
        (r"2\sqrt{5}", r"3\sqrt{5}"),
        ("1, 2", "3, 5, 7"),
        ("x^3+3x+6", "x^3+3x-6"),
        ("10081", r"10,\!080"),
    ],
)
def test_wrong_answers_are_incorrect(pred: str, gold: str) -> None:
    assert grade(rf"so the answer is \boxed{{{pred}}}", gold).correct is False


# ---------------------------------------------------------------------------------- GSM8K


def test_gsm8k_gold_parses_to_an_integer(gsm8k: list[dict]) -> None:
    for r in gsm8k:
        n = gold_answer(r["answer"])
        tail = r["answer"].rsplit("####", 1)[1]
        assert n == tail.strip().replace(",", ""), r["answer"]
        int(n)  # every GSM8K test answer is an integer


def test_gsm8k_boxed_n_correct_n_plus_one_incorrect(gsm8k: list[dict]) -> None:
    for r in gsm8k:
        n = int(gold_answer(r["answer"]))
        assert grade(f"She makes \\boxed{{{n}}} dollars.", r["answer"]) == Grade(str(n), True)
        assert grade(f"She makes \\boxed{{{n + 1}}} dollars.", r["answer"]).correct is False
        assert grade(f"She makes \\boxed{{{n:,}}} dollars.", r["answer"]).correct is True


# What we decided for GSM8K-style answers (gold "#### 18"): numerically equal decimals, a
# dollar sign, a unit in \text{} and a percent sign are all fine (math-verify's rules);
# a different number, a bare-word unit, and a non-exact decimal are not.
@pytest.mark.parametrize(
    ("boxed", "correct"),
    [
        ("18", True),
        ("18.0", True),
        ("18.00", True),
        (r"\$18", True),
        (r"\$18.00", True),
        (r"\$ 18", True),
        (r"18 \text{ dollars}", True),
        (r"18\%", True),
        (r"\frac{36}{2}", True),
        ("18.5", False),
        ("17.999999", False),
        ("19", False),
        ("18 dollars", False),
    ],
)
def test_gsm8k_equivalent_forms(boxed: str, correct: bool) -> None:
    assert grade(f"The answer is \\boxed{{{boxed}}}.", "blah blah\n#### 18").correct is correct


def test_gsm8k_thousands() -> None:
    gold = "...\n#### 1,450,000"
    assert grade(r"\boxed{1450000}", gold).correct is True
    assert grade(r"\boxed{1,450,000}", gold).correct is True
    assert grade(r"\boxed{\$1,450,000}", gold).correct is True
    assert grade(r"\boxed{1450000.0}", gold).correct is True
    assert grade(r"\boxed{1,450,001}", gold).correct is False


# ------------------------------------------------------------------------------- threads


THREAD_CASES = [
    (r"\boxed{\frac{2}{4}}", r"\frac12", True),
    (r"\boxed{0.5}", r"\frac{1}{2}", True),
    (r"\boxed{(3, \frac{\pi}{2})}", r"\left( 3, \frac{\pi}{2} \right)", True),
    (r"\boxed{\sqrt{2}/2}", r"\frac{\sqrt{2}}{2}", True),
    (r"\boxed{\$18.00}", "#### 18", True),
    (r"\boxed{19}", "#### 18", False),
    (r"\boxed{x^2 - 1}", "(x-1)(x+1)", True),
    (r"\boxed{x^2 + 1}", "(x-1)(x+1)", False),
    (r"\boxed{[1, 2)}", "[1,2)", True),
    (r"\boxed{(1, 2]}", "[1,2)", False),
] * 3


def test_grading_from_threads_matches_main_thread() -> None:
    main = [grade(a, g) for a, g, _ in THREAD_CASES]
    assert [r.correct for r in main] == [c for _, _, c in THREAD_CASES]

    with ThreadPoolExecutor(max_workers=8) as ex:
        threaded = list(ex.map(lambda case: grade(case[0], case[1]), THREAD_CASES))
    assert threaded == main

    out: list[Grade] = []
    t = threading.Thread(target=lambda: out.extend(grade(a, g) for a, g, _ in THREAD_CASES))
    t.start()
    t.join(timeout=60)
    assert out == main


# ------------------------------------------------------------------------------- timeouts


def test_timeout_returns_none_quickly_and_recovers() -> None:
    verifier.warmup()  # worker start-up is not part of the timeout
    t0 = time.monotonic()
    g = grade(f"the answer is {HOPELESS}", "5", timeout_s=1.0)
    elapsed = time.monotonic() - t0
    assert g == Grade(HOPELESS[len(r"\boxed{") : -1], None)
    assert 0.9 <= elapsed < 3.0, elapsed
    # the overrunning worker was killed; the next comparison gets a fresh one
    assert grade(r"\boxed{0.5}", r"\frac12", timeout_s=30).correct is True


def test_timeout_from_a_thread() -> None:
    verifier.warmup()
    with ThreadPoolExecutor(max_workers=2) as ex:
        slow = ex.submit(grade, HOPELESS, "5", None, 1.0)
        fast = ex.submit(grade, r"\boxed{0.25}", r"\frac14", None, 30.0)
        t0 = time.monotonic()
        assert slow.result(timeout=30).correct is None
        assert time.monotonic() - t0 < 3.0
        assert fast.result(timeout=30).correct is True


def test_shutdown_kills_workers_and_they_restart() -> None:
    assert grade(r"\boxed{0.5}", r"\frac12").correct is True
    pids = verifier._worker_pids()
    assert pids
    verifier.shutdown()
    assert verifier._worker_pids() == []
    assert all(not _alive(p) for p in pids)
    assert grade(r"\boxed{0.5}", r"\frac12").correct is True


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_no_worker_outlives_the_interpreter() -> None:
    # A worker stuck in a hopeless comparison (timeout 600 s) when the program exits.
    script = textwrap.dedent(
        r"""
        import threading, time
        from backend.evaluation import grading, verifier
        threading.Thread(
            target=grading.grade, args=(r"\boxed{9^{9^{9^{9}}}}", "5", None, 600.0), daemon=True
        ).start()
        deadline = time.monotonic() + 60
        while not verifier._worker_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        print(verifier._worker_pids(), flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    pids = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(pids) == 1
    deadline = time.monotonic() + 5
    while _alive(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pids[0])


def _grade_in_child(q: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    q.put((grade(r"\boxed{0.5}", r"\frac12").correct, verifier._worker_pids()))
    verifier.shutdown()


def test_forked_child_does_not_share_the_parents_workers() -> None:
    verifier.warmup()
    parent_pids = verifier._worker_pids()
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_grade_in_child, args=(q,))
    p.start()
    correct, child_pids = q.get(timeout=60)
    p.join(timeout=30)
    assert correct is True
    assert child_pids and not set(child_pids) & set(parent_pids)
    assert verifier._worker_pids() == parent_pids and all(_alive(pid) for pid in parent_pids)
    assert grade(r"\boxed{0.25}", r"\frac14").correct is True
