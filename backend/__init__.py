"""The backend: everything the dashboard and the command line stand on, with no UI in it.

``factory`` builds the app (store, service with its engine, training jobs) for every entry point;
``settings`` is the registry of every setting. Below them, one level per row, dependencies
pointing down (import-linter checks it):

- ``service``: what the UI and the CLI call (comparisons, sweeps, reports, analytics);
  ``jobs``: training jobs on disk, their scheduler, their copy into DuckDB;
- ``controllers``: ways to spend a budget of N tokens (L1 prompts, s1, caps);
  ``evaluation``: questions, grading, keywords, costs;
- ``serving``: the model registry, the engines and the HTTP client;
- ``config``, ``errors``, ``processes``, ``interrupts``: small pieces all of them share.

``backend`` never imports ``training``, ``ui`` or a command-line module; see docs/architecture.md.
"""
