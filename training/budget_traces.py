"""Budget-aware thinking traces: an arith problem worked for exactly N tokens, or for at most M.

Built only from the base model's own pieces (`training.traces`): per operation its column working
("37 + 48: 7 + 8 = 15, 3 + 4 + 1 = 8, so 85."), the expression and chain lines, re-checks, whole
re-passes, closing sentences of several lengths; for a tiny budget the column work of the first
operations, then a jump to the result (a guess). Given a target, the work is allocated in a
natural order (column work operation by operation while it fits, then a re-check of each
operation, then the chain lines, then further rounds of checks and whole re-passes) and the trace
lands on exactly N tokens, counted with the policy's tokenizer over the whole completion
(thinking, ``</think>``, the boxed answer and the end token). The richest plan that can land
exactly is used; its check variants and closing are drawn at random among those that do. A Max
trace is an Exact one a little under M.

With ``tick_every`` the thinking carries a self-emitted countdown: a tick says that ``10 k`` to
``10 k + 9`` tokens of the completion remain (k = remaining // 10, the tick counted), so the first
tick of "Think for 243 tokens." is 24: the budget's leading digits; a last ``‹0›``, on a line of its
own, closes the thinking. Two spellings
(``tick_style``): ``"token"``, one added token per value (``‹24›``), and ``"digits"``, one added
token per digit (``‹2›‹4›``). Two placements (``tick_place``): at line starts (``"lines"``), or
about every ten tokens at word boundaries, each one less than the last (``"interval"``). Ticks
are ordinary tokens of the completion: they count in n, and none comes after ``</think>``.

    writer = TraceWriter(tokenizer, tick_every=10)
    trace = writer.exact(problem, 243, random.Random(0))      # trace.tokens == 243
    trace = writer.at_most(problem, 243, random.Random(0))    # trace.tokens <= 243

Lengths are additive per line when each line is counted with its newline (a punctuation mark and
the newline after it are one token), which `_cost` relies on; `TraceWriter` checks the total of
every trace it returns against the tokenizer's count of the whole text.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from backend.evaluation.arith import ArithProblem, apply_op, parse_question
from training.trace_checks import Slip, caught_slip, column_checks, slipped_work, word_prefixes
from training.traces import CHECKED_OPENING, STEPS_OPENING, column_work, format_completion

TICK_UNIT = 10  # a tick's value counts tokens in tens
MAX_TICK = 53  # ticks ‹0›..‹53›: budgets up to 539 tokens, in the 54 unused embedding rows of the tiny models
CHECK_ROUND_OPENING = "Let me check each step again."
REPASS_OPENING = "Wait, let me check the whole computation again."
# The closing of a thinking: an optional summary line, an optional remark, and a sentence that
# states the result, each of several lengths, so that a trace can land on any length. A remark
# that claims checks is used only after a plan that checked.
FINALS = ("The answer is {x}.", "So the answer is {x}.", "So the final answer is {x}.", "Therefore, the final answer is {x}.",
          "Yes. So the final answer is {x}.")
SUMMARIES = ("", "So the result is {x}.")
REMARKS = ("", "Good.", "That is right.")
CHECK_REMARKS = ("All the steps check.", "I checked every step.", "Everything checks out.", "Every line above agrees.")
# A thinking whose work stops short of the result says that its answer is a guess ("I think ..."),
# so that "So the answer is x." always states a result the work reached (the model copies it)
# and a guess is never dressed as one. Words the base's tokenizer holds, mostly.
GUESS_LEADS = ("", "I stop.", "No more steps.", "I stop here.", "No more steps. I stop here.")
GUESSES = ("I think it is {x}.", "I think the result is {x}.", "I think the answer is {x}.", "So I think it is {x}.",
           "So I think the answer is {x}.", "So I think the final answer is {x}.")


def closings(answer: int, checked: bool, guess: bool = False) -> list[str]:
    """Every closing (lines joined by newlines) for a thinking that did, or did not, check its
    work, or (``guess``) that stopped before reaching the result."""
    if guess:
        return ["\n".join(part for part in (lead, g) if part).format(x=answer) for lead in GUESS_LEADS for g in GUESSES]
    remarks = REMARKS + (CHECK_REMARKS if checked else ())
    return ["\n".join(part for part in (s, r, f) if part).format(x=answer) for s in SUMMARIES for r in remarks for f in FINALS]


TICK_STYLES = ("token", "digits")
MAX_CLOSES = ("under", "count", "first")
BLOCK_LEFT = (20, 29)  # tokens left (the answer included) where a closing block starts: ‹2›


def _three_ends_the_work(ticked: list[str]) -> bool:
    """The closing block (the line before the ‹0› line) starts the line right after the one that
    holds ‹3›, or holds ‹3› itself (‹3›‹2›)."""
    return len(ticked) >= 3 and (ticked[-2].startswith("‹3›") or "‹3›" in ticked[-3])


def tick_token(value: int) -> str:
    return f"‹{value}›"


def tick_text(value: int, style: str = "token") -> str:
    """The tick of ``value`` (remaining tokens // 10) in ``style``."""
    return tick_token(value) if style == "token" else "".join(tick_token(int(d)) for d in str(value))


def tick_tokens(style: str = "token") -> list[str]:
    """The tick tokens of ``style``, to add to a tokenizer (as added tokens: one id each)."""
    return [tick_token(v) for v in range(MAX_TICK + 1 if style == "token" else 10)]


@dataclass(frozen=True)
class BudgetTrace:
    thinking: str
    completion: str  # what follows the generation prompt, without the end token
    tokens: int  # tokens of the completion plus the end token: the n the budget counts
    target: int  # N (exact) or M (at most)
    mode: str  # "exact" or "max"
    plan: str  # which allocation it is, e.g. "checked+2r"
    masked: tuple[tuple[int, int], ...] = ()  # character spans of the completion to keep out of the loss (a slip)


def operations(problem: ArithProblem) -> list[tuple[int, str, int, int]]:
    """(a, op, b, a op b) for each operation, left to right."""
    acc, ops = parse_question(problem.question)
    out = []
    for op, b in ops:
        new = apply_op(acc, op, b)
        out.append((acc, op, b, new))
        acc = new
    return out


def chain_lines(problem: ArithProblem) -> list[str]:
    """The expression, then one line per operation folding it ("= 85 - 12 + 5")."""
    acc, ops = parse_question(problem.question)
    lines = [problem.question.removeprefix("Compute ").removesuffix(".")]
    for i, (op, b) in enumerate(ops):
        acc = apply_op(acc, op, b)
        lines.append(f"= {acc}" + "".join(f" {o} {v}" for o, v in ops[i + 1:]))
    return lines


def check_variants(a: int, op: str, b: int, c: int) -> list[str]:
    """The base model's re-checks of ``a op b = c`` (by the inverse operation or by recomputing)."""
    inverse = f"{c} - {b} = {a}" if op == "+" else f"{c} + {b} = {a}"
    return [f"Wait, let me check: {inverse}. Yes.", f"Let me check: {inverse}, so {a} {op} {b} = {c} is right.",
            f"Wait, {a} {op} {b}... check: {inverse}. So it is {c}.", f"Check again: {a} {op} {b} = {c}. Therefore {c}."]


def redo_variants(a: int, op: str, b: int, c: int, column_style: str = "compact") -> list[str]:
    """A later round's check of one operation: the inverse, or the column working again."""
    return check_variants(a, op, b, c)[:2] + [f"Let me redo {column_work(a, op, b, column_style)}"]


@dataclass(frozen=True)
class _Plan:
    """Lines of a thinking before its closing; each slot is a list of interchangeable lines."""

    name: str
    slots: tuple[tuple[str, ...], ...]
    guess: bool = False  # the work stops short of the result: the closing says it guesses
    tail: str = ""  # the line the work would go on with: a cut trace stops part way into it


class TraceWriter:
    def __init__(self, tokenizer, tick_every: int = 0, tick_style: str = "token", tick_place: str = "lines", max_rounds: int = 40,
                 max_close: str = "under", cut_passes: bool = False, column_checks: bool = False, slip_share: float = 0.0,
                 cut_share: float = 0.0, close_block: bool = False, column_style: str = "compact",
                 close_next_line: bool = False) -> None:
        """``tick_every``: tokens between two ticks at least (0: no ticks); the tokenizer must then
        hold the tick tokens of ``tick_style`` (`tick_tokens`); ``tick_place``: "lines" or
        "interval" (see `_line_ticks`); ``max_close``: how a Max trace stays under M (`at_most`);
        ``cut_passes``: plans whose last re-pass stops part way, as the countdown stops a model's
        (its closing states the result the first pass reached, not the re-pass's last line)."""
        self.cut_passes = cut_passes
        # ``cut_share``: that share of traces stops its next line part way (at a word boundary) where
        # the countdown says to close: the closing follows the count, not the end of a line.
        self.cut_share = cut_share
        # ``close_block``: the closing always starts a line at ‹2› (20-29 tokens left, the answer
        # included) and nothing but the closing comes after it: no work line ever meets ‹2› or ‹1›
        # (sampled traces that did restarted the count, I30-2); work ticks stop at ‹3›.
        self.close_block = close_block
        # ``close_next_line``: the line that holds ‹3› is the last work line, so the closing always starts
        # the next line: sampled countdowns ran away at a line break after ‹3› (I30-9).
        self.close_next_line = close_next_line and close_block
        # ``column_checks``: each operation's check is its inverse worked in columns, right after the
        # work ("Check 85 - 48: ..., so 37. Yes."); ``slip_share``: that share of traces has one
        # operation slipped, caught by its check ("No, not 37.") and worked again (`Slip`).
        self.column_checks = column_checks or slip_share > 0
        # ``column_style``: how each operation is worked (`training.traces.column_work`); slips are
        # written for the compact one.
        if slip_share and column_style != "compact":
            raise ValueError(f"slip_share {slip_share} with column style {column_style!r}: slips need the compact style")
        self.column_style = column_style
        self.slip_share = slip_share
        if max_close not in MAX_CLOSES:
            raise ValueError(f"max_close {max_close!r}: choose {' or '.join(MAX_CLOSES)}")
        self.max_close = max_close
        if tick_style not in TICK_STYLES:
            raise ValueError(f"tick_style {tick_style!r}: choose token or digits")
        if tick_place not in ("lines", "interval"):
            raise ValueError(f"tick_place {tick_place!r}: choose lines or interval")
        self.tick_place = tick_place
        self.tokenizer = tokenizer
        self.tick_every = tick_every
        self.tick_style = tick_style
        self.max_rounds = max_rounds
        if tick_every and any(len(tokenizer(tick, add_special_tokens=False)["input_ids"]) != 1 for tick in tick_tokens(tick_style)):
            raise ValueError("tick tokens are not single tokens in this tokenizer: add training.budget_traces.tick_tokens() first")

    @functools.lru_cache(maxsize=200_000)
    def _cost(self, line: str) -> int:
        """Tokens of one line with its newline (additive: see the module docstring)."""
        return len(self.tokenizer(line + "\n", add_special_tokens=False)["input_ids"])

    def count(self, completion: str) -> int:
        """Tokens of a completion plus the end token."""
        return len(self.tokenizer(completion, add_special_tokens=False)["input_ids"]) + 1

    # --- the two modes
    def exact(self, problem: ArithProblem, n: int, rng: random.Random) -> BudgetTrace:
        """A trace of exactly ``n`` tokens; ValueError if ``n`` is below the shortest possible trace."""
        lines, plan, slip = self._fit_with_slip(problem, n, rng)
        return self._finish(problem, lines, n, n, "exact", plan, slip=slip)

    def at_most(self, problem: ArithProblem, m: int, rng: random.Random, slack: tuple[float, float] = (0.06, 0.15)) -> BudgetTrace:
        """A trace of at most ``m`` tokens.

        ``max_close="under"``: an Exact trace of ``m`` minus a margin drawn in ``slack`` (a share of
        ``m``, at least 3 tokens), whose ticks count down to where it ends: the model must read a
        length a little under M from the prompt (N's digits minus a margin, in its head).
        ``max_close="first"``: an Exact trace of n = m - 10 c - u tokens (c = 1 + m // 100, u up to
        m's last digit), so its first tick is always m // 10 - c: a fixed function of M's digits,
        learned like Exact's, where "under" draws the margin at random and so the first tick too.
        ``max_close="count"``: the ticks count down to ``m`` as for Exact (the first tick is M's
        leading digits), and the thinking closes at ‹c› instead of ‹0›, c = 1 + m // 100 (one plus
        M's hundreds digit): 10c to 10c + 9 tokens under M, 10-22% of it; the only thing the model
        does differently in Max is where it stops."""
        if self.max_close == "first":
            n = m - TICK_UNIT * (1 + m // 100) - rng.randint(0, m % TICK_UNIT)  # first tick: m // 10 - (1 + m // 100)
            if n < self.shortest(problem):
                raise ValueError(f"maximum {m}: below the shortest trace of {problem.question!r} ({self.shortest(problem)} tokens)")
            lines, plan, slip = self._fit_with_slip(problem, n, rng)
            return self._finish(problem, lines, n, m, "max", plan, slip=slip)
        if self.max_close == "count":
            floor = 1 + m // 100
            n = m - TICK_UNIT * floor - rng.randint(0, m % TICK_UNIT)  # the first tick stays m // 10
            if n < self.shortest(problem):
                raise ValueError(f"maximum {m}: the shortest trace of {problem.question!r} ({self.shortest(problem)} tokens) does not close at ‹{floor}›")
            lines, plan, slip = self._fit_with_slip(problem, n, rng, floor)
            return self._finish(problem, lines, n, m, "max", plan, floor, slip)
        n = max(self.shortest(problem), m - max(3, round(m * rng.uniform(*slack))))
        if n > m:
            raise ValueError(f"maximum {m}: below the shortest trace of {problem.question!r} ({n} tokens)")
        lines, plan = self._fit(problem, n, rng)
        return self._finish(problem, lines, n, m, "max", plan)

    def shortest(self, problem: ArithProblem) -> int:
        closing = min(self._cost(text) for guess in (False, True) for text in closings(problem.answer, checked=False, guess=guess))
        ticks = 1 + self._cost(tick_text(0, self.tick_style)) if self.tick_every else 0  # a first tick, and the closing ‹0› line
        return self._answer_cost(problem) + closing + ticks

    # --- allocation
    def _fit_with_slip(self, problem: ArithProblem, n: int, rng: random.Random, floor: int = 0) -> tuple[list[str], str, Slip | None]:
        """`_fit`, with a slip drawn at ``slip_share``; a slip whose extra work leaves no room for the
        plan it would be part of (the trace would fall back to a guess) is dropped."""
        slip = self._draw_slip(problem, rng)
        if slip:
            try:
                lines, plan = self._fit(problem, n, rng, floor, slip)
                if slip.work in lines:
                    return lines, plan, slip
            except ValueError:
                pass
        return (*self._fit(problem, n, rng, floor), None)

    def _draw_slip(self, problem: ArithProblem, rng: random.Random) -> Slip | None:
        if not self.slip_share or rng.random() >= self.slip_share:
            return None
        ops = operations(problem)
        i = rng.randrange(len(ops))
        a, op, b, _ = ops[i]
        slipped = slipped_work(a, op, b, rng)
        return Slip(i, slipped[0], *caught_slip(a, op, b, slipped[1])) if slipped else None

    def _fit(self, problem: ArithProblem, n: int, rng: random.Random, floor: int = 0, slip: Slip | None = None) -> tuple[list[str], str]:
        """The lines of the richest plan that lands on ``n`` tokens exactly, its countdown closing
        at ‹floor›."""
        budget = n - self._answer_cost(problem)
        fitting = []
        for plan in self._plans(problem, slip):
            if sum(min(self._cost(line) if line else 0 for line in slot) for slot in plan.slots) > budget:
                break
            fitting.append(plan)
        for plan in reversed(fitting):  # the richest first
            lines = self._assign(plan, problem, budget, rng, n + TICK_UNIT * floor, floor)
            if lines is not None:
                return lines, plan.name
        raise ValueError(f"budget {n}: no trace of {problem.question!r} has exactly {n} tokens (the shortest has {self.shortest(problem)})")

    def _assign(self, plan: _Plan, problem: ArithProblem, budget: int, rng: random.Random, tick_target: int, floor: int = 0) -> list[str] | None:
        """A choice of one line per slot and a closing whose cost, ticks included, is ``budget``.
        The tokens the ticks take depend on the choice: guess them, choose, count, and choose again."""
        endings = closings(problem.answer, checked=plan.name.startswith("checked"), guess=plan.guess)
        if self.close_block:
            endings = [e for e in endings if BLOCK_LEFT[0] <= self._block_cost(e, problem) <= BLOCK_LEFT[1]]
        slots = plan.slots
        if plan.tail and self.cut_share and rng.random() < self.cut_share:  # the next line, stopped part way
            slots = slots + (("", *word_prefixes(plan.tail)),)
        per_tick = 1 if self.tick_style == "token" else 1.7
        guess = round(per_tick * budget / (self.tick_every + 8)) if self.tick_every else 0
        tries: dict[int, int] = {}
        for _ in range(60 if self.tick_every else 1):
            tries[guess] = tries.get(guess, 0) + 1
            chosen = self._choose(slots, endings, budget - guess, rng) if guess >= 0 else None
            actual = None
            if chosen is not None:
                lines = [line for line in chosen if line]
                ticked, actual = self._ticked(lines, tick_target, floor, self.close_block)
                if actual == guess and (not self.close_next_line or _three_ends_the_work(ticked)):
                    return lines
            # The fixed point is where the ticks of the chosen lines take what was set aside for them;
            # step to the count just seen, or look around the guess once that was tried enough.
            if actual is not None and tries.get(actual, 0) < 3:
                guess = actual
            else:
                guess = max(0, guess + rng.choice((-3, -2, -1, 1, 2, 3)))
        return None

    def _choose(self, slots, closings: list[str], target: int, rng: random.Random) -> list[str] | None:
        """One line per slot (in order) plus a closing, summing to ``target`` tokens; random among
        the ways that do (DP over reachable sums, then a random walk back). A set of sums is an
        int's bits (bit s: sum s reachable): a shift per distinct cost instead of a set per sum."""
        options = [[(line, self._cost(line) if line else 0) for line in slot] for slot in [*slots, closings]]
        if target < 0:
            return None
        within = (1 << (target + 1)) - 1
        reach = [1]
        for opts in options:
            sums = 0
            for cost in {cost for _, cost in opts}:
                sums |= reach[-1] << cost
            reach.append(sums & within)
        if not reach[-1] >> target & 1:
            return None
        picked, remaining = [], target
        for i in range(len(options) - 1, -1, -1):
            ways = [(line, cost) for line, cost in options[i] if remaining >= cost and reach[i] >> (remaining - cost) & 1]
            line, cost = rng.choice(ways)
            picked.append(line)
            remaining -= cost
        return picked[::-1]

    def _plans(self, problem: ArithProblem, slip: Slip | None = None):
        """Plans in the natural order of work, each at least as long as the one before: the
        result (the closing, after the expression or not); column work for the first ``w``
        operations, each optionally re-checked (the richest plan that lands is used, so a check
        only fills what is too short for the next operation), then the result, a guess while
        ``w`` is short of all of them; the chain of lines with every operation worked (each
        optionally re-checked); every operation worked and re-checked; then rounds of re-checks
        and whole re-passes. Column work comes first because it is what a small model gets right:
        a chain line alone is a whole operation done in one shot."""
        ops, chain = operations(problem), chain_lines(problem)
        k = len(ops)
        opening = (("", "Let me compute.", STEPS_OPENING), ("", chain[0]))
        yield _Plan("terse", opening, guess=True, tail=self._work(ops[0]))
        for w in range(1, k + 1):
            slots = list(opening)
            for i in range(w):
                slots += self._op_slots(ops[i], None, slip if slip and slip.op_index == i else None, optional_check=True)
            yield _Plan(f"worked{w}", tuple(slots), guess=w < k, tail=self._work(ops[w]) if w < k else "")
        slots = [(STEPS_OPENING, CHECKED_OPENING), (chain[0],)]
        for i in range(k):
            slots += self._op_slots(ops[i], chain[i + 1], slip if slip and slip.op_index == i else None, optional_check=True)
        yield _Plan("steps", tuple(slots))
        slots = [(CHECKED_OPENING,), (chain[0],)]
        for i in range(k):
            slots += self._op_slots(ops[i], chain[i + 1], slip if slip and slip.op_index == i else None, optional_check=False)
        yield _Plan("checked", tuple(slots))
        yield from self._rounds(slots, problem, ops, chain)

    def _op_slots(self, op: tuple[int, str, int, int], chain_line: str | None, slip: Slip | None, optional_check: bool) -> list[tuple[str, ...]]:
        """One operation's slots: its column work, its chain line (when the plan has the chain) and
        its check. One-shot checks come after the chain line; a column check comes right after the
        work, so that a slip it catches is worked again before the chain line carries it on."""
        work = self._work(op)
        line = [(chain_line,)] if chain_line else []
        if not self.column_checks:
            return [(work,), *line, (("",) if optional_check else ()) + tuple(check_variants(*op))]
        if slip:
            return [(slip.work,), slip.checks, (slip.redo,), *line]
        return [(work,), (("",) if optional_check else ()) + column_checks(*op, style=self.column_style), *line]

    def _work(self, op: tuple[int, str, int, int]) -> str:
        return column_work(*op[:3], self.column_style)

    def _rounds(self, slots, problem: ArithProblem, ops, chain):
        """After every operation is checked: rounds of re-checks (any of the operations), each
        followed by a whole re-pass."""
        slots = list(slots)
        for r in range(1, self.max_rounds + 1):
            slots.append((CHECK_ROUND_OPENING,))
            slots += [("", *redo_variants(*op, self.column_style)) for op in ops]
            yield _Plan(f"checked+{r}c", tuple(slots), tail=REPASS_OPENING)
            if self.cut_passes:  # a re-pass the countdown stops part way: the closing states the first pass's result
                for j in range(1, len(chain)):
                    yield _Plan(f"checked+{r}p", tuple(slots + [(REPASS_OPENING,), *((line,) for line in chain[:j])]), tail=chain[j])
            slots += [(REPASS_OPENING,), *((line,) for line in chain), (f"Yes, so it is {problem.answer}.",)]
            yield _Plan(f"checked+{r}r", tuple(slots), tail=CHECK_ROUND_OPENING)

    # --- assembly
    def _answer_cost(self, problem: ArithProblem) -> int:
        """Tokens after the thinking: ``</think>``, the answer, the end token."""
        return self.count(format_completion("", problem.answer)) - self.count("")

    def _block_cost(self, closing: str, problem: ArithProblem) -> int:
        """Tokens from a closing block's start to the end: ‹2›, the closing with ‹1› in it, the ‹0›
        line, the answer and the end token."""
        return self._cost(closing) + 2 + self._cost(tick_text(0, self.tick_style)) + self._answer_cost(problem)

    def _ticked(self, lines: list[str], tick_target: int, floor: int = 0, block: bool = False) -> tuple[list[str], int]:
        """The lines with their ticks, and how many tokens the ticks take (see `_line_ticks`).
        The countdown closes with ``‹0›`` on a line of its own at the end of the thinking (the
        answer after it takes the last 10-20 tokens), so the tick after ‹1› is always ‹0› and
        ‹0› is always followed by ``</think>``: the model is never left to guess what comes next.
        With ``block`` the last line is the closing: it starts at ‹2› (after any tick the work
        left pending), and the work's own ticks stop at ‹3›."""
        if not self.tick_every:
            return lines, 0
        out, used, width = [], 0, 0
        state = {"last": None, "next": None, "floor": 2 if block else floor}
        for i, line in enumerate(lines):
            head = ""
            if block and i == len(lines) - 1:  # the closing block: ‹2› (‹3›‹2› if ‹3› found no place) starts it
                pending = state["next"] if state["next"] is not None else (tick_target - used) // TICK_UNIT
                head = "".join(tick_text(value, self.tick_style) for value in range(max(2, pending), 1, -1))
                used, width = used + head.count("‹"), width + head.count("‹")
                state["next"], state["floor"] = 1, floor
            line, line_tokens, line_width = self._line_ticks(line, used, tick_target, state)
            out.append(head + line)
            used += line_tokens
            width += line_width
        pending = state["next"] if self.tick_place == "interval" and state["next"] is not None else 0
        # ‹0› (‹floor›), or ‹1›‹0› if ‹1› found no place
        last = "".join(tick_text(value, self.tick_style) for value in range(max(floor, pending), floor - 1, -1))
        return out + [last], width + self._cost(last)

    def _line_ticks(self, line: str, used: int, tick_target: int, state: dict) -> tuple[str, int, int]:
        """One line with its ticks: (text, tokens with its ticks and newline, tokens of ticks).

        ``tick_place="lines"``: a tick at the start of a line once ``tick_every`` tokens have passed
        since the last one, valued remaining // 10. ``"interval"``: the first tick before the first
        line, then tick k0 - 1, k0 - 2, ... each at the first word boundary (a line start or a
        token that begins with a space: never inside a number) where remaining // 10 has come down
        to it, so consecutive ticks always step down by one, about every 10 tokens."""
        if self.tick_place == "lines":
            if state["last"] is None or used - state["last"] >= self.tick_every:
                state["last"] = used
                tick = tick_text(max(0, min(MAX_TICK, (tick_target - used) // TICK_UNIT)), self.tick_style)
                return tick + line, self._cost(line) + tick.count("‹"), tick.count("‹")
            return line, self._cost(line), 0
        starts = self._token_starts(line)
        pieces, cut, width = [], 0, 0
        for index, start in enumerate(starts):
            if start < len(line) and (start == 0 or line[start] == " "):
                if state["next"] is None:
                    state["next"] = min(MAX_TICK, (tick_target - used - index - width) // TICK_UNIT)
                if state["next"] > state["floor"] and (tick_target - used - index - width) // TICK_UNIT <= state["next"]:
                    tick = tick_text(state["next"], self.tick_style)
                    pieces += [line[cut:start], tick]
                    cut, width, state["next"] = start, width + tick.count("‹"), state["next"] - 1
        pieces.append(line[cut:])
        return "".join(pieces), len(starts) + width, width

    @functools.lru_cache(maxsize=200_000)
    def _token_starts(self, line: str) -> tuple[int, ...]:
        """Where each token of ``line`` (counted with its newline) starts, in characters."""
        encoding = self.tokenizer(line + "\n", add_special_tokens=False, return_offsets_mapping=True)
        return tuple(start for start, _ in encoding["offset_mapping"])

    def _finish(self, problem, lines: list[str], n: int, target: int, mode: str, plan: str, floor: int = 0,
                slip: Slip | None = None) -> BudgetTrace:
        ticked = self._ticked(lines, n + TICK_UNIT * floor, floor, self.close_block)[0]
        thinking = "\n".join(ticked)
        completion = format_completion(thinking, problem.answer)
        masked = []
        for index, line in enumerate(lines):
            if slip and line == slip.work:  # the slipped work, ticks and all (the thinking opens the completion)
                start = sum(len(t) + 1 for t in ticked[:index])
                masked.append((start, start + len(ticked[index])))
        tokens = self.count(completion)
        if tokens != n:  # never expected: lengths are additive per line (module docstring)
            raise AssertionError(f"trace of {problem.question!r} for {mode} {target}: {tokens} tokens, planned {n}")
        return BudgetTrace(thinking, completion, tokens, target, mode, plan, tuple(masked))
