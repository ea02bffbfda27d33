"""Main-text extraction from HTML pages (WARC responses), with trafilatura (Barbaresi 2021)."""

from __future__ import annotations


def load_extractor():
    import trafilatura

    return trafilatura


def extract_main_text(body: bytes, url: str | None, favor: str = "balanced") -> str:
    """Return the page's main text, or an empty string when nothing could be extracted
    (the record then goes to quarantine as empty, with its location)."""
    import trafilatura

    text = trafilatura.extract(body, url=url, include_comments=False, include_tables=True, deduplicate=False,
                               favor_precision=favor == "precision", favor_recall=favor == "recall",
                               with_metadata=False)
    return text or ""
