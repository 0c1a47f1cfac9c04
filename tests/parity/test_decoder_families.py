"""The decoder families (openai-gpt, GPT-2, LLaMA) through lmforge's own load and save: a tiny
random transformers model of every supported architecture is saved with ``save_pretrained``,
loaded by ``lmforge.load_model`` (family, task and config read from config.json), compared
with the reference (<= 1e-5 fp32; right-, left- and unpadded), exported again, and loaded back
by transformers with no missing or unexpected keys and every tensor bit-identical."""

import json

import pytest
import torch
import transformers
from parity_helpers import (
    TOL,
    assert_close,
    check_layouts,
    padded,
    randomize,
    sequences,
)

import lmforge

PAD = 0  # sequences() draws ids from 3 up, so no real token is the pad token
LABELS = 3


def _gpt(**kw):
    return transformers.OpenAIGPTConfig(vocab_size=97, n_embd=48, n_layer=2, n_head=4, n_positions=32,
                                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **kw)


def _gpt2(**kw):
    return transformers.GPT2Config(vocab_size=101, n_embd=48, n_layer=2, n_head=4, n_positions=32,
                                   resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **kw)


def _llama(**kw):
    return transformers.LlamaConfig(vocab_size=103, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                    rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 500.0},
                                    **kw)


def _llama3(**kw):
    # Llama 3.1/3.2's scaled rotary frequencies, with a short original context so all three bands occur.
    return transformers.LlamaConfig(vocab_size=103, hidden_size=64, intermediate_size=80, num_hidden_layers=2,
                                    num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                    rms_norm_eps=1e-5, tie_word_embeddings=True,
                                    rope_parameters={"rope_type": "llama3", "rope_theta": 500.0, "factor": 8.0,
                                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 32}, **kw)


# (family, config maker, bare model, causal LM, sequence classifier)
CASES = {
    "openai-gpt": ("openai-gpt", _gpt, "OpenAIGPTModel", "OpenAIGPTLMHeadModel", "OpenAIGPTForSequenceClassification"),
    "gpt2": ("gpt2", _gpt2, "GPT2Model", "GPT2LMHeadModel", "GPT2ForSequenceClassification"),
    "llama": ("llama", _llama, "LlamaModel", "LlamaForCausalLM", "LlamaForSequenceClassification"),
    "llama3-rope": ("llama", _llama3, "LlamaModel", "LlamaForCausalLM", "LlamaForSequenceClassification"),
}
HEADS = {2: "backbone", 3: "causal_lm", 4: "sequence_classification"}


def _reference(case: str, head: int):
    family, make, *_ = CASES[case]
    architecture = getattr(transformers, CASES[case][head])
    config = make(pad_token_id=PAD, num_labels=LABELS) if HEADS[head] == "sequence_classification" else make()
    torch.manual_seed(0)
    return family, architecture, randomize(architecture(config).eval())


def _run_reference(reference, ids):
    out = reference(input_ids=ids, output_hidden_states=True)
    if hasattr(out, "logits"):
        return out.logits
    return out.last_hidden_state


