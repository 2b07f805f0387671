"""budgetlab: the single entry point.

    python app.py                      # same as `python app.py serve`
    python app.py serve --model l1-tiny --port 7860
    python app.py serve --backend-url http://gpu-box:8000 --backend-api-key KEY --model l3lab/L1-Qwen-1.5B-Exact
    python app.py sweep --model l1-tiny --dataset arith --limit 50 \
        --controllers l1_exact,l1_max,s1 --budgets 64,128,256 --samples 4 --run demo --json
    python app.py report --run demo --json   # a run's summary, recomputed from the store
    python app.py train --config training/configs/tiny-smoke.yaml --output-dir /tmp/smoke   # LCPO
    python app.py settings             # the configuration reference (Markdown)

This is the only module that reads the environment: every setting can come
from a flag (--name), a BUDGETLAB_NAME variable, or its default, in that order
(see backend/settings.py).
"""

from __future__ import annotations

import argparse
import functools
import dataclasses
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from backend.settings import AppSettings, SettingError, env_name, parse_value, registry, settings_markdown

SUBCOMMANDS = ("serve", "sweep", "audit", "report", "train", "settings")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="app.py", description="budgetlab: controlled reasoning, measured.")
    # No abbreviated flags: "--models l1-tiny" once silently set --models-dir (a prefix of it), not --model.
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}",
                                     parser_class=functools.partial(argparse.ArgumentParser, allow_abbrev=False))
    serve = commands.add_parser("serve", help="start the dashboard (the default)", description="Start the dashboard and its engine.")
    add_setting_flags(serve)
    add_sweep_parser(commands)
    add_sweep_parser(commands, audit=True)
    report = commands.add_parser("report", help="print a run's summary from the store", description="Recompute a run's summary from its stored generations (no engine needed).")
    report.add_argument("--run", default=None, help="the run's name; without it, list the runs")
    report.add_argument("--json", action="store_true", help="print JSON (the same list as `sweep --json`)")
    add_setting_flags(report, only=("db",))
    train = commands.add_parser("train", help="run an LCPO fine-tune (TRL GRPO) from a job file", description="Run an LCPO job headless; a job started again on the same output folder resumes from its last checkpoint.")
    train.add_argument("--config", required=True, help="job file (YAML), e.g. training/configs/tiny-smoke.yaml")
    train.add_argument("--output-dir", default=None, help="where checkpoints, metrics.jsonl and final/ go [default: the job file's output_dir]")
    add_setting_flags(train, only=("models_dir", "trained_models_dir", "dataset_max_mb"))
    commands.add_parser("settings", help="print the configuration reference as Markdown")
    return parser


def add_sweep_parser(commands, audit: bool = False) -> None:
    """``sweep``, or with `audit` the ``audit`` command: the same sweep, then a verdict per budget knob."""
    if audit:
        sweep = commands.add_parser("audit", help="audit budget adherence: is each knob enforced, a hint, or ignored?",
                                    description="Run a sweep (stored like any run) and judge each (model, controller): requested N against "
                                                "measured thinking tokens, share over budget, share of empty answers, and a verdict: "
                                                "enforced, hint or ignored. Models may be MODEL_ID@ENDPOINT (--endpoints FILE).")
    else:
        sweep = commands.add_parser("sweep", help="run an evaluation sweep (datasets x controllers x budgets x samples)", description="Run, or resume, an evaluation sweep; every generation is stored.")
    sweep.add_argument("--model", dest="models", action="append", default=None, help="model(s) to evaluate: repeat the flag or separate with commas; "
                       "MODEL_ID@ENDPOINT for a chat endpoint's model [default: the model setting]")
    if audit:
        sweep.add_argument("--dataset", default="arith", help="questions to audit with [default: %(default)s]")
        sweep.add_argument("--limit", default="20", help="number of questions [default: %(default)s]")
    else:
        sweep.add_argument("--dataset", required=True, help="built-in name (arith), a JSONL/Parquet/CSV file, or a Hugging Face dataset name")
        sweep.add_argument("--limit", default=None, help="number of questions: a sample drawn with --seed [default: all]")
    sweep.add_argument("--controllers", default="l1_exact,l1_max,s1", help="comma-separated controllers (the README's table), or parallel forms majK:INNER / bestK:INNER: "
                       "K samples of INNER at N/K tokens each, then a vote or the most confident [default: %(default)s]")
    sweep.add_argument("--budgets", default=None, help="comma-separated token budgets [default: the first model's suggested budgets]")
    sweep.add_argument("--samples", default="1", help="samples per question; the L1 paper uses 16 at temperature 0.6, top_p 0.95 [default: %(default)s]")
    sweep.add_argument("--seed", default="0", help="seed of the question sample and of every generation [default: %(default)s]")
    sweep.add_argument("--concurrency", default=None, help="requests in flight at once [default: the sweep_concurrency setting]")
    sweep.add_argument("--run", default=None, help="run name; running the same name again resumes it [default: sweep-DATASET-TIME, audit-MODEL-TIME]")
    sweep.add_argument("--json", action="store_true", help="print the summary as one JSON list on stdout")
    sweep.add_argument("--question-field", default=None, help="the file's question field [default: detected]")
    sweep.add_argument("--answer-field", default=None, help="the file's gold answer field [default: detected]")
    sweep.add_argument("--skip-bad", action="store_true", help="skip malformed records (they are counted) instead of refusing the file")
    sweep.add_argument("--split", default="test", help="split of a Hugging Face dataset [default: %(default)s]")
    sweep.add_argument("--hub-config", default=None, help="configuration of a Hugging Face dataset (e.g. main for openai/gsm8k)")
    sweep.add_argument("--every-pair", action="store_true", help="with an L1 model and a base: run every method on both "
                       "[default: L1 prompts on the L1 model, the other methods on the base]")
    add_setting_flags(sweep, skip=("model", "host", "port"))


