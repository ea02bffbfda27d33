"""Starting post-training from a model of another family (lmbuild.lm.start_model) and LoRA
(lmbuild.train.lora), on tiny models built here: the ChatML template and turn tokens are added to
a tokenizer without them, the new embedding rows are the mean row, clashes and non-causal-LM
directories are one-line errors naming the param; LoRA trains only its adapters (r x (in + out)
per adapted layer) and merges to W + alpha / r x B A."""

from __future__ import annotations

import json

import pytest
import torch

from lmbuild.lm.chat import chat_ids, encode_conversation
from lmbuild.lm.start_model import check_causal_lm, prepare_tokenizer, start_model, start_tokenizer, weights_id
from lmbuild.params import ParamsError, validate_section
from lmbuild.tokenize.chat_template import CHAT_TEMPLATE, IM_END, IM_START
from lmbuild.train.lora import apply_lora, linear_names, merged, trainable_params
from lmbuild.train.model import build_model
from train_data import foreign_tokenizer, make_tokenizer, save_foreign, synthetic_docs


def test_template_and_turn_tokens_are_added_to_a_foreign_tokenizer():
    tok = foreign_tokenizer()
    n = len(tok)
    tok, info = prepare_tokenizer(tok, "sft.init_model")
    assert info == {"template_added": 1, "tokens_added": 2, "vocab_before": n, "vocab_after": n + 2}
    assert tok.chat_template == CHAT_TEMPLATE
    start, end = tok.convert_tokens_to_ids(IM_START), tok.convert_tokens_to_ids(IM_END)
    assert {start, end} == {n, n + 1}
    assert tok("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)["input_ids"][0] == start
    # eos: <|im_end|> then the tokenizer's own; pad: its own
    assert chat_ids(tok) == ([end, tok.convert_tokens_to_ids("</s>")], tok.convert_tokens_to_ids("<pad>"))
    ids, labels = encode_conversation(tok, [{"role": "user", "content": "hi"},
                                            {"role": "assistant", "content": "the cat"}], 64)
    trained = [i for i, lab in zip(ids, labels) if lab != -100]
    assert tok.decode(trained) == "the cat<|im_end|>"  # the assistant content and its end token only


def test_a_tokenizer_without_pad_or_eos_pads_with_im_end():
    tok, _ = prepare_tokenizer(foreign_tokenizer(eos=None, pad=None, bos="<s>"), "sft.init_model")
    end = tok.convert_tokens_to_ids(IM_END)
    assert chat_ids(tok) == ([end], end)


def test_lmbuild_tokenizer_is_left_as_it_is(tmp_path):
    tok = make_tokenizer([t for _, t in synthetic_docs(50)], tmp_path / "tok", 300)
    n = len(tok)
    tok, info = prepare_tokenizer(tok, "sft.init_model")
    assert info == {"template_added": 0, "tokens_added": 0, "vocab_before": n, "vocab_after": n}
    assert chat_ids(tok) == ([3, 0], 1)  # <|im_end|>, <|endoftext|>; <|pad|>


def test_a_non_chatml_template_with_generation_blocks_is_replaced():
    tok = foreign_tokenizer()
    tok.chat_template = "{% for m in messages %}{% generation %}{{ m['content'] }}{% endgeneration %}{% endfor %}"
    tok, info = prepare_tokenizer(tok, "sft.init_model")
    assert info["template_added"] == 1 and tok.chat_template == CHAT_TEMPLATE


def test_new_embedding_rows_are_the_mean_row(tmp_path):
    tok, model = save_foreign(tmp_path / "m")
    old = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    tok, info = start_tokenizer(tmp_path / "m", "sft.init_model")
    m = start_model(tmp_path / "m", tok, info)
    emb, out = m.get_input_embeddings().weight, m.get_output_embeddings().weight
    assert info["tokens_added"] == 2
    n = old.shape[0]  # the tokenizer may be one longer (transformers 5 adds an unk to a qwen2 one)
    assert emb.shape[0] == out.shape[0] == info["vocab_after"] == len(tok) == m.config.vocab_size
    assert torch.equal(emb[:n], old) and torch.equal(out[:n], old_out)  # the old rows untouched
    for i in range(n, len(tok)):
        assert torch.allclose(emb[i], old.mean(dim=0), atol=1e-7)
        assert torch.allclose(out[i], old_out.mean(dim=0), atol=1e-7)
    # two loads give the same model (dpo_pairs' reference = dpo's start)
    again = start_model(tmp_path / "m", tok, info)
    assert torch.equal(again.get_input_embeddings().weight, emb)
    assert weights_id(tmp_path / "m") == tmp_path / "m" / "model.safetensors"


def test_tied_embeddings_grow_once(tmp_path):
    tok, model = save_foreign(tmp_path / "m", tie=True)
    old = model.get_input_embeddings().weight.detach().clone()
    tok, info = start_tokenizer(tmp_path / "m", "sft.init_model")
    m = start_model(tmp_path / "m", tok, info)
    assert m.get_output_embeddings().weight is m.get_input_embeddings().weight
    assert torch.allclose(m.get_input_embeddings().weight[-1], old.mean(dim=0), atol=1e-7)


@pytest.mark.parametrize("kw,fragment", [
    ({"eos": IM_START}, "the tokenizer's eos token is the chat template's <|im_start|> (another role), "
                        "got <|im_start|>"),
    ({"pad": IM_END}, "the tokenizer's pad token is the chat template's <|im_end|> (another role), got <|im_end|>"),
])
def test_special_tokens_with_another_role_are_one_line_errors(kw, fragment):
    with pytest.raises(ParamsError) as exc:
        prepare_tokenizer(foreign_tokenizer(**kw), "dpo.init_model")
    assert exc.value.problems == [f"params.yaml: dpo.init_model: {fragment}"]


def test_a_template_token_the_vocabulary_splits_is_an_error():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {"[UNK]": 0, "</s>": 1, IM_START: 2, "<": 3, "|": 4, "im": 5, "_": 6, "start": 7, ">": 8, "hi": 9}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>", unk_token="[UNK]")
    assert len(tok(IM_START, add_special_tokens=False)["input_ids"]) > 1  # in the vocabulary, split anyway
    with pytest.raises(ParamsError) as exc:
        prepare_tokenizer(tok, "sft.init_model")
    (line,) = exc.value.problems
    assert line.startswith("params.yaml: sft.init_model: the tokenizer has <|im_start|> in its vocabulary but "
                           "splits it into") and line.endswith("got <|im_start|>")


def test_not_a_causal_lm_is_a_one_line_error(tmp_path):
    from transformers import BertConfig, Qwen2Config
    Qwen2Config(architectures=["Qwen2ForSequenceClassification"]).save_pretrained(tmp_path / "rm")
    BertConfig(architectures=["BertForMaskedLM"]).save_pretrained(tmp_path / "mlm")
    (tmp_path / "t5").mkdir()
    (tmp_path / "t5" / "config.json").write_text(json.dumps({"model_type": "t5", "architectures": ["T5Model"]}))
    for name, fragment in [("rm", "its architectures are Qwen2ForSequenceClassification"),
                           ("mlm", "its architectures are BertForMaskedLM"),
                           ("t5", "model_type 't5' has no AutoModelForCausalLM class"),
                           ("nothing", "must be a local Hugging Face model directory with a config.json")]:
        with pytest.raises(ParamsError) as exc:
            check_causal_lm(tmp_path / name, "rlvr.init_model")
        (line,) = exc.value.problems
        assert line.startswith("params.yaml: rlvr.init_model: ") and fragment in line, line
        assert line.endswith(f"got {tmp_path / name}") and "\n" not in line
    Qwen2Config(architectures=["Qwen2ForCausalLM"]).save_pretrained(tmp_path / "lm")
    check_causal_lm(tmp_path / "lm", "sft.init_model")  # no error


def tiny_llama():
    m = {**validate_section("pretrain", {})["model"], "hidden_size": 32, "num_layers": 2, "num_heads": 4,
         "intermediate_size": 64, "max_length": 64}
    return build_model(m, 100, 0, 1, 0)


def lora_cfg(**kw):
    sft = validate_section("sft", {"sources": [{"name": "t", "type": "tasks", "count": 1}], "lora": kw})
    return sft["lora"]


def test_lora_trains_only_adapters_with_the_hand_counted_size():
    model = tiny_llama()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_model = apply_lora(model, lora_cfg(enabled=True, r=4, target_modules=["q_proj", "v_proj", "down_proj"]),
                            "sft", seed=0)
    shapes = {}
    for name, mod in tiny_llama().named_modules():
        if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] in ("q_proj", "v_proj", "down_proj"):
            shapes[name] = (mod.in_features, mod.out_features)
    assert len(shapes) == 6  # 3 per layer, 2 layers
    assert trainable_params(peft_model) == sum(4 * (i + o) for i, o in shapes.values())
    assert all(("lora_" in n) == p.requires_grad for n, p in peft_model.named_parameters())
    # B starts at zero: the wrapped model computes exactly the base model
    x = torch.randint(0, 100, (2, 9))
    with torch.no_grad():
        ref = tiny_llama()(x).logits
        assert torch.equal(peft_model(input_ids=x).logits, ref)
    # one optimizer step moves the adapters only
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
    peft_model(input_ids=x, labels=x).loss.backward()
    opt.step()
    after = {n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in
             peft_model.named_parameters() if "lora_" not in n}
    assert set(after) == set(base) and all(torch.equal(after[n], base[n]) for n in base)
    assert any(p.abs().sum() > 0 for n, p in peft_model.named_parameters() if "lora_B" in n)


