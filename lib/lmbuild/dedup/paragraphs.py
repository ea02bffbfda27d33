"""Paragraphs (or lines) of a batch of documents: find them, key them, cut the duplicates out.

The batch functions of paragraph-level exact dedup (the corpus-wide plan is in
lmbuild.dedup.paragraph_join). Everything works on the Arrow UTF-8 buffer of a batch with numpy,
never a Python loop over documents or characters.

Units, `dedup.paragraphs.unit`:

- `line`: every line (text between "\\n" characters) that holds a word;
- `paragraph`: every maximal run of consecutive lines that hold a word, i.e. the text split on
  blank lines (a blank line has no word: empty, or whitespace only, Unicode spaces included).

A unit spans from the first byte of its first line to the last byte before the "\\n" of its last
line; what lies between units (newlines, blank lines, a document's leading and trailing
whitespace) is separator. Its key is the 128-bit exact key of lmbuild.dedup.exact over the
unit's text normalised with the same `dedup.normalize` switches as whole documents (by default
lowercased, punctuation and symbols stripped, whitespace collapsed), so two copies of a licence
header that differ only in indentation, case or a trailing full stop are the same paragraph.
With 128-bit keys two distinct units collide with probability about n^2 / 2^129 for n distinct
units (below 10^-20 for n = 10^9): in practice the join is exact.

Removal keeps every byte of a document except the removed units and, for each removed unit, one
separator next to it: the separator before a kept unit is kept only if an earlier unit of the
document is kept too, so cutting the first, a middle or the last paragraph leaves no doubled or
dangling blank lines, and a document that loses nothing is byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .exact import exact_keys
from .hashing import string_offsets
from .normalize import normalize
from .words import split_and_hash, word_byte_mask

UNITS = ("paragraph", "line")


@dataclass
class Units:
    """The units of a batch of documents, as byte spans of the batch's text buffer."""

    text: np.ndarray  # the batch's UTF-8 bytes, from its first document's first byte
    offsets: np.ndarray  # document boundaries in `text`, length docs + 1
    starts: np.ndarray  # first byte of each unit, in text order
    ends: np.ndarray  # one past the last byte of each unit
    doc: np.ndarray  # the document of each unit
    first: np.ndarray  # index of each document's first unit, length docs + 1

    @property
    def index_in_doc(self) -> np.ndarray:
        return np.arange(len(self.starts)) - self.first[self.doc]


def find_units(texts: pa.Array, unit: str) -> Units:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    n = len(texts)
    if n == 0:
        z = np.zeros(0, np.int64)
        return Units(np.zeros(0, np.uint8), np.zeros(1, np.int64), z, z, z, np.zeros(1, np.int64))
    offsets, data = string_offsets(texts)
    text = data[int(offsets[0]):int(offsets[-1])]
    offs = offsets - offsets[0]
    # Lines: a document with m "\n" bytes has m + 1 lines. Its first line starts at the document's
    # start, the others one byte after each "\n"; its last line ends at the document's end, the
    # others at each "\n". Taken over the whole batch in order, the non-first lines are exactly
    # one per "\n" (and so are the non-last ones), which places every boundary without a sort.
    nl = np.flatnonzero(text == 10)
    per_doc = np.diff(np.searchsorted(nl, offs)) + 1
    first_line = np.concatenate([[0], np.cumsum(per_doc)])
    n_lines = int(first_line[-1])
    is_first = np.zeros(n_lines, bool)
    is_first[first_line[:-1]] = True
    is_last = np.zeros(n_lines, bool)
    is_last[first_line[1:] - 1] = True
    line_start = np.empty(n_lines, np.int64)
    line_start[is_first] = offs[:-1]
    line_start[~is_first] = nl + 1
    line_end = np.empty(n_lines, np.int64)
    line_end[is_last] = offs[1:]
    line_end[~is_last] = nl
    # A line holds a word iff a word starts inside it; word starts are forced at line starts so
    # that a word ending one document and one starting the next are told apart.
    is_word = word_byte_mask(text)
    word_start = is_word.copy()
    word_start[1:] &= ~is_word[:-1]
    inside = line_start[line_start < len(text)]
    word_start[inside] |= is_word[inside]
    word_pos = np.flatnonzero(word_start)
    full = np.searchsorted(word_pos, line_end) > np.searchsorted(word_pos, line_start)
    line_doc = np.repeat(np.arange(n), per_doc)
    if unit == "line":
        begins = ends_here = full
    elif unit == "paragraph":
        prev_blank = np.ones(n_lines, bool)
        prev_blank[1:] = ~full[:-1]
        next_blank = np.ones(n_lines, bool)
        next_blank[:-1] = ~full[1:]
        begins = full & (prev_blank | is_first)
        ends_here = full & (next_blank | is_last)
    else:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    doc = line_doc[begins]
    first = np.concatenate([[0], np.cumsum(np.bincount(doc, minlength=n))])
    return Units(text, offs, line_start[begins], line_end[ends_here], doc, first)