def _run_ours(model, ids, mask, unpad):
    out = model(ids, mask, unpad=unpad)
    return out.padded() if model.task == "backbone" else out


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_import_matches_and_export_round_trips(case, head, tmp_path):
    family, architecture, reference = _reference(case, head)
    reference.save_pretrained(tmp_path / "theirs")
    ours = lmforge.load_model(tmp_path / "theirs").eval()
    assert (ours.config.family, ours.task) == (family, HEADS[head])

    vocab = reference.config.vocab_size
    seqs = sequences(vocab)
    with torch.no_grad():
        alone = [_run_reference(reference, s[None])[0] for s in seqs]
        if ours.task == "sequence_classification":
            # One row per sequence: each layout must give every sequence its own logits.
            for side in ("right", "left"):
                ids, mask = padded(seqs, side, PAD)
                for unpad in (False, True):
                    assert_close(ours(ids, mask, unpad=unpad), torch.stack(alone), f"{side}, unpad={unpad}")
            # transformers' own right-padded batch pools the last non-pad token too (left padding
            # moves its learned positions, so there the sequences alone are the reference).
            ids, mask = padded(seqs, "right", PAD)
            assert_close(ours(ids, mask), reference(input_ids=ids, attention_mask=mask).logits,
                         "right-padded batch against the reference's batch")
        else:
            check_layouts(lambda ids, mask, unpad: _run_ours(ours, ids, mask, unpad), alone, seqs,
                          f"{case} {ours.task}")

    lmforge.save(ours, tmp_path / "ours", format="hf")
    written = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert written["architectures"] == [architecture.__name__]
    back, info = architecture.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not any(info.values()), info
    theirs = reference.state_dict()
    assert back.state_dict().keys() == theirs.keys()
    for name, tensor in back.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name
    assert back.config.to_diff_dict().get("rope_parameters") == reference.config.to_diff_dict().get("rope_parameters")

    # ... and lmforge reads its own exports (HF and native layout) to the same config and weights.
    lmforge.save(ours, tmp_path / "native")
    for directory in ("ours", "native"):
        again = lmforge.load_model(tmp_path / directory)
        assert (again.config, again.task) == (ours.config, ours.task)
        for name, tensor in again.state_dict().items():
            assert torch.equal(tensor, ours.state_dict()[name]), (directory, name)


def test_published_file_quirks_load(tmp_path):
    """Published files: openai-community/gpt2 stores GPT2LMHeadModel weights without the
    "transformer." prefix, without the tied lm_head and with the old attn.bias buffers; a tied
    LLaMA (3.2) file may store lm_head anyway, which must equal the embedding."""
    from safetensors.torch import save_file

    _, _, gpt2 = _reference("gpt2", 3)
    gpt2.save_pretrained(tmp_path / "gpt2")
    state = {name.removeprefix("transformer."): tensor.contiguous() for name, tensor in gpt2.state_dict().items()
             if name != "lm_head.weight"}
    state.update({f"h.{i}.attn.bias": torch.tril(torch.ones(1, 1, 32, 32)) for i in range(2)})
    save_file(state, tmp_path / "gpt2" / "model.safetensors", metadata={"format": "pt"})
    ours = lmforge.load_model(tmp_path / "gpt2")
    assert ours.task == "causal_lm" and ours.backbone.embeddings.word.weight is ours.lm_head.decoder.weight
    assert torch.equal(ours.lm_head.decoder.weight, gpt2.lm_head.weight)

    torch.manual_seed(0)
    llama = transformers.LlamaForCausalLM(_llama(tie_word_embeddings=True)).eval()
    llama.save_pretrained(tmp_path / "llama")
    state = {name: tensor.clone().contiguous() for name, tensor in llama.state_dict().items()}
    assert "lm_head.weight" in state
    save_file(state, tmp_path / "llama" / "model.safetensors", metadata={"format": "pt"})
    assert lmforge.load_model(tmp_path / "llama").config.tie_word_embeddings
    state["lm_head.weight"] = state["lm_head.weight"] + 1
    save_file(state, tmp_path / "llama" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(lmforge.errors.UserError, match="differs from the weight it is tied to"):
        lmforge.load_model(tmp_path / "llama")


def test_new_classifier_on_a_causal_lm_checkpoint(tmp_path):
    """Fine-tuning starts from a GPT2LMHeadModel file: the backbone loads, the bias-free score
    head starts fresh, and the export is what GPT2ForSequenceClassification loads."""
    _, _, reference = _reference("gpt2", 3)
    reference.save_pretrained(tmp_path / "lm")
    model = lmforge.load_model(tmp_path / "lm", task="sequence_classification", labels=("a", "b"), pad_token_id=PAD)
    assert model.classifier.classifier.bias is None and model.classifier.classifier.weight.shape == (2, 48)
    lmforge.save(model, tmp_path / "cls", format="hf")
    back, info = transformers.GPT2ForSequenceClassification.from_pretrained(tmp_path / "cls", output_loading_info=True)
    assert not any(info.values()), info
    assert back.config.id2label == {0: "a", 1: "b"} and back.config.pad_token_id == PAD
    ids, mask = padded(sequences(101), "right", PAD)
    with torch.no_grad():
        assert_close(model.eval()(ids, mask), back(input_ids=ids, attention_mask=mask).logits, "fresh head", TOL)
