"""The sweep's question loader: built-in arith, the shared benchmark files, CSV/Parquet, bad input."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import pytest

from backend.errors import InputError
from backend.evaluation.arith import make_problems
from backend.evaluation.datasets import ARITH_SIZE, BadRecord, DatasetError, DatasetPolicy, Question, load_dataset
from backend.settings import REPO_ROOT

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="module")
def shared() -> Path:
    # Fail, never skip: without these files the two real layouts go untested.
    assert (SHARED_DATA / "README.md").is_file(), f"shared benchmark data missing: expected {SHARED_DATA}"
    return SHARED_DATA


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _obj(**fields) -> str:
    return json.dumps(fields)


# --- built-in arith --------------------------------------------------------------------------


def test_arith_depends_only_on_the_seed():
    a = load_dataset("arith", seed=3)
    assert a.name == "arith" and a.source == "built-in"
    assert a.total == len(a.questions) == ARITH_SIZE == 500
    assert a == load_dataset("arith", seed=3)
    assert [q.question for q in a.questions] != [q.question for q in load_dataset("arith", seed=4).questions]
    problems = make_problems(3, ARITH_SIZE)
    assert a.questions[7] == Question(problems[7].id, problems[7].question, str(problems[7].answer))
    assert len({q.qid for q in a.questions}) == ARITH_SIZE


def test_arith_limit_is_a_seeded_subset_in_order():
    full = load_dataset("arith", seed=1).questions
    s = load_dataset("arith", seed=1, limit=20)
    assert s.total == 500 and len(s.questions) == 20
    assert s == load_dataset("arith", seed=1, limit=20)
    positions = [full.index(q) for q in s.questions]
    assert positions == sorted(positions)


# --- the shared benchmark files --------------------------------------------------------------


def test_math500_bare_latex_answers(shared):
    ds = load_dataset(str(shared / "math500.jsonl"))
    assert (ds.name, ds.total, len(ds.questions)) == ("math500", 500, 500)
    assert (ds.question_field, ds.answer_field) == ("problem", "answer")
    assert ds.source == str((shared / "math500.jsonl").resolve())
    first = json.loads((shared / "math500.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert ds.questions[0] == Question("math500-1", first["problem"].strip(), first["answer"].strip())
    assert ds.questions[-1].qid == "math500-500"


def test_aime_golds_are_integer_strings(shared):
    ds = load_dataset(str(shared / "aime2024.jsonl"))
    assert ds.total == 30
    assert all(isinstance(q.gold, str) and q.gold.isdigit() for q in ds.questions)


def test_gsm8k_gold_is_the_number_after_hashes(shared):
    path = shared / "gsm8k_test.jsonl"
    ds = load_dataset(str(path))
    assert (ds.total, ds.question_field, ds.answer_field) == (1319, "question", "answer")
    raw_first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])["answer"]
    assert ds.questions[0].gold == raw_first.rsplit("####", 1)[1].strip().replace(",", "")
    assert all("####" not in q.gold and q.gold for q in ds.questions)
    assert all(re.fullmatch(r"-?[\d.]+", q.gold) for q in ds.questions)


def test_file_limit_is_deterministic_subset_in_file_order(shared):
    spec = str(shared / "gsm8k_test.jsonl")
    full = load_dataset(spec).questions
    a = load_dataset(spec, seed=5, limit=25)
    assert a.total == 1319 and len(a.questions) == 25
    assert a == load_dataset(spec, seed=5, limit=25)
    assert a.questions != load_dataset(spec, seed=6, limit=25).questions
    positions = [full.index(q) for q in a.questions]
    assert positions == sorted(positions)
    assert load_dataset(spec, limit=5000).questions == full


@pytest.mark.parametrize("limit", [0, -3])
def test_limit_below_one_refused(limit):
    with pytest.raises(DatasetError, match=rf"--limit {limit}: must be a positive number"):
        load_dataset("arith", limit=limit)


# --- other formats ---------------------------------------------------------------------------


def test_csv(tmp_path):
    path = tmp_path / "mini.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question", "answer"])
        w.writerow(["What is 2+2?", "4"])
        w.writerow(["Two\nlines?", "#### 1,000"])
        w.writerow(["", "7"])  # missing question: line 5 (the previous row spans lines 3-4)
    with pytest.raises(DatasetError, match=r"1 malformed record \(line 5: empty question\)"):
        load_dataset(str(path))
    ds = load_dataset(str(path), skip_bad=True)
    assert ds.questions == (Question("mini-2", "What is 2+2?", "4"), Question("mini-3", "Two\nlines?", "1000"))
    assert ds.skipped == (BadRecord(5, "empty question"),)


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "mini.parquet"
    table = pa.table({"problem_id": [10, 11, 12], "problem": ["a?", None, "c?"], "answer": [204, 5, 25]})
    pq.write_table(table, path)
    ds = load_dataset(str(path), skip_bad=True)
    assert ds.questions == (Question("10", "a?", "204"), Question("12", "c?", "25"))
    assert ds.skipped == (BadRecord(2, "empty question"),)
    with pytest.raises(DatasetError, match=r"row 2: empty question"):
        load_dataset(str(path))


def test_json_list_and_int_answers(tmp_path):
    path = tmp_path / "list.json"
    records = [{"id": "a", "prompt": " p1 ", "target": 7}, {"id": "b", "prompt": "p2", "target": "\\frac{1}{2}"}]
    path.write_text(json.dumps(records, indent=2))
    ds = load_dataset(str(path))
    assert ds.questions == (Question("a", "p1", "7"), Question("b", "p2", "\\frac{1}{2}"))
    assert (ds.question_field, ds.answer_field) == ("prompt", "target")


def test_answer_wins_over_solution(tmp_path):
    path = _jsonl(tmp_path / "m.jsonl", [_obj(problem="q", solution="so \\boxed{3}", answer="3.5")])
    ds = load_dataset(str(path))
    assert ds.answer_field == "answer" and ds.questions[0].gold == "3.5"


def test_boxed_worked_solution_gives_the_box(tmp_path):
    # MATH's own layout without an 'answer' field: the gold is the final boxed answer.
    path = _jsonl(tmp_path / "m.jsonl", [_obj(problem="q", solution="So it is $\\boxed{\\frac{1}{2}}$.")])
    ds = load_dataset(str(path))
    assert ds.answer_field == "solution" and ds.questions[0].gold == "\\frac{1}{2}"


def test_json_suffix_holding_json_lines(tmp_path):
    path = _jsonl(tmp_path / "lines.json", [_obj(question="a", answer="1"), "{broken", _obj(question="b", answer="2")])
    with pytest.raises(DatasetError, match=r"1 malformed record \(line 2: invalid JSON\)"):
        load_dataset(str(path))
    assert [q.gold for q in load_dataset(str(path), skip_bad=True).questions] == ["1", "2"]


# --- malformed input -------------------------------------------------------------------------


def _bad_file(tmp_path: Path) -> Path:
    return _jsonl(
        tmp_path / "bad.jsonl",
        [
            _obj(problem="ok 1", answer="1"),  # 1
            "{not json",  # 2
            "",  # 3 blank: ignored
            "[1, 2]",  # 4 not an object
            _obj(problem="no answer"),  # 5
            _obj(answer="2"),  # 6
            _obj(problem="   ", answer="3"),  # 7
            _obj(problem="empty answer", answer=""),  # 8
            _obj(problem="ok 2", answer=" 42 "),  # 9
        ],
    )


def test_malformed_records_refused_with_line_numbers(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset(str(_bad_file(tmp_path)))
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, InputError)
    assert msg.startswith(f"{tmp_path / 'bad.jsonl'}: 6 malformed records (line 2: invalid JSON; line 4: not an object (list); ")
    assert "line 5: no 'answer' field; line 6: no 'problem' field; line 7: empty question; and 1 more); " in msg
    assert msg.endswith("fix them or pass --skip-bad")


def test_skip_bad_returns_the_good_and_the_skipped(tmp_path):
    ds = load_dataset(str(_bad_file(tmp_path)), skip_bad=True)
    assert ds.questions == (Question("bad-1", "ok 1", "1"), Question("bad-9", "ok 2", "42"))
    assert ds.total == 2
    assert [(b.line, b.reason) for b in ds.skipped] == [
        (2, "invalid JSON"),
        (4, "not an object (list)"),
        (5, "no 'answer' field"),
        (6, "no 'problem' field"),
        (7, "empty question"),
        (8, "empty answer"),
    ]


def test_only_bad_records_is_an_error_even_with_skip_bad(tmp_path):
    path = _jsonl(tmp_path / "allbad.jsonl", ["{oops", _obj(problem="", answer="1")])
    with pytest.raises(DatasetError, match=r"no valid questions \(2 malformed records skipped\)"):
        load_dataset(str(path), skip_bad=True)


def test_explicit_fields(tmp_path):
    path = _jsonl(tmp_path / "f.jsonl", [_obj(q="x?", a="1", answer="wrong", problem="wrong?")])
    ds = load_dataset(str(path), question_field="q", answer_field="a")
    assert ds.questions == (Question("f-1", "x?", "1"),)
    assert (ds.question_field, ds.answer_field) == ("q", "a")


def test_unknown_or_undetectable_field(tmp_path):
    path = _jsonl(tmp_path / "f.jsonl", [_obj(text="x?", label="1")])
    no_field = r"^no question field in .*f\.jsonl: its fields are text, label; name one with --question-field$"
    with pytest.raises(DatasetError, match=no_field):
        load_dataset(str(path))
    absent = r"^no field 'answer_text' in .*f\.jsonl: its fields are text, label; check --answer-field$"
    with pytest.raises(DatasetError, match=absent):
        load_dataset(str(path), question_field="text", answer_field="answer_text")
    assert load_dataset(str(path), question_field="text", answer_field="label").questions[0].gold == "1"


def test_empty_file(tmp_path):
    path = _jsonl(tmp_path / "empty.jsonl", ["", "   "])
    with pytest.raises(DatasetError, match=r"empty\.jsonl is empty: no records"):
        load_dataset(str(path))


def test_duplicate_ids_refused(tmp_path):
    records = [_obj(id="q1", problem="a", answer="1"), _obj(id="q2", problem="b", answer="2"), _obj(id="q1", problem="c", answer="3")]
    path = _jsonl(tmp_path / "d.jsonl", records)
    with pytest.raises(DatasetError, match=r"id 'q1' appears twice \(line 1 and line 3\)"):
        load_dataset(str(path))


def test_missing_file_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(DatasetError, match=r"^no such file: .*nope\.jsonl"):
        load_dataset(str(tmp_path / "nope.jsonl"))


# --- Hugging Face Hub ------------------------------------------------------------------------


def test_hub_name_fails_fast_and_names_the_hub():
    # This machine is offline ("cannot be reached"); with internet the name does not exist
    # ("not found"). Either way: one line, quickly, about the Hub.
    start = time.monotonic()
    with pytest.raises(DatasetError) as e:
        load_dataset("budgetlab-tests/no-such-dataset-3f9a", hub_timeout_s=3)
    assert time.monotonic() - start < 20
    msg = str(e.value)
    assert "\n" not in msg and "Hugging Face Hub" in msg
    assert msg.startswith("dataset 'budgetlab-tests/no-such-dataset-3f9a': not a built-in name (arith) nor an existing file")


def test_hub_unreachable_and_not_found_messages(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    calls = []

    def unreachable(self, name, timeout=None, **kw):
        calls.append(timeout)
        raise ConnectionError("no route")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", unreachable)
    with pytest.raises(DatasetError, match=r"Hub cannot be reached \(ConnectionError\); give a local JSONL/Parquet/CSV path"):
        load_dataset("openai/gsm8k", hub_timeout_s=1.5)
    assert calls == [1.5]

    def missing(self, name, timeout=None, **kw):
        err = RepositoryNotFoundError.__new__(RepositoryNotFoundError)  # its __init__ wants an HTTP response
        Exception.__init__(err, "404")
        raise err

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", missing)
    with pytest.raises(DatasetError, match=r"not found on the Hugging Face Hub"):
        load_dataset("openai/gsm8k")


# --- which files may be opened ---------------------------------------------------------------


def test_the_dashboards_policy_reads_only_inside_its_folders(tmp_path):
    root, elsewhere = tmp_path / "datasets", tmp_path / "elsewhere"
    root.mkdir(), elsewhere.mkdir()
    record = _obj(question="Compute 1 + 1.", answer="2")
    _jsonl(root / "in.jsonl", [record])
    _jsonl(elsewhere / "out.jsonl", [record])
    (root / "link-in.jsonl").symlink_to(root / "in.jsonl")
    (root / "link-out.jsonl").symlink_to(elsewhere / "out.jsonl")
    web = DatasetPolicy((root,))
    assert load_dataset("in.jsonl", policy=web).source == str(root / "in.jsonl")  # a bare name is looked up in the folders
    assert load_dataset(str(root / "link-in.jsonl"), policy=web).questions[0].question == "Compute 1 + 1."  # a link that stays inside
    assert web.files() == ["in.jsonl", "link-in.jsonl"]  # what the Sweep tab lists: not the link that leaves
    for spec in (str(elsewhere / "out.jsonl"), "link-out.jsonl", "../elsewhere/out.jsonl", "sub/../../elsewhere/out.jsonl"):
        with pytest.raises(DatasetError, match=rf"^{re.escape(spec)}: not inside a dataset folder the dashboard may read \({re.escape(str(root))}\)"):
            load_dataset(spec, policy=web)
    with pytest.raises(DatasetError, match=r"not inside a dataset folder the dashboard may read \(none: --dataset-dirs is empty\)"):
        load_dataset(str(root / "in.jsonl"), policy=DatasetPolicy(roots=()))
    assert load_dataset(str(elsewhere / "out.jsonl")).total == 1  # the shell's own: any path


def test_the_size_limit_is_checked_before_reading_and_names_the_setting(tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("wb") as f:
        f.truncate(700 * 2**20)  # sparse: 700 MB that take no room, and would take long to read
    started = time.monotonic()
    with pytest.raises(DatasetError, match=r"big\.jsonl: 700 MB is over the 512 MB limit \(--dataset-max-mb\)"):
        load_dataset(str(path))
    assert time.monotonic() - started < 1


def test_a_symlink_without_a_suffix_is_read_in_the_format_of_the_name_given(tmp_path):
    blob = tmp_path / "blobs" / "3f9a"  # the Hugging Face cache keeps files as blobs behind named symlinks
    blob.parent.mkdir()
    blob.write_text(_obj(question="Compute 2 + 2.", answer="4") + "\n")
    (tmp_path / "test.jsonl").symlink_to(blob)
    ds = load_dataset(str(tmp_path / "test.jsonl"))
    assert (ds.name, ds.questions[0].gold) == ("test", "4")