def unit_strings(units: Units) -> pa.Array:
    """The units' texts as one string array (their bytes gathered from the batch buffer)."""
    marks = np.zeros(len(units.text) + 1, np.int8)
    marks[units.starts] = 1
    marks[units.ends] -= 1  # a unit ending where the next document's first unit starts: 1 - 1 = 0
    inside = np.cumsum(marks[:-1], dtype=np.int8).view(bool)
    lengths = units.ends - units.starts
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return pa.LargeStringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(units.text[inside]))


def unit_keys(units: Units, norm_cfg: dict, seed: int, min_chars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(high, low, eligible): each unit's 128-bit key, and whether it takes part in dedup (it has
    a word after normalisation and at least `min_chars` characters of original text)."""
    strings = unit_strings(units)
    norm = normalize(strings, norm_cfg, collapse_whitespace=False)
    words = split_and_hash(norm, seed)
    hi, lo = exact_keys(norm, words, norm_cfg["collapse_whitespace"], seed)
    chars = pc.utf8_length(strings).to_numpy(zero_copy_only=False)
    return hi, lo, (words.count > 0) & (chars >= min_chars)


def remove_units(units: Units, removed: np.ndarray) -> pa.Array:
    """The batch's texts without the removed units (a large_string array, one per document).

    Each document is cut into pieces: its lead (bytes before its first unit), then per unit the
    unit and the gap after it (up to the next unit, or the document's end for its last unit).
    The lead and a document's trailing gap are always kept; a unit is kept unless removed; the
    gap between units j and j+1 is kept iff unit j+1 is kept and some unit <= j of the document
    is kept (the separator in front of a kept unit, unless nothing precedes it)."""
    n, u = len(units.offsets) - 1, len(units.starts)
    doc = units.doc
    kept = ~removed
    seen = np.concatenate([[0], np.cumsum(kept)])  # kept units before each unit, batch-wide
    kept_so_far = seen[1:] - seen[units.first[doc]]  # kept units <= j in j's document
    last = np.zeros(u, bool)
    last[units.first[1:][units.first[1:] > units.first[:-1]] - 1] = True
    gap_kept = np.ones(u, bool)
    gap_kept[:-1] = kept[1:] & (kept_so_far[:-1] > 0)
    gap_kept |= last
    # piece boundaries: document d's lead at d + 2 first[d]; unit j at d + 1 + 2j, its gap after
    bounds = np.empty(n + 2 * u, np.int64)
    flags = np.empty(n + 2 * u, bool)
    piece_doc = np.empty(n + 2 * u, np.int64)
    lead = np.arange(n) + 2 * units.first[:-1]
    at = doc + 1 + 2 * np.arange(u)
    bounds[lead], bounds[at], bounds[at + 1] = units.offsets[:-1], units.starts, units.ends
    flags[lead], flags[at], flags[at + 1] = True, kept, gap_kept
    piece_doc[lead], piece_doc[at], piece_doc[at + 1] = np.arange(n), doc, doc
    lengths = np.diff(np.append(bounds, units.offsets[-1]))
    data = units.text[np.repeat(flags, lengths)]
    new_len = np.bincount(piece_doc, weights=lengths * flags, minlength=n).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(new_len)]).astype(np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
