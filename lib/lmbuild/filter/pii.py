"""PII masking: e-mail addresses, IP addresses and phone numbers replaced by typed placeholders.

As in Dolma (Soldaini et al. 2024), matches are replaced rather than the document dropped, and
the placeholders say what was there. Patterns run with pyarrow's RE2 over the whole batch
(`mask`); `mask_text` is the same masking written per document with Python's `re`, the
specification that `mask` is tested against (tests/test_pii_precision.py).

Precision trade-offs, documented because they decide what gets masked:
- IPv6 needs eight groups, or '::' with at least three groups in all, so slices such as
  `a[1::2]` in code and clock times such as 12:30:45 are left alone; short forms like
  `fe80::1` are therefore not masked.
- IPv4 is four decimal octets 0-255 without leading zeros ("0" itself is fine) that are
  - not preceded by an ASCII letter or digit, "_" or "." (so "v1.2.3.4", "a.1.2.3.4");
  - not followed by an ASCII letter or digit, "_", "." and a digit (so the first four parts of
    "1.3.6.1.4.1" or "12.2.3.3.1" are not an address; a full stop after one is fine), or "-" and
    an ASCII letter (a pre-release tag as in "2.7.18.1-rc2", Semantic Versioning 2.0.0 item 9;
    a range "10.0.0.1-10.0.0.9" is still two addresses);
  - not preceded by a context word (IPV4_CONTEXT_WORDS, ASCII case ignored, starting at a word
    boundary, or § or ¶ anywhere) and then at most 3 of IPV4_CONTEXT_SEPARATORS: "section
    12.2.3.3", "version 3.11.2.1", "§ 4.1.2.3", "OID 2.5.4.3" are numbers, not addresses.
  Dotted numbers with no such context ("Python 3.11.2.1 came out") are still masked.
- Phone numbers follow North-American shapes with an optional +country prefix (Dolma's own
  pattern is US-only); long digit runs in code can match, so the demo turns phones off for code.

How the IPv4 context rules run in RE2, which has no lookbehind or lookahead: in a batch, a
marker character that occurs nowhere in it (a Unicode noncharacter, reserved for internal use)
is first inserted after every context word and its separators, and before every run of five or
more dot-separated numbers (or of four, then "-" and a letter); the IPv4 pattern then matches
one character before the address, which must not be a letter, digit, "_", "." or the marker,
and re-emits it; then the markers are deleted. A batch that holds every candidate marker falls
back to `mask_text`.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}\b"  # \b: ASCII in RE2 and in re.ASCII
_H = r"[0-9A-Fa-f]{1,4}"
_IPV6 = (rf"\b(?:{_H}:){{7}}{_H}\b"
         rf"|\b{_H}(?::{_H})+::(?:{_H}(?::{_H})*)?"
         rf"|\b{_H}::{_H}(?::{_H})+\b")
EMAIL = r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
PHONE = r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{3}\)|\b[0-9]{3})[ .-]?[0-9]{3}[ .-][0-9]{4}\b"
PLACEHOLDERS = {"emails": "|||EMAIL_ADDRESS|||", "ip_addresses": "|||IP_ADDRESS|||",
                "phone_numbers": "|||PHONE_NUMBER|||"}

# Words after which a dotted number is a section, version or object identifier, not an address
# (plural forms included; longest first, so RE2's leftmost-first alternation takes the whole word).
IPV4_CONTEXT_WORDS = tuple(sorted((
    "section", "sections", "subsection", "sect", "sec", "chapter", "chapters", "chap", "ch",
    "clause", "clauses", "article", "articles", "art", "paragraph", "para", "appendix",
    "figure", "figures", "fig", "table", "tables", "version", "versions", "vers", "ver", "v",
    "release", "releases", "rel", "revision", "rev", "build", "patch", "step", "steps", "oid"),
    key=lambda w: (-len(w), w)))
IPV4_CONTEXT_SIGNS = "§¶"  # context marks with no word boundary of their own
IPV4_CONTEXT_SEPARATORS = " \t\u00a0.:#-"  # at most 3 of these between a context and a number


def _ascii_case_free(word: str) -> str:
    """A pattern for word with ASCII case ignored: explicit classes, since RE2's (?i) also folds
    some non-ASCII letters (the Kelvin sign to k) and re.ASCII's does not."""
    return "".join(f"[{c.upper()}{c}]" for c in word)


