"""Evaluation: the questions, the grade, and what a generation's text and tokens are worth.

``arith`` is the built-in problem generator (the ``arith`` dataset, the Compare examples, and the
problems training writes traces for); ``datasets`` loads questions from it, from files and from
the Hub, within the dataset policy; ``grading`` extracts and checks boxed answers, with
math-verify in worker processes (``verifier``, ``verify_worker``); ``keywords`` counts the L1
paper's reasoning words; ``costs`` prices results and finds the cheapest setting for a target.
Nothing here talks to an engine.
"""
