"""Language identification with the fastText lid.176 model (Joulin et al. 2016).

Texts are truncated to `max_chars` characters and newlines flattened (fastText predicts one
line at a time) with pyarrow compute, then the whole batch goes to fastText's C++ predict in
one call. FineWeb keeps English documents whose top language score is at least 0.65
(Penedo et al. 2024), the default threshold here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MODELS: dict[str, object] = {}


def load_model(path: str):
    """Load (once per process) the fastText model at `path`."""
    if path not in _MODELS:
        if not Path(path).is_file():
            raise FileNotFoundError(f"params.yaml: filter.rules.langid.model: no file {path!r}; "
                                    f"`make setup` puts lid.176.ftz in assets/")
        import fasttext

        fasttext.FastText.eprint = lambda *a, **k: None  # silence the load-time warning
        _MODELS[path] = fasttext.load_model(path)
    return _MODELS[path]


def predict(texts: pa.Array, model_path: str, max_chars: int) -> tuple[pa.StringArray, np.ndarray]:
    """Top language code and its probability for every text."""
    if len(texts) == 0:
        return pa.array([], pa.string()), np.zeros(0, dtype=np.float32)
    head = pc.utf8_slice_codeunits(texts, 0, max_chars)
    flat = pc.replace_substring_regex(head, r"[\r\n\t\f\v]+", " ").to_pylist()
    labels, probs = load_model(model_path).predict(flat, k=1)
    langs = pa.array([lab[0][len("__label__"):] if lab else "und" for lab in labels], pa.string())
    scores = np.array([p[0] if len(p) else 0.0 for p in probs], dtype=np.float32)
    return langs, scores


def keep_mask(langs: pa.StringArray, scores: np.ndarray, languages: list[str], min_score: float) -> np.ndarray:
    in_list = pc.is_in(langs, value_set=pa.array(languages, pa.string())).to_numpy(zero_copy_only=False)
    return in_list & (scores >= np.float32(min_score))
