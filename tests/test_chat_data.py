"""chat_data: every reader format parses; bad rows become (file:line, reason) rejects while good
rows survive; unusable files raise ChatDataError naming the file; encoding puts labels on exactly
the assistant tokens (content + <|im_end|>) and the prompt/completion split matches the template."""

from __future__ import annotations

import gzip
import json

import pytest

from lmbuild.lm.chat_data import FORMATS, PAIR_FORMATS, ChatDataError, Pair, Reject, read_conversations, read_pairs
from lmbuild.lm.chat import encode_completion, encode_conversation, encode_prompt
from lmbuild.tokenize.chat_template import IM_END, IM_START
from train_data import make_tokenizer, synthetic_docs

SYSTEM = {"role": "system", "content": "You are brief."}
U1, A1 = {"role": "user", "content": "Where did the cat go?"}, {"role": "assistant", "content": "The cat ran home."}
U2, A2 = {"role": "user", "content": "\nAnd the dog?"}, {"role": "assistant", "content": " It sat  on the mat.\n"}


def write_jsonl(path, rows, gz=False):
    """Rows as JSON lines; a str row is written as is (a malformed or blank line)."""
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer([t for _, t in synthetic_docs(120)], tmp_path_factory.mktemp("tok"), 400)


# --------------------------------------------------------------------------------------------- readers


def test_messages_jsonl_good_rows_survive_bad_rows_rejected(tmp_path):
    f = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [SYSTEM, U1, A1, U2, A2]},                                   # 1 good, multi-turn
        "{not json",                                                              # 2
        {"messages": [U1, {"role": "bot", "content": "hi"}]},                      # 3
        {"messages": [U1, {"role": "assistant", "content": "  "}]},                # 4
        {"messages": [SYSTEM, U1]},                                               # 5
        {"messages": [A1, U1, A1]},                                               # 6
        {"text": "hello"},                                                        # 7
        {"messages": [U1, {"role": "assistant", "content": "ok<|im_end|>"}]},      # 8
        "",                                                                       # 9 blank: skipped
        [1, 2],                                                                   # 10
        {"messages": [U1, A1, U2], "id": 7},                                      # 11 good: trailing user cut
        {"messages": [U1, {"role": "assistant"}]},                                # 12
    ])
    convs, rejects = read_conversations(f)
    assert convs == [[SYSTEM, U1, A1, U2, A2], [U1, A1]]
    assert rejects == [Reject(f"{f}:2", "malformed_json"), Reject(f"{f}:3", "bad_role:bot"),
                       Reject(f"{f}:4", "empty_content"), Reject(f"{f}:5", "no_assistant_turn"),
                       Reject(f"{f}:6", "bad_order:start->assistant"), Reject(f"{f}:7", "missing_field:messages"),
                       Reject(f"{f}:8", "control_token"), Reject(f"{f}:10", "not_an_object"),
                       Reject(f"{f}:12", "missing_field:content")]


def test_jsonl_named_json_and_raw_line_separators(tmp_path):
    odd = {"role": "assistant", "content": "a\u2028b\u0085c\r"}  # legal raw inside JSON strings
    f = tmp_path / "chat.json"  # JSONL under a .json name, as many published datasets are
    f.write_text(json.dumps({"messages": [U1, odd]}, ensure_ascii=False) + "\r\n"
                 + json.dumps({"messages": [U1, A1]}) + "\n", newline="")
    assert read_conversations(f) == ([[U1, odd], [U1, A1]], [])


def test_alpaca_json_array(tmp_path):
    f = tmp_path / "alpaca.json"
    f.write_text(json.dumps([
        {"instruction": "Name a colour.", "input": "", "output": "Red."},
        {"instruction": "Summarise.", "input": "The cat sat.", "output": "A cat sat.", "system": "Be terse."},
        {"instruction": "No answer here.", "input": ""},
        {"instruction": "Odd input", "input": None, "output": "Fine."},
        {"instruction": 3, "output": "x"},
    ]))
    convs, rejects = read_conversations(f)
    assert convs == [
        [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Red."}],
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Summarise.\n\nThe cat sat."},
         {"role": "assistant", "content": "A cat sat."}],
        [{"role": "user", "content": "Odd input"}, {"role": "assistant", "content": "Fine."}],
    ]
    assert rejects == [Reject(f"{f}:item 2", "missing_field:output"), Reject(f"{f}:item 4", "bad_type:instruction")]


