"""Reading and checking answers: extract the final `Answer: ...` line of a model completion,
normalise it, and score it against an example's reference (format and correctness), plus the
scalar reward used by RL and best/worst-of-K preference scoring.

How values compare depends on the family's answer kind:
- "number": one number; whitespace inside is ignored (spaced digits "9 2" == "92"), numbers
  compare as numbers ("07" == "7", "7.0" == "7", "-1 2" == "-12").
- "numbers": a list separated by spaces or commas, compared item by item as numbers.
- "letters": a sequence of letters, spaces and commas between them ignored ("r e w q" == "rewq").
- "text": anything else, compared as normalised strings (or as numbers when both are numbers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from .example import Example

_ANSWER_LINE = re.compile(r"^[ \t]*answer[ \t]*:(.*)$", re.IGNORECASE | re.MULTILINE)
# Chat markers a decoder may leave at the end (`<|im_end|>`, `<|endoftext|>`).
_TRAILING_SPECIALS = re.compile(r"(?:\s*<\|[A-Za-z0-9_]+\|>)+\s*\Z")
_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]*)?")
_LETTERS = re.compile(r"[A-Za-z]+(?:[ ,]+[A-Za-z]+)*")
KINDS = ("number", "numbers", "letters", "text")


@dataclass(frozen=True)
class Score:
    """format: 1.0 when the completion ends with a well-formed answer line, else 0.0.
    correct: 1.0 when that answer equals the reference, else 0.0."""
    format: float
    correct: float


def normalise(value: str) -> str:
    """Strip, collapse runs of whitespace to one space, drop trailing full stops."""
    return " ".join(value.split()).rstrip(".").rstrip()


def _clean(completion: str) -> str:
    return _TRAILING_SPECIALS.sub("", completion)


def _last_answer(completion: str) -> re.Match | None:
    last = None
    for last in _ANSWER_LINE.finditer(completion):
        pass
    return last


def extract_answer(completion: str) -> str | None:
    """The value of the LAST line starting with `Answer:` (any case), normalised; None when
    there is no such line or its value is empty."""
    if not isinstance(completion, str):
        return None
    m = _last_answer(_clean(completion))
    if m is None:
        return None
    return normalise(m.group(1)) or None


def parse_number(value: str) -> Decimal | None:
    """The number in `value` with all whitespace removed ("1 2 3" -> 123), or None."""
    compact = "".join(value.split())
    if not _NUMBER.fullmatch(compact):
        return None
    try:
        return Decimal(compact)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
        return None


def _items(value: str) -> list[str]:
    return [t for t in re.split(r"[\s,]+", value) if t]


def parse(value: str, kind: str) -> object | None:
    """The comparable form of a normalised value for an answer kind; None when malformed."""
    if kind == "number":
        return parse_number(value)
    if kind == "numbers":
        items = _items(value)
        nums = [parse_number(t) for t in items]
        return nums if items and None not in nums else None
    if kind == "letters":
        return "".join(_items(value)) if _LETTERS.fullmatch(value) else None
    if kind == "text":
        return value if value else None
    raise ValueError(f"unknown answer kind {kind!r}; known: {', '.join(KINDS)}")


def answers_match(value: str, reference: str, kind: str) -> bool:
    """True when `value` (a model's answer) equals `reference` under the kind's comparison."""
    value, reference = normalise(value), normalise(reference)
    if kind == "text":
        if value == reference:
            return True
        a, b = parse_number(value), parse_number(reference)
        return a is not None and a == b
    a, b = parse(value, kind), parse(reference, kind)
    return a is not None and a == b


def answer_kind(family: str) -> str:
    from .families import FAMILIES  # families import this module's helpers; resolve lazily
    fam = FAMILIES.get(family)
    return fam.kind if fam is not None else "text"


def score(example: Example, completion: str) -> Score:
    """Score a completion against an example.

    format = 1 when the completion has an `Answer:` line, its value is well formed for the
    family (a number, a list of numbers, letters), and nothing but whitespace (or trailing chat
    end markers) follows that line. correct = 1 when the last answer line's value equals
    `example.answer` (numbers compared as numbers), whatever follows it.
    """
    if not isinstance(completion, str):
        return Score(0.0, 0.0)
    text = _clean(completion)
    m = _last_answer(text)
    if m is None:
        return Score(0.0, 0.0)
    value = normalise(m.group(1))
    kind = answer_kind(example.family)
    parsed = parse(value, kind) if value else None
    well_formed = parsed is not None and not text[m.end():].strip()
    correct = parsed is not None and answers_match(value, example.answer, kind)
    return Score(format=float(well_formed), correct=float(correct))


def reward(example: Example, completion: str, format_weight: float = 0.1) -> float:
    """correct + format_weight * format: 1.1 for a clean correct answer, 0.1 for a clean wrong
    one, 0 for no answer line."""
    s = score(example, completion)
    return s.correct + format_weight * s.format
