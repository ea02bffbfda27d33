"""Text normalisation before hashing, vectorised with pyarrow compute.

Both exact hashing and MinHash shingling see the normalised text, so "Hello,  World!" and
"hello world" are the same document once lowercasing, punctuation stripping and whitespace
collapsing are on (each is a switch in params `dedup.normalize`). In this order:

1. `unicode_form` (NFC, NFKC, NFD, NFKD or null): Unicode normalisation, so that e.g. a
   composed "é" and "e" + combining accent are the same characters;
2. `lowercase`: Unicode lower case;
3. `strip_punctuation`: delete every Unicode punctuation (\\p{P}) and symbol (\\p{S}) character,
   the all-scripts version of Python's `string.punctuation` that FineWeb's datatrove strips;
4. `collapse_whitespace`: every run of whitespace (what `str.isspace()` accepts, e.g. no-break
   spaces too) becomes one space, and the ends are trimmed.

Shingles are words (runs of non-whitespace), so `collapse_whitespace` only changes exact
hashes; the other switches change both. The stage never runs step 4 as a regex: with it on, the
exact hash is taken over the document's sequence of word hashes (lmbuild.dedup.exact), which
tells apart exactly the texts that differ after collapsing, without a second pass over the text.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

PUNCTUATION = r"[\pP\pS]+"
WHITESPACE = r"[\s\pZ\x{0b}\x{1c}-\x{1f}\x{85}]+"
DEFAULTS = {"unicode_form": None, "lowercase": True, "strip_punctuation": True, "collapse_whitespace": True}


def normalize(texts: pa.Array, cfg: dict | None = None, collapse_whitespace: bool | None = None) -> pa.Array:
    """The normalised texts (a string array of the same length; nulls become ""). Passing
    `collapse_whitespace` overrides that switch of `cfg`."""
    cfg = {**DEFAULTS, **(cfg or {})}
    if collapse_whitespace is not None:
        cfg["collapse_whitespace"] = collapse_whitespace
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    if cfg["unicode_form"]:
        texts = pc.utf8_normalize(texts, form=cfg["unicode_form"])
    if cfg["lowercase"]:
        texts = pc.utf8_lower(texts)
    if cfg["strip_punctuation"]:
        texts = pc.replace_substring_regex(texts, PUNCTUATION, "")
    if cfg["collapse_whitespace"]:
        texts = pc.utf8_trim_whitespace(pc.replace_substring_regex(texts, WHITESPACE, " "))
    return texts
