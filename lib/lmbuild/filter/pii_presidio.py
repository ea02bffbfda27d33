"""PII masking with Microsoft Presidio's pattern recognizers: the `presidio` backend of
`filter.rules.pii.backend` (the default, `regex`, is lmbuild.filter.pii).

Presidio's AnalyzerEngine runs recognizers over a document and raises the score of a match when
one of the recognizer's context words ("phone", "ip", "email", ...) is among the five tokens
before it. Its usual NLP engine loads a trained spaCy pipeline (en_core_web_lg), which is not on
the package index; here a blank English pipeline (`spacy.blank("en")`: the rule-based tokenizer,
stop and punctuation lists, no model) stands in, with each token's lowercased text as its lemma,
so that context matching still works (Presidio compares context words as substrings of the
lemmas: "phones" still holds "phone"). Only three recognizers are registered, one per kind the
regex backend masks, and their entities become the same placeholders:

    EmailRecognizer  (regex, domain checked against the Public Suffix List)  -> emails
    IpRecognizer     (IPv4, IPv6 regexes, checked with `ipaddress`)          -> ip_addresses
    PhoneRecognizer  (Google's libphonenumber rules, `phonenumbers`, for the
                      regions in PHONE_REGIONS)                              -> phone_numbers

The e-mail check reads the suffix list that tldextract ships (never the network, never a cache
that a later run could see changed: same inputs, same outputs). Overlapping matches of different
kinds are resolved by score, then length, then position, and the kept spans are replaced.

Presidio works one document at a time, in Python: `mask` sends it only the documents that a
pattern could match at all (PREFILTER: an "@" for e-mails, an ASCII digit or ":" for IPs, a
Unicode decimal digit for phones: each recognizer needs that character in any match), and the
engine is built once per process (`engine`, cached), so a worker of the filter's process pool
builds it on its first batch and reuses it for every later one.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..params import ParamsError
from .pii import PLACEHOLDERS

ENTITIES = {"emails": "EMAIL_ADDRESS", "ip_addresses": "IP_ADDRESS",
            "phone_numbers": "PHONE_NUMBER"}
KINDS = {entity: kind for kind, entity in ENTITIES.items()}
# Presidio's own default regions for PhoneRecognizer; a number with a +country prefix is found
# whatever its region.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")
# Characters without which a recognizer cannot match (RE2 syntax; \p{Nd}: phonenumbers also reads
# non-ASCII digits such as fullwidth ones).
PREFILTER = {"emails": "@", "ip_addresses": "[0-9:]", "phone_numbers": r"\p{Nd}"}
# module -> the package that installs it (all four come with the `pii` extra)
REQUIRED = {"presidio_analyzer": "presidio-analyzer", "spacy": "spacy",
            "phonenumbers": "phonenumbers", "tldextract": "tldextract"}
INSTALL = "pip install 'lmbuild[pii]'"


def missing_packages() -> list[str]:
    """The packages the backend needs that are not installed."""
    return [pkg for module, pkg in REQUIRED.items() if importlib.util.find_spec(module) is None]


def check_installed(where: str) -> None:
    """Raise ParamsError (one line) when `where` asks for the backend and it is not installed."""
    missing = missing_packages()
    if missing:
        raise ParamsError([f"params.yaml: {where}: 'presidio' needs the pii extra (missing: "
                           f"{', '.join(missing)}): {INSTALL}"])


@functools.cache
def engine():
    """The AnalyzerEngine of this process, built on first use (a few seconds, mostly imports)."""
    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SlimSpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (EmailRecognizer, IpRecognizer,
                                                          PhoneRecognizer)
    from spacy.language import Language

    if not Language.has_factory("lmbuild_lowercase_lemma"):
        @Language.component("lmbuild_lowercase_lemma")
        def lowercase_lemma(doc):
            for token in doc:
                token.lemma_ = token.lower_
            return doc

    class BlankEnglish(SlimSpacyNlpEngine):
        """Presidio's tokens-and-lemmas engine on a blank pipeline: nothing to download."""

        def load(self) -> None:
            nlp = spacy.blank("en")
            nlp.add_pipe("lmbuild_lowercase_lemma")
            self.nlp = {"en": nlp}

    # the bundled suffix list only: no download, no cache directory
    suffixes = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return suffixes(pattern_text).fqdn != ""

    recognizers = [OfflineEmailRecognizer(), IpRecognizer(),
                   PhoneRecognizer(supported_regions=PHONE_REGIONS)]
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    nlp_engine = BlankEnglish(models=[{"lang_code": "en", "model_name": "blank"}],
                              auto_download=False)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])


