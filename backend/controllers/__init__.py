"""Budget controllers: ways to spend a budget of N tokens on one question.

``registry`` names them (``l1_exact``, ``l1_max``, ``s1``, ``hard_cap``, ``no_thinking``,
``unconstrained``); ``base`` is what a controller is and ``config`` what it is configured with;
``prompted`` and ``s1`` are the strategies; ``prompts`` holds the L1 paper's prompt texts (shared
with training); ``session`` is the served model as the controllers see it; ``live`` the record a
generation fills in as it streams. A new controller goes in a module here and in
``registry.CONTROLLER_CLASSES``.
"""