_SEPS = f"[{IPV4_CONTEXT_SEPARATORS}]{{0,3}}"
_CONTEXT = (rf"(?:\b(?:{'|'.join(map(_ascii_case_free, IPV4_CONTEXT_WORDS))})"
            rf"|[{IPV4_CONTEXT_SIGNS}]){_SEPS}")
# five or more dot-separated numbers, or four and a pre-release tag
_LONG_RUN = r"[0-9]+(?:\.[0-9]+){4,}|[0-9]+(?:\.[0-9]+){3}-[A-Za-z]"

# The rules written with lookarounds, for Python's re (the specification, `mask_text`).
_IPV4_RE = re.compile(rf"{_IPV6}|(?<![0-9A-Za-z_.]){_IPV4}(?!\.[0-9]|-[A-Za-z])", re.ASCII)
_CONTEXT_BEFORE = re.compile(rf"{_CONTEXT}\Z", re.ASCII)
_EMAIL_RE = re.compile(EMAIL, re.ASCII)
_PHONE_RE = re.compile(PHONE, re.ASCII)

# Candidate markers: Unicode noncharacters U+FDD0..U+FDEF (Unicode 15, section 23.7).
_MARKERS = [chr(c) for c in range(0xFDD0, 0xFDF0)]


def _ip_passes(marker: str) -> tuple[list[tuple[str, str]], str, str]:
    """The RE2 passes of the IPv4 context rules with a given marker: (protecting passes as
    (pattern, replacement)), the address pattern, its replacement."""
    protect = [(f"({_CONTEXT})", rf"\1{marker}"),
               (rf"(^|[^0-9.])({_LONG_RUN})", rf"\1{marker}\2")]
    pattern = rf"{_IPV6}|(^|[^0-9A-Za-z_.{marker}]){_IPV4}"
    return protect, pattern, rf"\1{PLACEHOLDERS['ip_addresses']}"


def mask(texts: pa.Array, cfg: dict) -> tuple[pa.Array, dict[str, np.ndarray]]:
    """Return the masked texts and, per kind, the number of matches in each document."""
    counts: dict[str, np.ndarray] = {}
    for kind in PLACEHOLDERS:
        if not cfg.get(kind, False) or len(texts) == 0:
            counts[kind] = np.zeros(len(texts), dtype=np.int64)
            continue
        if kind == "ip_addresses":
            marker = next((m for m in _MARKERS if not pc.any(pc.match_substring(texts, m)).as_py()),
                          None)
            if marker is None:  # every candidate marker occurs in the batch
                pairs = [_mask_ips(t) if t is not None else (None, 0) for t in texts.to_pylist()]
                texts = pa.array([t for t, _ in pairs], pa.string())
                counts[kind] = np.array([n for _, n in pairs], np.int64)
                continue
            protect, pattern, replacement = _ip_passes(marker)
            work = texts
            for p, r in protect:
                work = pc.replace_substring_regex(work, p, r)
        else:
            pattern = EMAIL if kind == "emails" else PHONE
            replacement, work = PLACEHOLDERS[kind], texts
        n = pc.fill_null(pc.count_substring_regex(work, pattern), 0).to_numpy().astype(np.int64)
        counts[kind] = n
        if n.any():
            work = pc.replace_substring_regex(work, pattern, replacement)
            texts = pc.replace_substring(work, marker, "") if kind == "ip_addresses" else work
    return texts, counts


def _mask_ips(text: str) -> tuple[str, int]:
    """IP addresses of one text masked with re and explicit context checks."""
    out, pos, start, n = [], 0, 0, 0
    while (m := _IPV4_RE.search(text, pos)) is not None:
        is_ipv4 = ":" not in m.group()
        if is_ipv4 and _CONTEXT_BEFORE.search(text, max(0, m.start() - 40), m.start()):
            pos = m.start() + 1  # a number, not an address: look again one character on
            continue
        out += [text[start:m.start()], PLACEHOLDERS["ip_addresses"]]
        pos = start = m.end()
        n += 1
    return "".join(out) + text[start:], n


def mask_text(text: str, cfg: dict) -> tuple[str, dict[str, int]]:
    """`mask` for one document, written with Python's re: (masked text, matches per kind)."""
    counts = {kind: 0 for kind in PLACEHOLDERS}
    for kind, regex in (("emails", _EMAIL_RE), ("ip_addresses", None),
                        ("phone_numbers", _PHONE_RE)):
        if not cfg.get(kind, False):
            continue
        if regex is None:
            text, counts[kind] = _mask_ips(text)
        else:
            text, counts[kind] = regex.subn(PLACEHOLDERS[kind], text)
    return text, counts
