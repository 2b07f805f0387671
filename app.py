"""budgetlab: the single entry point.

    python app.py                      # same as `python app.py serve`
    python app.py serve --model tiny-r1-base --port 7860
    python app.py serve --backend-url http://gpu-box:8000 --backend-api-key KEY --model l3lab/L1-Qwen-1.5B-Exact
    python app.py settings             # the configuration reference (Markdown)

This is the only module that reads the environment: every setting can come
from a flag (--name), a BUDGETLAB_NAME variable, or its default, in that order
(see backend/settings.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from backend.settings import AppSettings, SettingError, env_name, parse_value, registry, settings_markdown

SUBCOMMANDS = ("serve", "settings")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="app.py", description="budgetlab: controlled reasoning, measured.")
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    serve = commands.add_parser("serve", help="start the dashboard (the default)", description="Start the dashboard and its engine.")
    add_setting_flags(serve)
    commands.add_parser("settings", help="print the configuration reference as Markdown")
    return parser


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for spec in registry():
        flag = "--" + spec.name.replace("_", "-")
        help_text = f"{spec.help} [env {env_name(spec.name)}; default {spec.default!r}]"
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
    from backend.models import ModelRegistry, UnknownModelError, check_available
    from backend.service import Budgetlab
    from store.writer import StoreConfig, StoreWriter
    from ui.app import CSS, build_app

    try:  # refuse a bad model before anything is created or started
        spec = ModelRegistry(settings.resolve_path(settings.models_dir)).resolve(settings.model)
        if not settings.backend_url:
            check_available(spec)
    except UnknownModelError as exc:
        print(f"app.py serve: {exc}", file=sys.stderr)
        return 2
    store = StoreWriter(StoreConfig(settings.resolve_path(settings.db)))
    service = Budgetlab.from_settings(settings, store, env=env)
    try:
        spec = service.start_default_engine()
        print(f"budgetlab: serving {spec.name}; engine log in {settings.resolve_path(settings.data_dir) / 'engine.log'}", flush=True)
        demo = build_app(service)
        demo.queue(default_concurrency_limit=32)
        print(f"budgetlab: dashboard on http://{settings.host}:{settings.port}", flush=True)
        demo.launch(server_name=settings.host, server_port=settings.port, css=CSS, ssr_mode=False, show_error=True, quiet=True)
        return 0
    finally:
        service.close()
        store.close()


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
    signal.signal(signal.SIGTERM, _interrupt)
    return serve(settings, env)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends the app like Ctrl-C, so the engine child is stopped on the way out."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