def test_lora_merge_is_w_plus_scaled_ba_and_leaves_no_peft_keys():
    model = tiny_llama()
    w = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    peft_model = apply_lora(model, lora_cfg(enabled=True, r=2, alpha=6, target_modules=["q_proj"]), "sft", seed=0)
    layer = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    with torch.no_grad():
        layer.lora_A["default"].weight.fill_(0.5)
        layer.lora_B["default"].weight.fill_(0.25)
    out = merged(peft_model)
    # W + (alpha / r) B A: every entry of B A is r x 0.25 x 0.5 = 0.25, scaled by 6 / 2 = 3
    assert torch.allclose(out.model.layers[0].self_attn.q_proj.weight, w + 0.75)
    assert not any("lora" in k or "base_layer" in k for k in out.state_dict())
    assert type(out).__name__ == "LlamaForCausalLM"


def test_lora_init_is_seeded_and_leaves_the_global_rng():
    model = tiny_llama()  # build_model seeds the global RNG itself: before the reference draw
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = apply_lora(model, lora_cfg(enabled=True), "sft", seed=1)
    assert torch.equal(torch.rand(3), expected)  # global RNG as it was
    b = apply_lora(tiny_llama(), lora_cfg(enabled=True), "sft", seed=1)
    ka = {n: p for n, p in a.named_parameters() if "lora_A" in n}
    assert ka and all(torch.equal(p, dict(b.named_parameters())[n]) for n, p in ka.items())


def test_lora_bad_targets_are_one_line_errors():
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"} == \
        linear_names(tiny_llama())
    with pytest.raises(ParamsError) as exc:
        apply_lora(tiny_llama(), lora_cfg(enabled=True, target_modules=["q_proj", "c_attn"]), "dpo")
    assert exc.value.problems == ["params.yaml: dpo.lora.target_modules: must name linear layers of the model "
                                  "(down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj), "
                                  "got c_attn"]
    with pytest.raises(ParamsError) as exc:
        apply_lora(tiny_llama(), lora_cfg(enabled=True, target_modules="all"), "sft")
    assert exc.value.problems == ["params.yaml: sft.lora.target_modules: must be a list of module names or "
                                  "\"all-linear\", got all"]
    everything = apply_lora(tiny_llama(), lora_cfg(enabled=True, r=1, target_modules="all-linear"), "sft")
    # all-linear: the 7 projections of both layers, not the output head (r = 1: in + out each)
    sizes = [m.in_features + m.out_features for n, m in tiny_llama().named_modules()
             if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    assert len(sizes) == 14 and trainable_params(everything) == sum(sizes)
