"""Compare load: concurrent gradio_client sessions, each one comparison, against the real app.

Starts ``python app.py serve`` as a subprocess (its own vLLM engine on the CPU, the default
model ``l1-tiny``, every run-time folder and the DuckDB file in a temporary folder), waits until
the engine answers a 16-token ``/compare``, runs one untimed warm-up comparison, then releases
``--sessions`` threads at once (a barrier). Each thread has its own ``gradio_client.Client`` and
streams one comparison through ``/compare_stream`` (the Compare tab's Compare button): its own
arith question with its gold answer, its own seed, ``--budgets`` x ``--controllers``. Before the
barrier each session asks ``/engine_status`` once: a viewer's page is open before they click (a
browser's session starts with the page's load event); ``--cold-sessions`` skips it, so that the
app also creates each session's state inside the timed click.

Per session it records, from its submit (right after the barrier):

- first update: the first streamed update of any kind (the handler has started: the service
  always yields a "waiting for the engine" status first);
- TTFT: the first streamed update whose cards show a generated token, i.e. some card's
  ``total <b>N</b> tokens`` with N > 0: what a user sees (the app streams a snapshot every
  0.25 s; a session picks updates up within ``--poll-s``);
- completion: the final update, whose raw generations must all be phase ``done`` (graded and
  stored), one per (controller, budget);
- the app's own TTFT of its fastest column (``ttft_s`` in the raw generations: from the column's
  start inside the app to its first token), to tell the engine's share from the rest.

It also reports the CPU seconds the app, its engine, the clients (this process) and everything
else on the machine used during the timed part: on a 2-core machine other load shows up there.
The app is then stopped with SIGTERM (its engine with it; every child pid is checked, and any
left is killed and reported) and its DuckDB file opened read-only to count the stored
generations. Prints a table, percentiles, and, as the last line, one JSON object::

    .venv/bin/python bench/load_compare.py                              # 20 sessions x 64,128,256,512 x l1_exact
    .venv/bin/python bench/load_compare.py --sessions 20 --budgets 64,128,256,512 --controllers l1_exact,s1
    .venv/bin/python bench/load_compare.py --sessions 4 --budgets 32,64      # a quick look

Clients use gradio_client's defaults unless ``--client-timeout-s`` is given: its queue-join POST
has httpx's 5 s timeout, so a session fails with ``ReadTimeout`` when the app takes longer than
that to accept it (seen with the machine overloaded); the app still runs and stores it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere

TOKENS_IN_CARD = re.compile(r"total <b>(\d+)</b> tokens")
RUN_IN_STATUS = re.compile(r"run (compare-[0-9a-f]+)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20, help="concurrent gradio_client sessions [default: %(default)s]")
    parser.add_argument("--budgets", default="64,128,256,512", help="comma-separated budgets of each comparison [default: %(default)s]")
    parser.add_argument("--controllers", default="l1_exact", help="comma-separated controllers of each comparison [default: %(default)s]")
    parser.add_argument("--model", default="l1-tiny", help="model the app serves and the sessions ask for [default: %(default)s]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the question sample; session i uses seed SEED+i [default: %(default)s]")
    parser.add_argument("--ready-timeout-s", type=float, default=600.0, help="bound on the app's and the engine's start [default: %(default)s]")
    parser.add_argument("--session-timeout-s", type=float, default=600.0, help="bound on one session's comparison [default: %(default)s]")
    parser.add_argument("--poll-s", type=float, default=0.01, help="how often a session looks for new streamed updates [default: %(default)s]")
    parser.add_argument("--client-timeout-s", type=float, default=None,
                        help="httpx timeout of every gradio_client request [default: gradio_client's own: httpx's 5 s on the queue join, "
                             "which fails sessions when the app takes longer to accept them]")
    parser.add_argument("--cold-sessions", action="store_true",
                        help="the Compare click is each session's first request (the app creates the session's state in it) "
                             "[default: each session first asks /engine_status, as a browser's page load starts its session before any click]")
    parser.add_argument("--workdir", default=None, help="keep the app's folders (DuckDB, logs) here instead of a temporary folder")
    parser.add_argument("--app-arg", action="append", default=[], help="extra flag for app.py serve, e.g. --app-arg=--engine-kv-cache-gib=2 (repeatable)")
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_command(args: argparse.Namespace, port: int, root: Path) -> list[str]:
    """`app.py serve` with every run-time folder in ``root`` (as tests/test_serve_cli.py starts it)."""
    return [sys.executable, "app.py", "serve", "--port", str(port), "--model", args.model, "--db", str(root / "b.duckdb"),
            "--data-dir", str(root), "--jobs-dir", str(root / "jobs"), "--scheduler-db", str(root / "scheduler.sqlite"),
            "--trained-models-dir", str(root / "trained"), "--export-dir", str(root / "exports"), *args.app_arg]


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not readable)"


def wait_http(proc: subprocess.Popen, url: str, deadline: float) -> None:
    import httpx

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py serve exited with status {proc.returncode} before serving")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"app.py serve not serving {url} in time")


def client_kwargs(timeout_s: float | None) -> dict:
    # ssl_verify=False: the app is plain http on 127.0.0.1, and gradio_client builds a new httpx client
    # per request (the queue join, the event stream), each loading the CA bundle when verifying:
    # 25 ms of CPU apiece here, 1 s for 20 sessions at once, taken from the app on the same 2 cores.
    return {"verbose": False, "ssl_verify": False, **({"httpx_kwargs": {"timeout": timeout_s}} if timeout_s else {})}


def wait_engine(proc: subprocess.Popen, url: str, model: str, deadline: float, timeout_s: float | None) -> float:
    """Block until a 16-token hard_cap `/compare` succeeds (the app waits for its engine inside it)."""
    from gradio_client import Client

    client = Client(url, **client_kwargs(timeout_s))
    started = time.monotonic()
    last_error = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py serve exited with status {proc.returncode} while its engine started")
        job = client.submit("Compute 1 + 1.", model, [16], ["hard_cap"], "2", 0, api_name="/compare")
        try:
            result = job.result(timeout=max(1.0, deadline - time.monotonic()))
            if all(g["phase"] == "done" for g in result["generations"]):
                return time.monotonic() - started
            last_error = f"probe generations not done: {[g.get('error') for g in result['generations']]}"
        except Exception as exc:  # the engine may still be loading, or restarting: try again
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(2.0)
    raise RuntimeError(f"engine not ready in time; last probe: {last_error}")


def card_tokens(cards_html) -> int:
    """Output tokens shown on all cards of one streamed update (0 before the first token)."""
    if not isinstance(cards_html, str):
        return 0
    return sum(int(n) for n in TOKENS_IN_CARD.findall(cards_html))


def run_session(index: int, url: str, inputs: tuple, expected: int, barrier: threading.Barrier | None, poll_s: float, timeout_s: float,
                client_timeout_s: float | None = None, on_end=None, open_page: bool = True) -> dict:
    """One comparison through `/compare_stream`; timings from submit (after the barrier).
    ``on_end()`` runs when the session is over, before its client is closed (which waits up to 1 s)."""
    from gradio_client import Client

    out = {"session": index, "question": inputs[0], "seed": inputs[5], "first_update_s": None, "ttft_s": None, "completion_s": None, "updates": 0,
           "generations": 0, "done": 0, "output_tokens": 0, "correct": 0, "server_ttft_s": None, "run_id": None, "error": None,
           "t_submit": None, "t_done": None}
    try:
        client = Client(url, **client_kwargs(client_timeout_s))  # connects (GET config) before the clock starts
        if open_page:
            client.predict(api_name="/engine_status")  # the session's first request, as a browser's page load is
    except Exception as exc:
        out["error"] = f"client: {type(exc).__name__}: {exc}"
        if barrier is not None:
            barrier.abort()
        return out
    try:
        if barrier is not None:
            barrier.wait()
        started = out["t_submit"] = time.perf_counter()
        job = client.submit(*inputs, api_name="/compare_stream")
        seen = 0
        deadline = started + timeout_s
        while True:
            finished = job.done()
            outputs = job.outputs()
            now = time.perf_counter()
            if out["first_update_s"] is None and outputs:
                out["first_update_s"] = now - started
            for update in outputs[seen:]:
                if out["ttft_s"] is None and card_tokens(update[1]) > 0:
                    out["ttft_s"] = now - started
            seen = len(outputs)
            if finished:
                break
            if now > deadline:
                job.cancel()
                raise TimeoutError(f"not finished after {timeout_s:.0f} s ({seen} updates)")
            time.sleep(poll_s)
        status, _cards, raw = job.result()
        out["t_done"] = time.perf_counter()
        out["completion_s"] = out["t_done"] - started
        out["updates"] = seen
        if not isinstance(raw, list):
            raise RuntimeError(f"no generations in the final update; status: {status!r}")
        match = RUN_IN_STATUS.search(status or "")
        out["run_id"] = match.group(1) if match else None
        out["generations"] = len(raw)
        out["done"] = sum(g.get("phase") == "done" for g in raw)
        out["output_tokens"] = sum(g.get("total_tokens") or 0 for g in raw)
        out["correct"] = sum(g.get("correct") is True for g in raw)
        ttfts = [g["ttft_s"] for g in raw if g.get("ttft_s") is not None]
        out["server_ttft_s"] = min(ttfts) if ttfts else None
        problems = [f"{g.get('controller')}@{g.get('budget')}: {g.get('phase')} {g.get('error') or ''}".strip() for g in raw if g.get("phase") != "done"]
        if out["generations"] != expected or problems:
            raise RuntimeError(f"{out['done']}/{expected} generations done; {'; '.join(problems)}; status: {status!r}")
        if out["ttft_s"] is None:
            raise RuntimeError(f"no streamed update showed a token ({seen} updates)")
    except threading.BrokenBarrierError:
        out["error"] = "barrier broken (another session could not connect)"
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if on_end is not None:
            on_end()
        try:
            client.close()
        except Exception:
            pass
    return out


def descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop_app(proc: subprocess.Popen, children: list) -> tuple[int | None, list[int]]:
    """SIGTERM (the app stops its engine on the way out), then SIGKILL what is left, by pid.

    Returns the app's exit status and the pids that had to be killed."""
    import psutil

    children = {c.pid: c for c in children + descendants(proc.pid)}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    _, alive = psutil.wait_procs(list(children.values()), timeout=30)
    killed = []
    for child in alive:
        try:
            child.kill()
            killed.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)
    return proc.returncode, killed


