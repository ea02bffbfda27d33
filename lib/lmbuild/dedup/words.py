"""Split a batch of normalised texts into words and hash every word, straight from the Arrow
UTF-8 buffer (no per-word Python objects, no copy of the text).

A word is a maximal run of non-whitespace characters, whitespace being what `str.isspace()`
accepts (the same set as pyarrow's utf8_split_whitespace): the ASCII whitespace bytes, the
separators 0x1C-0x1F, and a few multi-byte characters (U+0085, U+00A0, U+1680, U+2000-U+200A,
U+2028, U+2029, U+202F, U+205F, U+3000). A byte lookup table marks the word bytes; the few
bytes that can start a multi-byte whitespace character are then checked (vectorised over their
positions) and such a character is marked as whitespace. Word starts and ends come from the
differences of the "is a word byte" mask, with a forced boundary at every document boundary,
and each word is hashed with lmbuild.dedup.hashing.hash_spans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .hashing import hash_spans, string_offsets



def _word_bytes(text: np.ndarray) -> np.ndarray:
    """Bytes that are not ASCII whitespace (0x09-0x0D, 0x1C-0x20), by arithmetic on uint8."""
    shifted = text - np.uint8(0x09)  # wraps around below 0x09
    space = shifted <= 0x0D - 0x09
    shifted -= np.uint8(0x1C - 0x09)
    space |= shifted <= 0x20 - 0x1C
    return ~space
# bytes that may start a multi-byte whitespace character in UTF-8
_SPACE_LEAD = np.zeros(256, bool)
_SPACE_LEAD[[0xC2, 0xE1, 0xE2, 0xE3]] = True


def _clear_multibyte_spaces(data: np.ndarray, lead: np.ndarray, is_word: np.ndarray) -> None:
    """Mark the bytes of multi-byte whitespace characters as non-word bytes; `lead` holds the
    positions of the bytes that may start one."""
    last = len(data) - 1  # valid UTF-8 never ends inside a character; clipping only guards the end
    b0, b1, b2 = data[lead], data[np.minimum(lead + 1, last)], data[np.minimum(lead + 2, last)]
    two = (b0 == 0xC2) & ((b1 == 0x85) | (b1 == 0xA0))
    three = ((b0 == 0xE1) & (b1 == 0x9A) & (b2 == 0x80)) \
        | ((b0 == 0xE2) & (b1 == 0x80) & (((b2 >= 0x80) & (b2 <= 0x8A)) | (b2 == 0xA8) | (b2 == 0xA9) | (b2 == 0xAF))) \
        | ((b0 == 0xE2) & (b1 == 0x81) & (b2 == 0x9F)) \
        | ((b0 == 0xE3) & (b1 == 0x80) & (b2 == 0x80))
    for width, hits in ((2, lead[two]), (3, lead[three])):
        for k in range(width):
            is_word[hits + k] = False


def word_byte_mask(text: np.ndarray) -> np.ndarray:
    """True for the bytes of a UTF-8 buffer that belong to words (not to whitespace, ASCII or
    multi-byte); shared with lmbuild.dedup.paragraphs, which finds blank lines with it."""
    is_word = _word_bytes(text)
    if len(text) and text.max() >= 0xC2:  # some non-ASCII character: look for multi-byte spaces
        lead = np.flatnonzero(text >= 0xC2)
        lead = lead[_SPACE_LEAD[text[lead]]]
        if len(lead):
            _clear_multibyte_spaces(text, lead, is_word)
    return is_word


@dataclass
class Words:
    """The words of a batch of documents, in text order."""

    hashes: np.ndarray  # uint64 hash of each word (unmixed polynomial: see hashing.hash_spans)
    doc: np.ndarray  # document of each word
    count: np.ndarray  # words per document
    first: np.ndarray  # index of each document's first word (count.cumsum() shifted), length docs + 1


def split_and_hash(texts: pa.Array, seed: int = 0) -> Words:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    n_docs = len(texts)
    offsets, data = string_offsets(texts)
    lo, hi = int(offsets[0]), int(offsets[-1])
    text = data[lo:hi]
    is_word = word_byte_mask(text)
    step = np.diff(is_word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    start_mask, end_mask = step == 1, step == -1
    # a document boundary inside the buffer ends the word before it and starts the one after it
    inner = offsets[1:-1] - lo
    inner = inner[(inner > 0) & (inner < hi - lo)]
    start_mask[inner] |= is_word[inner]
    end_mask[inner] |= is_word[inner - 1]
    starts = np.flatnonzero(start_mask)
    ends = np.flatnonzero(end_mask)
    hashes = hash_spans(text, starts, ends, seed=seed, mix=False)  # mixed in n-gram/document hashes
    first = np.searchsorted(starts, offsets - lo, side="left")  # each document's first word
    count = np.diff(first)
    doc = np.repeat(np.arange(n_docs), count)
    return Words(hashes, doc, count, first)