@functools.cache
def _no_tokens():
    """NLP artifacts of an empty text: no tokens, so no context words."""
    return engine().nlp_engine.process_text("", "en")


def _spans(results) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, kind), by position; where matches overlap the higher score
    wins, then the longer span, then the earlier one."""
    kept: list[tuple[int, int, str]] = []
    for r in sorted(results, key=lambda r: (-r.score, r.start - r.end, r.start, r.entity_type)):
        if all(r.end <= s or r.start >= e for s, e, _ in kept):
            kept.append((r.start, r.end, KINDS[r.entity_type]))
    return sorted(kept)


def mask_text(text: str, cfg: dict, shortcut: bool = True) -> tuple[str, dict[str, int]]:
    """One document: (masked text, matches per kind) for the kinds `cfg` enables.

    With `shortcut`, Presidio first runs without tokens: its recognizers do not read them, and
    context only raises the score of a match they found, so a document where they find nothing
    needs no tokenizing (most of Presidio's time); one with a match is analysed again in full,
    context included. Either way the result is the same.
    """
    counts = {kind: 0 for kind in PLACEHOLDERS}
    entities = [ENTITIES[k] for k in PLACEHOLDERS if cfg.get(k, False)]
    if not entities or not text:
        return text, counts
    analyzer = engine()
    results = None
    if shortcut:
        results = analyzer.analyze(text, language="en", entities=entities,
                                   nlp_artifacts=_no_tokens())
    if results or not shortcut:
        results = analyzer.analyze(text, language="en", entities=entities)
    out, pos = [], 0
    for start, end, kind in _spans(results):
        out += [text[pos:start], PLACEHOLDERS[kind]]
        pos = end
        counts[kind] += 1
    return "".join(out) + text[pos:], counts


def candidates(texts: pa.Array, cfg: dict) -> np.ndarray:
    """Row indices of the documents some enabled recognizer could match (PREFILTER)."""
    hit = np.zeros(len(texts), dtype=bool)
    for kind, pattern in PREFILTER.items():
        if cfg.get(kind, False):
            found = pc.match_substring_regex(texts, pattern)
            hit |= pc.fill_null(found, False).to_numpy(zero_copy_only=False)
    return np.flatnonzero(hit)


def mask(texts: pa.Array, cfg: dict, shortcuts: bool = True) -> tuple[pa.Array, dict[str, np.ndarray]]:
    """`pii.mask` with Presidio: the masked texts and, per kind, the matches in each document.

    `shortcuts=False` sends every document to Presidio in full, without the prefilter or the
    tokenless first pass (benchmarks/pii_backends.py checks that both give the same output).
    """
    counts = {kind: np.zeros(len(texts), dtype=np.int64) for kind in PLACEHOLDERS}
    valid = pc.is_valid(texts).to_numpy(zero_copy_only=False)
    rows = candidates(texts, cfg) if shortcuts else np.flatnonzero(valid)
    if len(rows) == 0:
        return texts, counts
    out = texts.to_pylist()
    for i in rows:
        out[i], per_kind = mask_text(out[i], cfg, shortcut=shortcuts)
        for kind, n in per_kind.items():
            counts[kind][i] = n
    return pa.array(out, pa.string()), counts
