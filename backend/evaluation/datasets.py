"""Evaluation questions for ``python app.py sweep --dataset ...``: built-in, local file or Hub.

`load_dataset(spec)` turns what the user typed after ``--dataset`` into a validated `Dataset`
of `Question`s (id, question text, normalized gold answer), or raises `DatasetError` with a
one-line message that says what to fix. ``spec`` is, in this order:

* ``arith``: the built-in offline arithmetic suite (`backend.evaluation.arith`), 500 problems that
  depend only on ``seed``;
* a file: JSONL (one object per line), ``.json`` (a list of objects, or JSONL), Parquet or
  CSV. The question and answer fields are detected (``problem``/``question``/... and
  ``answer``/``final_answer``/...) unless named; both the MATH layout (bare ``answer``) and
  the GSM8K layout (worked solution ending in ``#### N``) give the bare gold answer;
* anything else: a Hugging Face Hub dataset name (needs internet and ``datasets``).

A `DatasetPolicy` says which files may be opened and how big they may be. The shell user's
own (``app.py sweep``/``train``) may name any path; a web request only a file inside the
dashboard's dataset folders (``--dataset-dirs``; a relative name is looked up in them), after
symlinks are resolved; both within ``--dataset-max-mb``. The file is checked (inside a folder,
a regular file, not too big) before it is opened, and read through the checked descriptor.

    ds = load_dataset("../shared/data/gsm8k_test.jsonl", limit=50, seed=1)
    ds.total, len(ds.questions)          # 1319, 50 (a seeded sample, kept in file order)
    ds.questions[0]                      # Question(qid='gsm8k_test-5', question='Every day, ...', gold='20')

Malformed records (invalid JSON, missing field, empty question or answer) are refused with
their line numbers unless ``skip_bad=True``, which returns them in ``Dataset.skipped``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import random
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import InputError
from backend.evaluation.arith import make_problems
from backend.evaluation.grading import extract_boxed, gold_answer

__all__ = ["ARITH_SIZE", "BUILTIN_DATASETS", "BadRecord", "Dataset", "DatasetError", "DatasetPolicy", "Question", "load_dataset"]

BUILTIN_DATASETS = ("arith",)
ARITH_SIZE = 500  # size of the built-in suite

QUESTION_FIELDS = ("problem", "question", "prompt", "input", "query", "instruction")
ANSWER_FIELDS = ("answer", "final_answer", "expected_answer", "gold", "target", "solution", "output")
ID_FIELDS = ("id", "unique_id", "idx", "problem_id", "question_id")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
MAX_LISTED_BAD = 5
MB = 2**20
DEFAULT_MAX_MB = 512  # the dataset_max_mb setting's default (declared here only)


class DatasetError(InputError):
    """A dataset that cannot be loaded; the message (one line) says what to fix."""


@dataclass(frozen=True)
class DatasetPolicy:
    """Which dataset files may be opened: ``roots`` None means any path (the shell user's own);
    a tuple means only files inside those folders (resolved, symlinks followed: what a web request
    may name). ``max_bytes`` bounds every file, from either."""

    roots: tuple[Path, ...] | None = None
    max_bytes: int = DEFAULT_MAX_MB * MB

    def __post_init__(self) -> None:
        if self.roots is not None:  # compared with resolved paths, so resolved too
            object.__setattr__(self, "roots", tuple(Path(root).expanduser().resolve() for root in self.roots))
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes {self.max_bytes}: must be positive")

    def locate(self, spec: str) -> Path | None:
        """The checked, resolved file that ``spec`` names, or None when it names no file (a Hub
        name). Raises DatasetError, before anything is opened, for a path outside the roots, a
        missing file, a folder, a FIFO or device, or a file over the size limit."""
        path = self._candidate(spec)
        if path is None:
            return None
        try:
            resolved = path.resolve()  # follows every symlink; opens nothing
        except (OSError, RuntimeError, ValueError) as e:  # a symlink loop, a NUL byte in the name, ...
            raise DatasetError(f"{spec!r}: not a usable path ({_first_line(e)})") from None
        if self.roots is not None and not any(resolved.is_relative_to(root) for root in self.roots):
            raise DatasetError(f"{spec}: not inside a dataset folder the dashboard may read ({self.roots_text()}); "
                               "add the folder with --dataset-dirs or copy the file there")
        try:
            info = resolved.stat()
        except FileNotFoundError:
            where = self.roots_text() if self.roots is not None and not Path(spec).expanduser().is_absolute() else resolved.parent
            raise DatasetError(f"no such file: {spec} (looked in {where})") from None
        except OSError as e:
            raise DatasetError(f"{spec}: cannot be read ({e.strerror or e})") from None
        self.check_stat(info, spec)
        return resolved

    def check_stat(self, info: os.stat_result, spec: str) -> None:
        """A regular file within the size limit, or DatasetError."""
        if stat.S_ISDIR(info.st_mode):
            raise DatasetError(f"{spec} is a folder: give a JSONL, JSON, Parquet or CSV file inside it")
        if not stat.S_ISREG(info.st_mode):
            raise DatasetError(f"{spec}: not a regular file (a {_file_kind(info.st_mode)}); give a JSONL, JSON, Parquet or CSV file")
        if info.st_size > self.max_bytes:
            size = math.ceil(info.st_size * 10 / MB) / 10  # rounded up: never shown equal to the limit
            raise self.too_big(spec, f"{size:g} MB is over")

    def too_big(self, spec: str, what: str) -> DatasetError:
        return DatasetError(f"{spec}: {what} the {self.max_bytes / MB:g} MB limit (--dataset-max-mb); raise the limit or give a sample of the file")

    def _candidate(self, spec: str) -> Path | None:
        path = Path(spec).expanduser()
        meant_as_file = path.suffix.lower() in FILE_SUFFIXES or spec.startswith(("/", "./", "../", "~"))
        if self.roots is None or path.is_absolute():
            # Asking the Hub about "data/x.jsonl" would only hide a typo: a file-like name is a file.
            return path if meant_as_file or os.path.lexists(path) else None
        # From a web request a relative name is relative to the dataset folders, never to the app's folder.
        found = next((root / path for root in self.roots if os.path.lexists(root / path)), None)
        if found is not None or not meant_as_file:
            return found
        return (self.roots[0] if self.roots else Path.cwd()) / path

    def files(self, most: int = 200) -> list[str]:
        """The dataset files directly in the roots, by the relative name a request may give (none without roots)."""
        found = (path.name for root in self.roots or () if root.is_dir() for path in sorted(root.iterdir())
                 if path.suffix.lower() in FILE_SUFFIXES and path.is_file() and path.resolve().is_relative_to(root))
        return list(dict.fromkeys(found))[:most]

    def roots_text(self) -> str:
        if self.roots is None:
            return "any path"
        return ", ".join(str(root) for root in self.roots) or "none: --dataset-dirs is empty"


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


@dataclass(frozen=True)
class Question:
    qid: str
    question: str
    gold: str


@dataclass(frozen=True)
class BadRecord:
    line: int  # JSONL/CSV: 1-based file line (CSV header is line 1); JSON list, Parquet, Hub: 1-based row
    reason: str


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    questions: tuple[Question, ...]
    total: int  # valid questions before --limit sampling
    skipped: tuple[BadRecord, ...] = ()
    question_field: str | None = None
    answer_field: str | None = None


@dataclass(frozen=True)
class _Raw:
    """Records as read from a source, before validation: (number, object) pairs."""

    records: list[tuple[int, Mapping[str, Any]]]
    fields: list[str]  # every field name seen, in first-seen order
    bad: list[BadRecord]
    unit: str  # what the numbers count in messages: "line" or "row"


def load_dataset(
    spec: str,
    *,
    seed: int = 0,
    limit: int | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
    skip_bad: bool = False,
    split: str = "test",
    hub_config: str | None = None,
    hub_timeout_s: float = 5.0,
    policy: DatasetPolicy = DatasetPolicy(),
) -> Dataset:
    """The questions named by ``spec`` (``arith``, a file path or a Hub name); see the module doc.
    ``policy``: which files may be opened (default: any path, the default size limit)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DatasetError(f"--limit {limit}: must be a positive number of questions")
    spec = (spec or "").strip()
    if not spec:
        raise DatasetError(f"no dataset given: name a built-in ({', '.join(BUILTIN_DATASETS)}) or a JSONL/Parquet/CSV file")
    if spec == "arith":
        return _sample(_arith(seed), seed, limit)
    path = policy.locate(spec)  # checked before anything is opened
    if path is not None:
        # Name and format come from the name given: a symlink (a Hub cache's blob) may have neither.
        given = Path(spec)
        name, source, raw = given.stem, str(path), _read_file(path, given.suffix.lower(), spec, policy)
    else:
        name, raw = spec, _read_hub(spec, split, hub_config, hub_timeout_s)
        source = f"hf:{spec}{':' + hub_config if hub_config else ''}/{split}"
    return _sample(_build(raw, name, source, spec, question_field, answer_field, skip_bad), seed, limit)


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


def _arith(seed: int) -> Dataset:
    problems = make_problems(seed, ARITH_SIZE)
    questions = tuple(Question(p.id, p.question.strip(), str(p.answer)) for p in problems)
    return Dataset(name="arith", source="built-in", questions=questions, total=len(questions))


def _read_file(path: Path, suffix: str, where: str, policy: DatasetPolicy) -> _Raw:
    if suffix not in FILE_SUFFIXES:
        raise DatasetError(f"{where}: unsupported file type {suffix or '(no suffix)'!r}; use .jsonl, .json, .parquet or .csv")
    data = _read_bytes(path, where, policy)
    try:
        if suffix == ".jsonl":
            return _read_jsonl(data.decode("utf-8"))
        if suffix == ".json":
            return _read_json(data.decode("utf-8"))
        if suffix == ".csv":
            return _read_csv(data.decode("utf-8-sig"))  # utf-8-sig: Excel's byte-order mark would stick to the first header
        return _read_parquet(data, where)
    except UnicodeDecodeError as e:
        raise DatasetError(f"{where}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None


def _read_bytes(path: Path, where: str, policy: DatasetPolicy) -> bytes:
    """The file's bytes, read through a descriptor checked again after opening: a symlink swapped
    in since `DatasetPolicy.locate` is refused (O_NOFOLLOW), a FIFO does not block the open
    (O_NONBLOCK), and no more than the size limit is read."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise DatasetError(f"{where}: cannot be read ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        policy.check_stat(os.fstat(f.fileno()), where)
        data = f.read(policy.max_bytes + 1)
    if len(data) > policy.max_bytes:  # it grew since the check
        raise policy.too_big(where, "it grew over")
    return data


def _collect(items: Iterable[tuple[int, Any]], bad: list[BadRecord], unit: str) -> _Raw:
    records: list[tuple[int, Mapping[str, Any]]] = []
    fields: dict[str, None] = {}
    for number, obj in items:
        if not isinstance(obj, Mapping):
            bad.append(BadRecord(number, f"not an object ({type(obj).__name__})"))
            continue
        records.append((number, obj))
        fields.update(dict.fromkeys(str(k) for k in obj if k is not None))
    return _Raw(records, list(fields), bad, unit)


def _read_jsonl(text: str) -> _Raw:
    bad: list[BadRecord] = []

    def parsed() -> Iterable[tuple[int, Any]]:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError:
                bad.append(BadRecord(number, "invalid JSON"))

    return _collect(parsed(), bad, "line")


def _read_json(text: str) -> _Raw:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _read_jsonl(text)  # JSON Lines saved as .json: each line is checked on its own
    if isinstance(data, list):
        return _collect(enumerate(data, start=1), [], "row")
    # One object (a one-line JSONL file, or {"data": [...]}, whose fields the errors then list).
    return _collect([(1, data)], [], "line")


def _read_csv(text: str) -> _Raw:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[tuple[int, Any]] = []
    for row in reader:
        # line_num is the last line the row used; a quoted field may span several lines.
        spanned = sum(v.count("\n") for v in row.values() if isinstance(v, str))
        rows.append((reader.line_num - spanned, row))
    raw = _collect(rows, [], "line")
    # A header-only file has no rows, but its fields still name the columns.
    return _Raw(raw.records, list(reader.fieldnames or []), raw.bad, raw.unit)


def _read_parquet(data: bytes, where: str) -> _Raw:
    import pyarrow as pa  # heavy; only Parquet users pay for it
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as e:  # pyarrow raises several unrelated types for a broken file
        raise DatasetError(f"{where}: not a readable Parquet file ({type(e).__name__}: {_first_line(e)})") from None
    raw = _collect(enumerate(table.to_pylist(), start=1), [], "row")
    return _Raw(raw.records, list(table.column_names), raw.bad, raw.unit)


def _read_hub(name: str, split: str, config: str | None, timeout_s: float) -> _Raw:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    head = f"dataset {name!r}: not a built-in name ({', '.join(BUILTIN_DATASETS)}) nor an existing file"
    # Ask the Hub first, with a short timeout: datasets.load_dataset would otherwise retry for
    # a long time on an offline machine before failing with a message about caches.
    try:
        HfApi().dataset_info(name, timeout=timeout_s)
    except HFValidationError:
        raise DatasetError(f"{head}, nor a valid Hugging Face dataset name (owner/name); check the spelling") from None
    except GatedRepoError:
        raise DatasetError(f"{head}; it is gated on the Hugging Face Hub: accept its terms there, then hf auth login") from None
    except RepositoryNotFoundError:
        raise DatasetError(f"{head}, and it is not found on the Hugging Face Hub; check the spelling") from None
    except Exception as e:  # the transport (requests/httpx) differs across huggingface_hub versions
        raise DatasetError(
            f"{head}, and the Hugging Face Hub cannot be reached ({type(e).__name__}); "
            "give a local JSONL/Parquet/CSV path or connect this machine"
        ) from None
    try:
        import datasets
    except ImportError:
        raise DatasetError(f"dataset {name!r} is on the Hugging Face Hub, but 'datasets' is not installed: pip install datasets") from None
    try:
        table = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # unknown split/config, download failure, ...: the library's first line says which
        raise DatasetError(
            f"dataset {name!r} (config {config}, split {split!r}) could not be loaded: {_first_line(e)}; "
            "check --split and --hub-config"
        ) from None
    raw = _collect(enumerate(table, start=1), [], "row")
    return _Raw(raw.records, list(table.column_names), raw.bad, raw.unit)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _pick_field(kind: str, given: str | None, candidates: tuple[str, ...], raw: _Raw, where: str) -> str:
    flag = f"--{kind}-field"
    fields = ", ".join(raw.fields) or "(none)"
    if given is not None:
        if given in raw.fields:
            return given
        raise DatasetError(f"no field {given!r} in {where}: its fields are {fields}; check {flag}")
    for name in candidates:
        if name in raw.fields:
            return name
    raise DatasetError(f"no {kind} field in {where}: its fields are {fields}; name one with {flag}")


def _text(value: Any) -> str | None:
    """A field value as text; None for a missing value or for a list/object (not a single answer)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        # Parquet and JSON writers may store integer answers as floats: 204.0 is "204".
        return str(int(value)) if value.is_integer() else None if value != value else str(value)
    if isinstance(value, (str, int)):
        return str(value)
    return None


def _gold(answer: str) -> str:
    gold = gold_answer(answer)
    # A worked solution with the final answer boxed (the MATH 'solution' field) gives the box.
    if "####" not in answer and "\\boxed" in gold and (boxed := extract_boxed(gold)):
        return boxed
    return gold


def _record(number: int, obj: Mapping[str, Any], qf: str, af: str, id_field: str | None, name: str) -> Question | str:
    """The record as a Question, or the reason it is malformed."""
    if qf not in obj:
        return f"no {qf!r} field"
    if af not in obj:
        return f"no {af!r} field"
    question, answer = _text(obj[qf]), _text(obj[af])
    if question is None and obj[qf] is not None and not isinstance(obj[qf], float):
        return f"question is a {type(obj[qf]).__name__}, not text"
    if not (question or "").strip():
        return "empty question"
    if answer is None and obj[af] is not None and not isinstance(obj[af], float):
        return f"answer is a {type(obj[af]).__name__}, not text"
    gold = _gold(answer or "")
    if not gold:
        return "empty answer"
    own_id = _text(obj.get(id_field)) if id_field else None
    qid = own_id.strip() if own_id and own_id.strip() else f"{name}-{number}"
    return Question(qid=qid, question=question.strip(), gold=gold)


def _build(
    raw: _Raw, name: str, source: str, where: str, question_field: str | None, answer_field: str | None, skip_bad: bool
) -> Dataset:
    if not raw.records and not raw.bad:
        raise DatasetError(f"{where} is empty: no records; it needs one record per question, with a question and an answer")
    qf = af = None
    if raw.records:  # with none readable, the malformed-records message below says more
        qf = _pick_field("question", question_field, QUESTION_FIELDS, raw, where)
        af = _pick_field("answer", answer_field, ANSWER_FIELDS, raw, where)
        if qf == af:
            raise DatasetError(f"{where}: question and answer would both be field {qf!r}; name another with --question-field or --answer-field")
    id_field = next((f for f in ID_FIELDS if f in raw.fields), None)
    bad = list(raw.bad)
    questions: list[Question] = []
    first_seen: dict[str, int] = {}
    for number, obj in raw.records:
        result = _record(number, obj, qf, af, id_field, name)
        if isinstance(result, str):
            bad.append(BadRecord(number, result))
            continue
        # Sweep rows are keyed by question id: two questions with one id would overwrite each
        # other's results (or make a resumed sweep skip one), so refuse rather than rename.
        if result.qid in first_seen:
            raise DatasetError(
                f"{where}: id {result.qid!r} appears twice ({raw.unit} {first_seen[result.qid]} and {raw.unit} {number}); "
                "give every record its own id"
            )
        first_seen[result.qid] = number
        questions.append(result)
    bad.sort(key=lambda b: b.line)
    if bad and not skip_bad:
        raise DatasetError(f"{where}: {_describe_bad(bad, raw.unit)}; fix them or pass --skip-bad")
    if not questions:
        raise DatasetError(f"{where}: no valid questions ({len(bad)} malformed records skipped); check the file and its fields")
    return Dataset(name, source, tuple(questions), len(questions), tuple(bad), qf, af)


def _describe_bad(bad: list[BadRecord], unit: str) -> str:
    listed = "; ".join(f"{unit} {b.line}: {b.reason}" for b in bad[:MAX_LISTED_BAD])
    more = f"; and {len(bad) - MAX_LISTED_BAD} more" if len(bad) > MAX_LISTED_BAD else ""
    return f"{len(bad)} malformed record{'s' if len(bad) != 1 else ''} ({listed}{more})"


def _sample(ds: Dataset, seed: int, limit: int | None) -> Dataset:
    """At most ``limit`` questions: a seeded sample, kept in file order so runs read naturally."""
    if limit is None or limit >= ds.total:
        return ds
    keep = sorted(random.Random(seed).sample(range(ds.total), limit))
    return dataclasses.replace(ds, questions=tuple(ds.questions[i] for i in keep))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
