"""tokenize: the HF tokenizer directory loads and round-trips, the chat template renders ChatML,
the tiktoken fast path gives the same ids as `tokenizers`, token shards match their index, and
the stage is byte-identical across reruns and worker counts (trained or adopted tokenizer)."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import tree_digest
from lmbuild.shards import doc_id
from lmbuild.tokenize.chat_template import EOT, IM_END, IM_START, SPECIAL_TOKENS, render
from lmbuild.tokenize.fast_encoder import build_encoding, check_identity, encode_texts, flatten_with_eot, hf_ordinary
from lmbuild.tokenize.run import ADVERSARIAL
from lmbuild.tokenize.token_shards import INDEX_SCHEMA, PART_SCHEMA, TokenShardWriter, read_document, token_dtype
from lmbuild.tokenize.train_bpe import save_hf_dir, train

WORDS = ["the", "model", "data", "token", "learning", "café", "naïve", "über", "日本", "語", "données", "x",
         "def", "return", "self", "print", "(", ")", ":", "{", "}", "==", "I'll", "we're", "IT'S", "🎉", "\t"]


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = rng.choice(WORDS, size=int(rng.integers(5, 120)))
        seps = rng.choice([" ", " ", " ", "  ", "\n", "\n\n", "\r\n", "    "], size=len(words))
        text = "".join(w + s for w, s in zip(words, seps))
        text += f" {int(rng.integers(0, 10**9))} {rng.random():.5f}"
        if i % 17 == 0:
            text += " <|endoftext|> <|im_start|>user"  # special-token strings inside ordinary text
        if i % 5 == 0:
            text = "".join(chr(int(c)) for c in rng.integers(32, 0x2FFF, size=40)) + text
        out.append(text)
    return out


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_hf_dir(train(make_texts(400), 600, 2, "cl100k"), out)
    return out


def test_autotokenizer_loads_and_round_trips(tok_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    assert tok.eos_token == EOT and tok.bos_token == EOT and tok.pad_token == "<|pad|>"
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert len(tok) == 600
    for text in make_texts(30, seed=5) + ADVERSARIAL:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text


def test_chat_template_renders_chatml(tok_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == render(msgs)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                    "<|im_start|>assistant\n4<|im_end|>\n")
    prompt = tok.apply_chat_template(msgs[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == render(msgs[:2], add_generation_prompt=True) and prompt.endswith(f"{IM_START}assistant\n")
    out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert ids[0] == tok.convert_tokens_to_ids(IM_START)
    trained = [i for i, m in zip(ids, mask) if m]
    assert tok.decode(trained) == "4" + IM_END  # loss on the answer and its <|im_end|>, nothing else


@pytest.mark.parametrize("pattern", ["cl100k", "gpt2"])
def test_tiktoken_ids_identical_to_tokenizers(tmp_path, pattern):
    save_hf_dir(train(make_texts(300, seed=1), 700, 2, pattern), tmp_path)
    enc = build_encoding(tmp_path / "tokenizer.json")
    hf = hf_ordinary(tmp_path / "tokenizer.json")
    assert enc is not None
    rng = np.random.default_rng(3)
    randoms = ["".join(chr(int(c)) for c in rng.integers(1, 0x10FFFF, size=50) if not 0xD800 <= c < 0xE000)
               for _ in range(50)]
    texts = make_texts(200, seed=2) + ADVERSARIAL + randoms
    assert check_identity(enc, hf, texts) == 0
    assert encode_texts(enc, texts, threads=2) == encode_texts(hf, texts)
    # special-token strings in documents stay ordinary text
    ids = encode_texts(enc, ["a <|endoftext|> b <|im_end|>"])[0]
    assert not set(ids) & {0, 1, 2, 3}


def test_non_bpe_order_falls_back(tmp_path):
    save_hf_dir(train(make_texts(100), 400, 2, "cl100k"), tmp_path)
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    spec["model"]["merges"] = spec["model"]["merges"][::-1]  # merge order no longer id order
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    assert build_encoding(tmp_path / "tokenizer.json") is None


@pytest.mark.parametrize("vocab_size,dtype", [(4096, "uint16"), (100_000, "uint32")])
def test_token_shard_format(tmp_path, vocab_size, dtype):
    rng = np.random.default_rng(0)
    docs = [list(rng.integers(4, vocab_size, size=int(rng.integers(0, 300)))) for _ in range(120)]
    flat, lengths = flatten_with_eot(docs, 0, token_dtype(vocab_size))
    assert flat.dtype == np.dtype(dtype) and len(flat) == sum(map(len, docs)) + len(docs)
    rows = pa.table({"length": lengths, "id": [f"d{i}" for i in range(120)], "source": ["s"] * 120,
                     "domain": ["web", "code"] * 60, "repeat": np.zeros(120, np.int32)}).cast(PART_SCHEMA)
    w = TokenShardWriter(tmp_path, token_dtype(vocab_size), shard_bytes=4000)
    w.write(flat[:int(lengths[:50].sum())], rows.slice(0, 50))
    w.write(flat[int(lengths[:50].sum()):], rows.slice(50))
    meta = w.close({"vocab_size": vocab_size, "eot_id": 0, "pad_id": 1})
    assert meta["dtype"] == dtype and len(meta["shards"]) > 3 and meta["documents"] == 120
    assert meta["tokens"] == len(flat) and sum(meta["tokens_per_domain"].values()) == len(flat)
    index = pq.read_table(tmp_path / "index.parquet")
    assert index.schema.equals(INDEX_SCHEMA)
    sizes = {n: (tmp_path / n).stat().st_size // np.dtype(dtype).itemsize for n in meta["shards"]}
    for i, row in enumerate(index.to_pylist()):
        got = read_document(tmp_path, meta, row)
        assert got[-1] == 0 and list(got[:-1]) == list(docs[i]), i
        assert row["start"] + row["length"] <= sizes[meta["shards"][row["shard"]]]
    # shards are contiguous: each file is exactly its documents
    for s, name in enumerate(meta["shards"]):
        mine = index.filter(pa.compute.equal(index["shard"], s))
        assert int(pa.compute.sum(mine["length"]).as_py()) == sizes[name]


def test_empty_split_writes_an_empty_index(tmp_path):
    meta = TokenShardWriter(tmp_path, token_dtype(4096), 1000).close({"vocab_size": 4096, "eot_id": 0, "pad_id": 1})
    assert meta["shards"] == [] and meta["tokens"] == 0 and meta["documents"] == 0
    assert pq.read_table(tmp_path / "index.parquet").schema.equals(INDEX_SCHEMA)


def write_mix(root, seed=0):
    rng = np.random.default_rng(seed)
    for split, n in (("pretrain", 120), ("anneal", 30), ("val", 12)):
        for src, domain in (("src_web", "web"), ("src_code", "code")):
            texts = make_texts(n, seed=hash((split, src)) % 1000)
            if domain == "code":
                texts = ["def f(x):\n    return x * 2  # " + t for t in texts]
            ids = [doc_id(src, f"{split}{i}") for i in range(n)]
            repeat = np.zeros(n, np.int32)
            table = pa.table({"id": ids, "text": texts, "source": [src] * n, "domain": [domain] * n,
                              "url": pa.nulls(n, pa.string()), "repeat": repeat})
            if split == "pretrain":  # second copies of some documents, as the mix writes them
                twice = table.slice(0, 20)
                table = pa.concat_tables([table, twice.set_column(5, "repeat", pa.array(np.ones(20, np.int32)))])
            # the training splits as the decontaminate stage passes them on (nothing to cut here)
            for top in ("mix",) if split == "val" else ("mix", "decontam"):
                out = root / "data" / top / split / src
                out.mkdir(parents=True, exist_ok=True)
                half = table.num_rows // 2
                pq.write_table(table.slice(0, half), out / "part-a.parquet", row_group_size=25)
                pq.write_table(table.slice(half), out / "part-b.parquet", row_group_size=25)
    return rng


TOKENIZE = {"vocab_size": 700, "sample_docs": 1000, "min_frequency": 2, "shard_mb": 0.01, "batch_rows": 16,
            "verify_docs": 64}


def outputs(root):
    return {**{f"tok/{k}": v for k, v in tree_digest(root / "models" / "tokenizer").items()},
            **{f"data/{k}": v for k, v in tree_digest(root / "data" / "tokens").items()},
            "metrics": (root / "metrics" / "tokenize.json").read_bytes()}


@pytest.fixture
def tokenized(project):
    write_mix(project.root)
    project.params["tokenize"] = copy.deepcopy(TOKENIZE)
    project.params["common"]["workers"] = 2
    project.run("tokenize")
    return project


def test_stage_outputs_and_metrics(tokenized):
    root = tokenized.root
    m = json.loads((root / "metrics" / "tokenize.json").read_text())
    assert m["vocab_size"] == 700 and m["encoder_tiktoken"] == 1 and m["identity_mismatches"] == 0
    assert m["pretrain.documents"] == 2 * 140 and m["anneal.documents"] == 60 and m["val.documents"] == 24
    assert 1.0 < m["domains.web.bytes_per_token"] < 8 and 0 < m["pretrain_vocab_used_share"] <= 1
    hf = hf_ordinary(root / "models" / "tokenizer" / "tokenizer.json")
    for split in ("pretrain", "anneal", "val"):
        d = root / "data" / "tokens" / split
        meta = json.loads((d / "meta.json").read_text())
        assert meta["eot_id"] == 0 and meta["pad_id"] == 1 and meta["dtype"] == "uint16"
        assert meta["tokens"] == m[f"{split}.tokens"] and meta["tokens_per_domain"]["web"] == m[f"{split}.domains.web.tokens"]
        assert sorted(p.name for p in d.glob("*.bin")) == meta["shards"]
        index = pq.read_table(d / "index.parquet")
        assert index.schema.equals(INDEX_SCHEMA)
        # documents come back in mix order (sources sorted, shards sorted, rows in order), text intact
        src = pa.concat_tables([pq.read_table(p) for p in sorted((root / "data" / "mix" / split).glob("*/*.parquet"))])
        assert index["id"].to_pylist() == src["id"].to_pylist()
        assert index["repeat"].to_pylist() == src["repeat"].to_pylist()
        for row, text in list(zip(index.to_pylist(), src["text"].to_pylist()))[::7]:
            toks = read_document(d, meta, row)
            assert toks[-1] == 0 and hf.decode(toks[:-1].tolist()) == text
    assert len(json.loads((root / "data" / "tokens" / "pretrain" / "meta.json").read_text())["shards"]) > 1


def test_stage_byte_identical_reruns_and_workers(tokenized):
    first = outputs(tokenized.root)
    tokenized.params["common"]["workers"] = 1
    tokenized.write_params()
    tokenized.run("tokenize")
    assert outputs(tokenized.root) == first
    assert not list((tokenized.root / "data").glob(".*tmp")) and not list((tokenized.root / "models").glob(".*tmp"))


def test_existing_tokenizer_dir(tokenized, tmp_path):
    root = tokenized.root
    before = outputs(root)
    saved = tmp_path / "mytok"
    shutil.copytree(root / "models" / "tokenizer", saved)
    tokenized.params["tokenize"]["path"] = str(saved)
    tokenized.params["tokenize"]["vocab_size"] = 50000  # ignored: the adopted tokenizer decides
    tokenized.write_params()
    tokenized.run("tokenize")
    after = outputs(root)
    assert {k: v for k, v in after.items() if k != "metrics"} == {k: v for k, v in before.items() if k != "metrics"}
    m = json.loads(after["metrics"])
    assert m["tokenizer_trained"] == 0 and m["vocab_size"] == 700 and m["encoder_tiktoken"] == 1


def test_adopt_foreign_tokenizer_adds_chat_tokens(project, tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2 style, no special tokens
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(make_texts(200), trainers.BpeTrainer(
        vocab_size=500, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    tok.save(str(foreign / "tokenizer.json"))
    write_mix(project.root)
    project.params["tokenize"] = {**TOKENIZE, "path": str(foreign)}
    project.run("tokenize")
    from transformers import AutoTokenizer
    t = AutoTokenizer.from_pretrained(str(project.root / "models" / "tokenizer"))
    assert t.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == render([{"role": "user", "content": "hi"}])
    meta = json.loads((project.root / "data" / "tokens" / "val" / "meta.json").read_text())
    assert meta["eot_id"] == t.convert_tokens_to_ids(EOT) == 500 and meta["vocab_size"] == 504
    assert json.loads((project.root / "metrics" / "tokenize.json").read_text())["encoder_tiktoken"] == 1


def test_bad_params_and_missing_inputs(project):
    project.params["tokenize"] = {**TOKENIZE, "pattern": "([unclosed"}
    write_mix(project.root)
    proc = project.run("tokenize", check=False)
    assert proc.returncode == 2 and "tokenize.pattern" in proc.stderr and "Traceback" not in proc.stderr
    project.params["tokenize"] = {**TOKENIZE, "vocab_sise": 4}
    project.write_params()
    proc = project.run("tokenize", check=False)
    assert proc.returncode == 2 and "tokenize.vocab_sise: unknown key" in proc.stderr
    shutil.rmtree(project.root / "data")
    project.params["tokenize"] = dict(TOKENIZE)
    project.write_params()
    proc = project.run("tokenize", check=False)
    assert proc.returncode == 2 and "dvc repro decontaminate" in proc.stderr and "Traceback" not in proc.stderr
