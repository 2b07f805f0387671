"""Training: LCPO fine-tunes (TRL's GRPO with the L1 length rewards) and the tiny models made from scratch.

``config`` is an LCPO job's typed config and its job files; ``jobs`` checks a job request (the
Train tab) and prepares a job file's config (``app.py train``); ``lcpo`` runs a job; ``rewards``
are the L1 paper's Exact and Max rewards as small pure functions; ``warm_start`` is the SFT step
before GRPO; ``traces`` writes the arith thinking traces; ``model_card`` writes the cards;
``tiny`` trains the tiny base model. Training may use ``backend`` (prompts, grading, problems,
the model registry); ``backend`` never uses training.
"""
