"""The application service: what the UI, the API and the command line call.

``budgetlab`` is the service (`Budgetlab`): models and the engine, comparisons, sweeps, reports
and analytics, over the store. ``inputs`` checks loose user input; ``compare`` runs one question
at several budgets and controllers; ``sweep_plan``, ``sweep`` and ``sweep_worker`` run the L1
paper's evaluation (request and keys, the run, one model's share); ``records`` turns a finished
generation into a store row, the same for both; ``analytics`` answers the Analytics tab;
``examples`` are the Compare tab's built-in questions.
"""
