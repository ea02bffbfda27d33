"""PII masking: e-mail addresses, IP addresses and phone numbers replaced by typed placeholders.

As in Dolma (Soldaini et al. 2024), matches are replaced rather than the document dropped, and
the placeholders say what was there. Patterns run with pyarrow's RE2 over the whole batch.

Precision trade-offs, documented because they decide what gets masked:
- IPv6 needs eight groups, or '::' with at least three groups in all, so slices such as
  `a[1::2]` in code and clock times such as 12:30:45 are left alone; short forms like
  `fe80::1` are therefore not masked.
- Phone numbers follow North-American shapes with an optional +country prefix (Dolma's own
  pattern is US-only); long digit runs in code can match, so the demo turns phones off for code.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_H = r"[0-9A-Fa-f]{1,4}"
PATTERNS: dict[str, tuple[str, str]] = {
    # kind: (RE2 pattern, placeholder); applied in this order
    "emails": (r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b", "|||EMAIL_ADDRESS|||"),
    "ip_addresses": (
        rf"\b(?:{_H}:){{7}}{_H}\b"
        rf"|\b{_H}(?::{_H})+::(?:{_H}(?::{_H})*)?"
        rf"|\b{_H}::{_H}(?::{_H})+\b"
        rf"|\b{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}\b",
        "|||IP_ADDRESS|||"),
    "phone_numbers": (r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{3}\)|\b[0-9]{3})[ .-]?[0-9]{3}[ .-][0-9]{4}\b",
                      "|||PHONE_NUMBER|||"),
}


def mask(texts: pa.Array, cfg: dict) -> tuple[pa.Array, dict[str, np.ndarray]]:
    """Return the masked texts and, per kind, the number of matches in each document."""
    counts: dict[str, np.ndarray] = {}
    for kind, (pattern, placeholder) in PATTERNS.items():
        if not cfg.get(kind, False) or len(texts) == 0:
            counts[kind] = np.zeros(len(texts), dtype=np.int64)
            continue
        n = pc.count_substring_regex(texts, pattern).to_numpy(zero_copy_only=False).astype(np.int64)
        counts[kind] = n
        if n.any():
            texts = pc.replace_substring_regex(texts, pattern, placeholder)
    return texts, counts
