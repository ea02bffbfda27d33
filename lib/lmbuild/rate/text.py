"""Text preparation shared by rater training and scoring, vectorised over a batch.

`prepare` turns a batch of documents into one line of space-separated words each, the same way
for the texts a rater is trained on and the texts it scores:

1. keep the first `max_chars` characters (long documents cost time, not accuracy);
2. optionally lowercase;
3. optionally put spaces around ASCII punctuation, so "end." and "end" are the same word
   (the fastText tutorial's preprocessing);
4. split on whitespace (what `str.isspace()` accepts, newlines included) and join the words
   with single spaces: fastText reads one line per example, and words are what the models see.

For a text `s` this equals, in Python, `" ".join(re.sub(PUNCT, r" \\g<0> ", s[:max_chars].lower()).split())`
(up to the few characters whose lowercase form is longer than one code point).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# ASCII punctuation: ! " # $ % & ' ( ) * + , - . / : ; < = > ? @ [ \ ] ^ _ ` { | } ~
PUNCT = r"[!-/:-@\[-`{-~]"


def split_words(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Every word (maximal run of non-whitespace) of every text, and the index of its text."""
    lists = pc.utf8_split_whitespace(pc.fill_null(texts, ""))
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    keep = pc.greater(pc.utf8_length(flat), 0)
    keep_np = keep.to_numpy(zero_copy_only=False)
    return flat.filter(keep), parent[keep_np]


def join_words(words: pa.Array, doc: np.ndarray, n_docs: int) -> pa.Array:
    """The inverse of split_words: the words of each text joined with single spaces."""
    counts = np.bincount(doc, minlength=n_docs)
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), words)
    return pc.binary_join(lists, pa.scalar(" ", words.type))


def prepare(texts: pa.Array, max_chars: int, lowercase: bool = False, split_punctuation: bool = False) -> pa.Array:
    """One line of single-space-separated words per text (see the module docstring), as
    large_string whatever the string type of the input."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    head = pc.utf8_slice_codeunits(pc.fill_null(texts.cast(pa.large_string()), ""), 0, max_chars)
    if lowercase:
        head = pc.utf8_lower(head)
    if split_punctuation:
        head = pc.replace_substring_regex(head, PUNCT, r" \0 ")
    words, doc = split_words(head)
    return join_words(words, doc, len(texts))


def is_empty(prepared: pa.Array) -> np.ndarray:
    """True where a prepared text has no words."""
    return pc.equal(pc.utf8_length(prepared), 0).to_numpy(zero_copy_only=False)


def is_blank(texts: pa.Array) -> np.ndarray:
    """True where a raw text is null, empty or whitespace only."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    trimmed = pc.utf8_trim_whitespace(pc.fill_null(texts, ""))
    return pc.equal(pc.utf8_length(trimmed), 0).to_numpy(zero_copy_only=False)