def cpu_seconds(app_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the app process, by its children (the vLLM server and
    its engine core), by this process (the clients), and by the whole machine (busy time of all cores)."""
    import psutil

    def used(process) -> float:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.NoSuchProcess:
            return 0.0

    app = psutil.Process(app_pid)
    machine = psutil.cpu_times()
    steal = getattr(machine, "steal", 0.0)  # a virtual machine's CPU taken by the host
    busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0) - getattr(machine, "guest", 0.0) - getattr(machine, "guest_nice", 0.0) - steal
    return {"app": used(app), "engine": sum(used(c) for c in descendants(app_pid)), "clients": used(psutil.Process()), "machine": busy, "steal": steal}


def percentile(values: list[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(values, q)) if values else None


def fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def count_stored(db: Path, run_ids: list[str]) -> tuple[int, int, int]:
    """(generations stored by compare runs, how many such runs, generations of the runs in ``run_ids``)."""
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        compare_rows = con.execute("SELECT count(*) FROM generations WHERE run_id LIKE 'compare-%'").fetchone()[0]
        runs = con.execute("SELECT count(DISTINCT run_id) FROM generations WHERE run_id LIKE 'compare-%'").fetchone()[0]
        timed = 0
        if run_ids:
            timed = con.execute(f"SELECT count(*) FROM generations WHERE run_id IN ({','.join('?' * len(run_ids))})", run_ids).fetchone()[0]
    return compare_rows, runs, timed


def main() -> int:
    args = parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from backend.evaluation.datasets import load_dataset

    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    controllers = [c.strip() for c in args.controllers.split(",") if c.strip()]
    per_session = len(budgets) * len(controllers)
    dataset = load_dataset("arith", seed=args.seed, limit=args.sessions + 1)
    warmup_q, questions = dataset.questions[0], dataset.questions[1:]

    def inputs(question, seed):
        # question, model, budgets, controllers, gold, seed, price_in, price_out (the Compare tab's inputs)
        return (question.question, args.model, [str(b) for b in budgets], controllers, question.gold, str(seed), 0.5, 2.0)

    tmp = None
    if args.workdir:
        root = Path(args.workdir).resolve()
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-load-compare-")
        root = Path(tmp.name)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    app_log = root / "app.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    print(f"workload: {args.sessions} sessions x {len(budgets)} budgets {budgets} x controllers {controllers} = "
          f"{args.sessions * per_session} generations, {args.model}, through /compare_stream; app folders in {root}", flush=True)
    bench_started = time.monotonic()
    with open(app_log, "ab") as log:
        proc = subprocess.Popen(app_command(args, port, root), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    results: list[dict] = []
    children: list = []
    ready_s = warmup_s = wall = None
    cpu: dict[str, float] = {}
    failure = None  # what stopped the benchmark before or between its sessions
    try:
        deadline = time.monotonic() + args.ready_timeout_s
        wait_http(proc, url, deadline)
        wait_engine(proc, url, args.model, deadline, args.client_timeout_s)
        ready_s = time.monotonic() - bench_started
        children = descendants(proc.pid)
        print(f"app up, engine ready {ready_s:.1f} s after start (pids: app {proc.pid}, "
              f"children {[c.pid for c in children]})", flush=True)
        warm = run_session(-1, url, inputs(warmup_q, args.seed + 10_000), per_session, None, args.poll_s, args.session_timeout_s, args.client_timeout_s)
        if warm["error"]:
            raise RuntimeError(f"warm-up comparison failed: {warm['error']}")
        warmup_s = warm["completion_s"]
        print(f"warm-up comparison: TTFT {warm['ttft_s']:.2f} s, done in {warmup_s:.2f} s, {warm['output_tokens']} tokens", flush=True)

        released: dict = {}
        ended: dict = {"left": args.sessions}
        lock = threading.Lock()

        def release() -> None:  # runs once, when every client is connected: the clock starts here
            released["cpu"], released["at"] = cpu_seconds(proc.pid), time.perf_counter()

        def end() -> None:  # the last session to end stops the clock
            with lock:
                ended["left"] -= 1
                if ended["left"] == 0:
                    ended["cpu"], ended["at"] = cpu_seconds(proc.pid), time.perf_counter()

        barrier = threading.Barrier(args.sessions, action=release)
        slots: list[dict | None] = [None] * args.sessions

        def worker(i: int) -> None:
            slots[i] = run_session(i, url, inputs(questions[i], args.seed + i), per_session, barrier, args.poll_s, args.session_timeout_s, args.client_timeout_s, end,
                                   open_page=not args.cold_sessions)

        threads = [threading.Thread(target=worker, args=(i,), name=f"session-{i}") for i in range(args.sessions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results = [s for s in slots if s is not None]
        children = children + descendants(proc.pid)
        if not released:
            raise RuntimeError("the sessions were never released: " + "; ".join(s["error"] for s in slots if s and s["error"]))
        if "at" not in ended:  # a session that never started (it could not connect) does not count down
            ended["cpu"], ended["at"] = cpu_seconds(proc.pid), time.perf_counter()
        wall = ended["at"] - released["at"]  # from the barrier's release to the last session's end
        cpu = {name: ended["cpu"][name] - released["cpu"][name] for name in ended["cpu"]}
        cpu["other"] = max(0.0, cpu.pop("machine") - cpu["app"] - cpu["engine"] - cpu["clients"])  # other processes: noise
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
        print(f"load_compare: {failure}\n--- app log tail\n{tail(app_log)}\n--- engine log tail\n{''.join(tail(log) for log in root.glob('engine*.log'))}",
              file=sys.stderr, flush=True)
    finally:
        code, killed = stop_app(proc, children)
    print(f"app stopped: exit status {code}" + (f"; had to kill leftover pids {killed}" if killed else "; no process left behind"), flush=True)

    stored = (None, None, None)
    if (root / "b.duckdb").exists():
        try:
            stored = count_stored(root / "b.duckdb", [r["run_id"] for r in results if r["run_id"]])
        except Exception as exc:
            print(f"load_compare: could not read the store: {type(exc).__name__}: {exc}", file=sys.stderr)

    print()
    print(f"{'#':>3} {'seed':>5} {'question':<42} {'1st upd':>7} {'TTFT s':>7} {'done s':>7} {'srv TTFT':>8} {'upd':>4} {'gens':>5} {'tokens':>6} {'correct':>7}  error")
    for r in results:
        q = r["question"] if len(r["question"]) <= 42 else r["question"][:41] + "…"
        print(f"{r['session']:>3} {r['seed']:>5} {q:<42} {fmt(r['first_update_s']):>7} {fmt(r['ttft_s']):>7} {fmt(r['completion_s']):>7} {fmt(r['server_ttft_s']):>8} "
              f"{r['updates']:>4} {r['done']:>2}/{r['generations']:<2} {r['output_tokens']:>6} {r['correct']:>7}  {r['error'] or ''}")
    ok = [r for r in results if not r["error"]]
    errors = args.sessions - len(ok)
    ttft = [r["ttft_s"] for r in ok]
    first_update = [r["first_update_s"] for r in ok]
    completion = [r["completion_s"] for r in ok]
    server_ttft = [r["server_ttft_s"] for r in ok if r["server_ttft_s"] is not None]
    tokens = sum(r["output_tokens"] for r in results)
    generations_done = sum(r["done"] for r in results)
    # Tokens/s over the timed part: from the first submit (the barrier's release) to the last completion.
    submits = [r["t_submit"] for r in results if r["t_submit"] is not None]
    dones = [r["t_done"] for r in results if r["t_done"] is not None]
    span = max(dones) - min(submits) if dones and submits else None
    expected_rows = (args.sessions + 1) * per_session  # timed sessions and the warm-up (the 1-token probes come on top)
    print()
    for name, values in (("first streamed update (s)", first_update), ("TTFT (client, s)", ttft), ("completion (s)", completion), ("first-column TTFT in the app (s)", server_ttft)):
        print(f"{name:<34} p50 {fmt(percentile(values, 50))}  p95 {fmt(percentile(values, 95))}  "
              f"min {fmt(min(values) if values else None)}  max {fmt(max(values) if values else None)}")
    print(f"sessions ok {len(ok)}/{args.sessions}, errors {errors}; generations done {generations_done}/{args.sessions * per_session}; "
          f"output tokens {tokens}; {fmt(tokens / span if span else None, 1)} tokens/s over the {fmt(span)} s timed span "
          f"(barrier release to the last session's end: {fmt(wall)} s)")
    if cpu and wall:
        print(f"CPU seconds over the timed part ({wall:.2f} s wall, {os.cpu_count()} cores = {wall * (os.cpu_count() or 1):.1f} core-seconds): "
              + ", ".join(f"{name} {value:.1f}" for name, value in cpu.items()) + " (other: processes outside this benchmark; steal: taken by the host)")
    print(f"stored generations of compare runs: {stored[0]} in {stored[1]} runs (expected {expected_rows} + the readiness probes' 1 each); "
          f"of the timed sessions' runs: {stored[2]} (expected {args.sessions * per_session})")
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "model": args.model,
        "sessions": args.sessions,
        "budgets": budgets,
        "controllers": controllers,
        "errors": errors,
        "error_kinds": sorted({r["error"].split(":")[0] for r in results if r["error"]}),
        "failure": failure,
        "client_timeout_s": args.client_timeout_s,
        "generations": args.sessions * per_session,
        "generations_done": generations_done,
        "output_tokens": tokens,
        "tokens_per_s": round(tokens / span, 1) if span else None,
        "ttft_p50_s": _round(percentile(ttft, 50)),
        "ttft_p95_s": _round(percentile(ttft, 95)),
        "ttft_min_s": _round(min(ttft) if ttft else None),
        "ttft_max_s": _round(max(ttft) if ttft else None),
        "first_update_p50_s": _round(percentile(first_update, 50)),
        "first_update_p95_s": _round(percentile(first_update, 95)),
        "completion_p50_s": _round(percentile(completion, 50)),
        "completion_p95_s": _round(percentile(completion, 95)),
        "completion_min_s": _round(min(completion) if completion else None),
        "completion_max_s": _round(max(completion) if completion else None),
        "server_ttft_p50_s": _round(percentile(server_ttft, 50)),
        "server_ttft_p95_s": _round(percentile(server_ttft, 95)),
        "timed_wall_s": _round(wall),
        "cpu_s": {name: round(value, 1) for name, value in cpu.items()},
        "app_ready_s": _round(ready_s),  # from starting app.py serve to its engine answering
        "warmup_s": _round(warmup_s),
        "stored_compare_generations": stored[0],
        "stored_timed_generations": stored[2],
        "expected_timed_generations": args.sessions * per_session,
        "app_exit_status": code,
        "leftover_pids_killed": killed,
    }
    if tmp is not None:
        tmp.cleanup()
    print(json.dumps(result))
    return 0 if errors == 0 and stored[2] == args.sessions * per_session and not killed else 1


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    sys.exit(main())
