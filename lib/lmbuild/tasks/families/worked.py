"""Worked column arithmetic: the digit-by-digit solutions the arithmetic and word-problem
families teach when `worked` is on.

Why: a held-out problem's answer is a fact the model never saw ("4 7 + 3 8"), and a ~1M-parameter
model cannot recall what it never saw; without working it scores near zero on held-out sums even
with one-digit operands. Written column by column from the ones digit, every held-out problem is
made of steps that occur in training problems: one-digit additions or subtractions with a carry
or borrow (fewer than 400 distinct steps, nearly all of them in many training problems; a test
checks the coverage), reading the next column's digits, and copying the partial result from the
line above. Scratchpads of this kind are
what lets small transformers learn multi-digit addition (Nye et al. 2021, arXiv:2112.00114; Lee et
al. 2023, "Teaching Arithmetic to Small Transformers", arXiv:2307.03381).

Format: one line per column, the column's sum written as a number (`8+5=13`: one token for
13 with a cl100k-style tokenizer, whose carry digit the next line adds as `+1`), then the result
so far after `->`, its digits spaced (one token each) and growing by one digit a line, so that the
answer is the last line's partial result in the usual order. The operands are restated first
with their digits spaced (`head`, for prompts that do not already spell them out):

    3 4 5 + 7 8
    5+8=13 -> 3
    4+7+1=12 -> 2 3
    3+0+1=4 -> 4 2 3
    Answer: 4 2 3

Subtraction borrows ten when the digit is too small (`12-7=5`, and `-1` on the next line); a
result below zero subtracts the other way round and puts the sign in front. Leading zeros of a
difference are dropped from the answer only. A 3-digit sum's solution takes up to about 50
tokens of the demo tokenizer (a space before a digit is a token of its own).
"""

from __future__ import annotations

from .base import spaced


def _digits(n: int) -> list[int]:
    """Least significant first."""
    return [int(c) for c in reversed(str(n))]


def _sp(digits: list[int]) -> str:
    """Most significant first, spaced."""
    return " ".join(str(d) for d in reversed(digits))


def _add_lines(a: int, b: int) -> tuple[list[str], str]:
    da, db = _digits(a), _digits(b)
    n = max(len(da), len(db))
    da, db = da + [0] * (n - len(da)), db + [0] * (n - len(db))
    lines, partial, carry = [], [], 0
    for i in range(n):
        s = da[i] + db[i] + carry
        terms = f"{da[i]}+{db[i]}" + ("+1" if carry else "")
        partial.append(s % 10)
        if i == n - 1 and s >= 10:
            partial.append(1)  # the last column's carry is the answer's leading digit
        lines.append(f"{terms}={s} -> {_sp(partial)}")
        carry = s // 10
    return lines, _sp(partial)


def _sub_lines(a: int, b: int) -> tuple[list[str], str]:
    """a - b for a >= b >= 0."""
    da, db = _digits(a), _digits(b)
    db = db + [0] * (len(da) - len(db))
    lines, partial, borrow = [], [], 0
    for i in range(len(da)):
        top = da[i] - borrow
        minus = f"{db[i]}" + ("-1" if borrow else "")
        borrow = int(top < db[i])
        shown = f"{da[i] + 10 * borrow}-{minus}"     # "12-7": ten borrowed from the next column
        partial.append(top + 10 * borrow - db[i])
        lines.append(f"{shown}={partial[-1]} -> {_sp(partial)}")
    while len(partial) > 1 and partial[-1] == 0:      # 1 0 3 - 9 8 = 0 0 5 -> 5
        partial.pop()
    return lines, _sp(partial)


def column_solution(a: int, op: str, b: int, head: bool = True) -> str:
    """The worked solution of `a op b` (op + or -, a and b >= 0), ending `Answer: <result>`
    with the result's digits spaced; `head`: first restate the operands digit by digit."""
    first = f"{spaced(str(a))} {op} {spaced(str(b))}"
    if op == "+":
        lines, result = _add_lines(a, b)
    elif op == "-":
        if a >= b:
            lines, result = _sub_lines(a, b)
        else:  # below zero: the other way round, then the sign
            lines, result = _sub_lines(b, a)
            first = f"{first} = -({spaced(str(b))} - {spaced(str(a))})"
            head = True  # the swap must be said
            result = "-" + result  # as base.spaced writes it: "-2 4"
    else:
        raise ValueError(f"no worked solution for {op!r}: only + and -")
    return "\n".join([first] * head + [*lines, f"Answer: {result}"])