def test_sharegpt_jsonl_gz(tmp_path):
    f = write_jsonl(tmp_path / "sg.jsonl.gz", [
        {"conversations": [{"from": "system", "value": "You are brief."}, {"from": "human", "value": "Hi"},
                           {"from": "gpt", "value": "Hello."}, {"from": "human", "value": "Bye"},
                           {"from": "gpt", "value": "Bye."}]},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "Hello."}]},
        {"conversations": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo."}],
         "system": "Sys."},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "human", "value": "Hi again"},
                           {"from": "gpt", "value": "Hello."}]},
    ], gz=True)
    convs, rejects = read_conversations(f)
    assert convs[0] == [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"},
                        {"role": "assistant", "content": "Bye."}]
    assert convs[1] == [{"role": "system", "content": "Sys."}, {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Yo."}]
    assert rejects == [Reject(f"{f}:2", "bad_role:bot"), Reject(f"{f}:4", "bad_order:user->user")]


def test_hf_dataset_directory(tmp_path):
    import datasets
    d = tmp_path / "ds"
    datasets.Dataset.from_list([{"messages": [U1, A1]}, {"messages": [U1, {"role": "bot", "content": "x"}]},
                                {"messages": [SYSTEM, U1, A1]}]).save_to_disk(str(d))
    convs, rejects = read_conversations(d)
    assert convs == [[U1, A1], [SYSTEM, U1, A1]]
    assert rejects == [Reject(f"{d}:row 1", "bad_role:bot")]
    one = datasets.Dataset.from_list([{"messages": [U1, A1]}])
    datasets.DatasetDict({"train": one}).save_to_disk(str(tmp_path / "dd"))
    assert read_conversations(tmp_path / "dd") == ([[U1, A1]], [])


def test_unusable_files_raise_chat_data_error_naming_the_file(tmp_path):
    f = write_jsonl(tmp_path / "odd.jsonl", ["garbage", {"a": 1, "b": 2}, {"messages": [U1, A1]}])
    with pytest.raises(ChatDataError, match=r"odd\.jsonl: cannot tell the format from line 2 \(keys: a, b\); "
                                            r"expected one of messages, alpaca, sharegpt; set format: in params"):
        read_conversations(f)
    with pytest.raises(ChatDataError, match=r"missing\.jsonl: no such file"):
        read_conversations(tmp_path / "missing.jsonl")
    with pytest.raises(ChatDataError, match=r"chat\.csv: unsupported file type"):
        (tmp_path / "chat.csv").write_text("a,b\n")
        read_conversations(tmp_path / "chat.csv")
    with pytest.raises(ChatDataError, match=r"odd\.jsonl: unknown format 'chatml'"):
        read_conversations(f, format="chatml")
    (tmp_path / "notds").mkdir()
    with pytest.raises(ChatDataError, match=r"notds: a directory but not a dataset"):
        read_conversations(tmp_path / "notds")
    (tmp_path / "broken.json").write_text('[{"messages": []},')
    with pytest.raises(ChatDataError, match=r"broken\.json: not valid JSON"):
        read_conversations(tmp_path / "broken.json")
    (tmp_path / "obj.json").write_text(json.dumps({"data": [{"messages": [U1, A1]}]}, indent=1))
    with pytest.raises(ChatDataError, match=r"obj\.json: one JSON object spread over several lines \(keys: data\)"):
        read_conversations(tmp_path / "obj.json")
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ChatDataError, match=r"bad\.jsonl\.gz: cannot read it"):
        read_conversations(tmp_path / "bad.jsonl.gz")
    with pytest.raises(ChatDataError, match=r"odd\.jsonl: cannot tell the format"):
        read_pairs(f)
    # An explicit format skips detection: every row is checked against it.
    convs, rejects = read_conversations(write_jsonl(tmp_path / "m.jsonl", [{"messages": [U1, A1]}]), format="alpaca")
    assert convs == [] and [r.reason for r in rejects] == ["missing_field:instruction"]
    assert FORMATS == ("messages", "alpaca", "sharegpt")


def test_pairs_prompt_chosen_rejected(tmp_path):
    f = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "Name a colour.", "chosen": "Red.", "rejected": "Seven."},
        {"prompt": "Same?", "chosen": "Yes.", "rejected": " Yes. "},
        {"prompt": "Missing", "chosen": "a"},
        {"prompt": "Sys", "chosen": "a", "rejected": "b", "system": "Be kind."},
    ])
    pairs, rejects = read_pairs(f)
    assert pairs == [Pair([{"role": "user", "content": "Name a colour."}], "Red.", "Seven."),
                     Pair([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Sys"}], "a", "b")]
    assert rejects == [Reject(f"{f}:2", "identical"), Reject(f"{f}:3", "missing_field:rejected")]
    assert PAIR_FORMATS == ("prompt_chosen_rejected", "conversational")


def test_pairs_conversational(tmp_path):
    f = write_jsonl(tmp_path / "uf.jsonl", [
        # UltraFeedback-binarized: prompt string, lists repeat the prompt turn
        {"prompt": "Hi", "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
         "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}],
         "score_chosen": 8.0},
        # no prompt: the shared multi-turn prefix is the prompt
        {"chosen": [SYSTEM, U1, A1, U2, {"role": "assistant", "content": "It slept."}],
         "rejected": [SYSTEM, U1, A1, U2, {"role": "assistant", "content": "No idea."}]},
        # TRL conversational: prompt messages, completion-only lists
        {"prompt": [U1], "chosen": [{"role": "assistant", "content": "Home."}],
         "rejected": [{"role": "assistant", "content": "Away."}]},
        {"chosen": [U1, A1], "rejected": [U2, {"role": "assistant", "content": "x"}]},
        {"chosen": [U1, A1], "rejected": [U1, A1]},
        {"chosen": [U1, A1, U2], "rejected": [U1, A1]},
        # Anthropic HH-RLHF raw transcripts
        {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello.\n\nHuman: Bye\n\nAssistant: Bye, friend.",
         "rejected": "\n\nHuman: Hi there\n\nAssistant: Hello.\n\nHuman: Bye\n\nAssistant: Whatever."},
    ])
    pairs, rejects = read_pairs(f)
    assert pairs == [
        Pair([{"role": "user", "content": "Hi"}], "Hello!", "Go away."),
        Pair([SYSTEM, U1, A1, U2], "It slept.", "No idea."),
        Pair([U1], "Home.", "Away."),
        Pair([{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello."},
              {"role": "user", "content": "Bye"}], "Bye, friend.", "Whatever."),
    ]
    assert rejects == [Reject(f"{f}:4", "prompt_mismatch"), Reject(f"{f}:5", "identical"),
                       Reject(f"{f}:6", "bad_order:chosen_ends_with_user")]


# --------------------------------------------------------------------------------------------- encoding


def expected_encoding(tok, messages):
    """Independent reference: encode turn by turn, labels on assistant content + <|im_end|> only."""
    ids, labels = [], []

    def add(text, train):
        t = tok(text, add_special_tokens=False)["input_ids"]
        ids.extend(t)
        labels.extend(t if train else [-100] * len(t))

    for m in messages:
        add(f"{IM_START}{m['role']}\n", False)
        add(m["content"] + IM_END, m["role"] == "assistant")
        add("\n", False)
    return ids, labels


@pytest.mark.parametrize("messages", [[SYSTEM, U1, A1], [SYSTEM, U1, A1, U2, A2], [U1, A1]])
def test_labels_only_on_assistant_tokens(tok, messages):
    ids, labels = encode_conversation(tok, messages, max_len=10_000)
    assert (ids, labels) == expected_encoding(tok, messages)
    im_end = tok.convert_tokens_to_ids(IM_END)
    trained = [i for i, lab in zip(ids, labels) if lab != -100]
    assert all(lab in (-100, i) for i, lab in zip(ids, labels))
    assert trained.count(im_end) == sum(m["role"] == "assistant" for m in messages)
    assert tok.decode(trained) == "".join(m["content"] + IM_END for m in messages if m["role"] == "assistant")
    # every prompt/template token (incl. "<|im_start|>assistant\n" and the "\n" after <|im_end|>) is -100
    prompt_text = tok.decode([i for i, lab in zip(ids, labels) if lab == -100])
    assert prompt_text == "".join(f"{IM_START}{m['role']}\n"
                                  + ("" if m["role"] == "assistant" else m["content"] + IM_END) + "\n"
                                  for m in messages)


def test_truncation_from_the_right(tok):
    full, full_labels = encode_conversation(tok, [SYSTEM, U1, A1, U2, A2], max_len=10_000)
    first = full_labels.index(next(lab for lab in full_labels if lab != -100))
    ids, labels = encode_conversation(tok, [SYSTEM, U1, A1, U2, A2], max_len=first + 2)
    assert ids == full[:first + 2] and labels == full_labels[:first + 2]
    assert encode_conversation(tok, [SYSTEM, U1, A1], max_len=first) is None  # only prompt tokens left


def test_template_without_generation_block_is_refused(tok, tmp_path):
    other = make_tokenizer(["the cat sat"], tmp_path, 300)
    other.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(ValueError, match="generation"):
        encode_conversation(other, [U1, A1], 100)


@pytest.mark.parametrize("prompt", [[U1], [SYSTEM, U1, A1, U2]])
@pytest.mark.parametrize("completion", ["The cat ran home.", " It sat  on the mat.\n", "\nleading newline"])
def test_prompt_plus_completion_is_the_template_minus_trailing_newline(tok, prompt, completion):
    full = tok.apply_chat_template(prompt + [{"role": "assistant", "content": completion}], return_dict=False)
    assert tok.decode(full[-1:]) == "\n"
    p, c = encode_prompt(tok, prompt), encode_completion(tok, completion)
    assert p + c == full[:-1]
    assert tok.decode(p).endswith(f"{IM_START}assistant\n")
    assert tok.decode(c[-1:]) == IM_END
    # and exactly the tokens SFT trains on
    _, labels = encode_conversation(tok, prompt + [{"role": "assistant", "content": completion}], 10_000)
    assert labels[len(p):len(p) + len(c)] == c
