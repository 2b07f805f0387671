"""The faces of the app: the Gradio dashboard and the terminal output of ``app.py sweep``/``report``.

``app`` builds the dashboard's Blocks from the tabs (``compare_tab``, ``sweep_tab``,
``train_tab``, ``analytics_tab``); ``charts`` and ``render`` are pure functions (Altair charts,
HTML cards); ``terminal`` is the progress bar and tables of the command line. The UI holds no SQL
and no HTTP: it calls the service (and the training scheduler), which the app factory built.
"""