def add_setting_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> None:
    for spec in registry():
        if spec.name in skip or (only is not None and spec.name not in only):
            continue
        flag = "--" + spec.name.replace("_", "-")
        # argparse formats help with %: a literal one in a setting's help ("a 95% interval") must be doubled.
        help_text = f"{spec.help} [env {env_name(spec.name)}; default {spec.default!r}]".replace("%", "%%")
        parser.add_argument(flag, dest=spec.name, default=None, metavar=spec.type.__name__.upper(), help=help_text)


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> AppSettings:
    overrides = {}
    for spec in registry():
        raw = getattr(args, spec.name, None)
        if raw is not None:
            overrides[spec.name] = parse_value(spec, raw)
    return AppSettings.from_sources(env=env, overrides=overrides)


def serve(settings: AppSettings, env: Mapping[str, str]) -> int:
    # Imported here so that `--help` and `settings` stay fast.
    from backend.factory import StoreUnavailable, open_app
    from backend.serving.registry import UnknownModelError, check_available
    from ui.app import build_app, launch_options

    exposure = settings.exposure_problem()
    if exposure:  # before anything starts: nothing listens on an open port by accident
        print(f"app.py serve: {exposure}", file=sys.stderr)
        return 2
    try:  # refuse a bad model before anything is created or started
        spec = settings.model_registry().resolve(settings.model)
        if not settings.backend_url:
            check_available(spec)
    except UnknownModelError as exc:
        print(f"app.py serve: {exc}", file=sys.stderr)
        return 2
    try:
        with open_app(settings, env, jobs=True) as app:
            spec = app.service.start_default_engine()
            engine = app.service.engines.engine_of(spec.name)
            print(f"budgetlab: serving {spec.name}" + (f"; engine log in {engine.log_path}" if engine else ""), flush=True)
            demo = build_app(app.service, app.jobs, settings.resolve_path(settings.export_dir))
            demo.queue(default_concurrency_limit=32)
            print(f"budgetlab: dashboard on http://{settings.host}:{settings.port}", flush=True)
            if app.service.sweeps_stored() == 0:
                print("budgetlab: first time here? Compare: press Compare on the example question. Analytics: press "
                      "'Reproduce the L1 figures on the embedded model' (a few minutes) for the paper's charts.", flush=True)
            demo.launch(server_name=settings.host, server_port=settings.port, show_error=True, quiet=True, auth=settings.auth_pair(),
                        **launch_options())
    except StoreUnavailable as exc:
        print(f"app.py serve: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv.insert(0, "serve")
    args = build_parser().parse_args(argv)
    if args.command == "settings":
        print(settings_markdown())
        return 0
    try:
        env = os.environ if env is None else env
        settings = settings_from(args, env)
    except (SettingError, TypeError) as exc:
        print(f"app.py {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command in ("serve", "sweep", "audit"):
        from backend.errors import InputError

        try:
            settings.chat_endpoints()  # a mistake in the endpoints file is refused before anything starts
        except InputError as exc:
            print(f"app.py {args.command}: {exc}", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C stops the command even when it was started in the background of a non-interactive
    # shell (nohup, `cmd &` in a script), which hands it SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.command in ("sweep", "audit"):
        return sweep(args, settings, env)
    if args.command == "train":
        return train(args, settings)
    if args.command == "report":
        from ui.terminal import report_command

        return report_command(settings, args.run, args.json)
    return serve(settings, env)


def train(args: argparse.Namespace, settings: AppSettings) -> int:
    from backend.evaluation.datasets import DatasetError
    from backend.serving.registry import UnknownModelError
    from training.config import ConfigError, LCPOConfig, load_job
    from training.jobs import prepare_job
    from training.lcpo import TrainingDiverged, run_job
    from training.prm import PRMConfig, run_prm_job
    from training.tiny.job import run_base_job

    # The shell user's job may read any dataset path (within the size limit).
    policy = settings.dataset_policy(any_path=True)
    try:
        job = load_job(args.config, output_dir=args.output_dir)
        if isinstance(job, LCPOConfig):
            job = prepare_job(job, settings.model_registry(), policy, settings.resolve_path)
        elif isinstance(job, PRMConfig):  # job: prm, a process reward model on the policy's backbone
            job = dataclasses.replace(job, output_dir=str(settings.resolve_path(job.output_dir)))
        else:  # job: tiny_base, the base model from scratch
            job = dataclasses.replace(job, out=str(settings.resolve_path(job.out)))
    except (ConfigError, UnknownModelError, DatasetError) as exc:
        print(f"app.py train: {exc}", file=sys.stderr)
        return 2
    command = "python app.py train --config " + str(args.config) + (f" --output-dir {args.output_dir}" if args.output_dir else "")
    try:
        if isinstance(job, PRMConfig):
            print(f"app.py train: PRM saved in {run_prm_job(job)} (eval.json: against the oracle on held-out policy samples)", file=sys.stderr)
            return 0
        if not isinstance(job, LCPOConfig):
            out = run_base_job(job, command=command)
            print(f"app.py train: base model saved in {out}", file=sys.stderr)
            return 0
        final = run_job(job, command=command, dataset_policy=policy)
    except KeyboardInterrupt:  # a Cancel (SIGTERM) or Ctrl-C: the log ends with what happened, not a traceback
        where = getattr(job, "output_dir", None) or getattr(job, "out", "")
        print(f"app.py train: cancelled (SIGTERM or Ctrl-C); checkpoints saved so far are in {where}, and Resume continues from the last",
              file=sys.stderr, flush=True)
        return 130
    except DatasetError as exc:  # the file's records: malformed, no question field, ...
        print(f"app.py train: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"app.py train: {exc}", file=sys.stderr)
        return 1
    print(f"app.py train: model saved in {final}; metrics in {Path(job.output_dir) / 'metrics.jsonl'}", file=sys.stderr)
    return 0


def sweep(args: argparse.Namespace, settings: AppSettings, env: Mapping[str, str]) -> int:
    """``app.py sweep``, and ``app.py audit`` (the same sweep, then its verdicts)."""
    from backend.errors import InputError
    from backend.service.sweep_plan import parse_sweep_request
    from backend.serving.registry import UnknownModelError
    from ui.terminal import sweep_command

    models = args.models or [settings.model]
    try:
        budgets = args.budgets
        if budgets is None:
            budgets = suggested_budgets(settings, models[0].split(",")[0].strip())
        request = parse_sweep_request(
            models=models, dataset=args.dataset, controllers=args.controllers, budgets=budgets, samples=args.samples,
            limit=args.limit, seed=args.seed, concurrency=args.concurrency, run=args.run or _audit_run_name(args, models),
            question_field=args.question_field, answer_field=args.answer_field, skip_bad=args.skip_bad, split=args.split, hub_config=args.hub_config,
            each_on_its_model=not getattr(args, "every_pair", False),
        )
        settings.dataset_policy(any_path=True).locate(request.dataset)  # a bad path is refused before the store is opened
    except (InputError, UnknownModelError) as exc:
        print(f"app.py {args.command}: {exc}", file=sys.stderr)
        return 2
    # The first model's engine starts first; each model gets its own (memory allowing, the earlier ones stay up).
    settings = dataclasses.replace(settings, model=request.models[0])
    return sweep_command(settings, request, env, args.json, audit=args.command == "audit")


def _audit_run_name(args: argparse.Namespace, models: list[str]) -> str | None:
    if args.command != "audit":
        return None
    import datetime as dt
    import re

    first = re.sub(r"[^A-Za-z0-9_.@-]+", "-", models[0].split(",")[0].strip())
    return f"audit-{first}-{dt.datetime.now():%Y%m%d-%H%M%S}"


def suggested_budgets(settings: AppSettings, model: str) -> tuple[int, ...]:
    """A model's suggested budgets: an endpoint model's from the endpoints file, a served model's from the registry."""
    from backend.serving.registry import ModelSpec

    chat = ModelSpec.on_endpoint(model, settings.chat_endpoints())
    return chat.budgets if chat is not None else settings.model_registry().resolve(model).budgets


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends the app like Ctrl-C, so the engine child is stopped on the way out."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
