"""The fill-in-the-middle sentinel tokens, and adding them to a tokenizer.

A model trained with fill-in-the-middle (lmbuild/train/fim.py) sees documents rearranged as
`<|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|> middle` (Bavarian et al. 2022,
arXiv:2207.14255), so its tokenizer needs the three sentinels as special tokens. They are added
only when `tokenize.fim_tokens` asks for them: the demo's tokenizer has none, so its token ids and
model shapes stay what they were. Added after BPE training, they take the ids after the merges
(vocab_size, vocab_size + 1, vocab_size + 2), leaving every other id unchanged.
"""

from __future__ import annotations

FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
FIM_TOKENS = [FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX]


def add_fim_tokens(tok) -> list[str]:
    """Add the sentinels a `tokenizers.Tokenizer` lacks, as special tokens; return those added."""
    from tokenizers import AddedToken
    missing = [t for t in FIM_TOKENS if tok.token_to_id(t) is None]
    if missing:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    return missing


def fim_ids(tokenizer) -> dict[str, int] | None:
    """{'prefix', 'middle', 'suffix'} -> id in a transformers tokenizer, or None if any is missing."""
    vocab = tokenizer.get_vocab()
    if not all(t in vocab for t in FIM_TOKENS):
        return None
    return {"prefix": vocab[FIM_PREFIX], "middle": vocab[FIM_MIDDLE], "suffix": vocab[FIM_SUFFIX]}
