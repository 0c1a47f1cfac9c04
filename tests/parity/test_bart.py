"""BART (Lewis et al. 2020) through the family's own tables (lmforge.families.bart) against
transformers' Bart* classes built from one tiny config with random weights (fp32, CPU): two
post-norm stacks over one shared token table, learned positions starting at row 2 (separate
encoder and decoder tables), ``layernorm_embedding``, erf-gelu, decoder blocks with
cross-attention, the tied LM head and its ``final_logits_bias`` buffer; the classification head
on the decoder state of the final </s> and span QA from the decoder states, both reading the
input shifted right. Every head imports from ``save_pretrained`` files and exports back
bit-identically; cached decoding equals recomputation."""

import json

import pytest
import torch
import transformers
from parity_helpers import assert_close, padded, port, randomize, real_rows, sequences
from seq2seq_helpers import check_cached_decoding, check_seq2seq_layouts

import lmforge
from lmforge.errors import UserError
from lmforge.families.bart import WEIGHTS, config_from_hf

EOS = 2
HF_CONFIG = transformers.BartConfig(vocab_size=107, d_model=48, encoder_layers=2, decoder_layers=2,
                                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=80,
                                    decoder_ffn_dim=80, max_position_embeddings=32, dropout=0.0,
                                    attention_dropout=0.0, activation_dropout=0.0, pad_token_id=1, bos_token_id=0,
                                    eos_token_id=EOS, decoder_start_token_id=2)
LABELLED = {"num_labels": 3, "id2label": {0: "a", 1: "b", 2: "c"}, "label2id": {"a": 0, "b": 1, "c": 2}}


def _randomized(architecture, **changes):
    torch.manual_seed(0)
    config = transformers.BartConfig(**{**HF_CONFIG.to_dict(), **changes})
    reference = randomize(architecture(config).eval())
    if hasattr(reference, "final_logits_bias"):
        reference.final_logits_bias.normal_()  # a buffer: randomize() leaves it at zero
    return reference


@pytest.fixture(scope="module")
def pair():
    reference = _randomized(transformers.BartForConditionalGeneration)
    return reference, port(reference, config_from_hf(HF_CONFIG.to_dict()), WEIGHTS, "seq2seq_lm")


def test_encoder_and_decoder_match_bart(pair):
    reference, ours = pair
    sources = sequences(HF_CONFIG.vocab_size)
    targets = sequences(HF_CONFIG.vocab_size, lengths=(3, 6, 2, 1), seed=1)
    with torch.no_grad():
        refs = [reference(input_ids=s[None], decoder_input_ids=t[None]) for s, t in zip(sources, targets)]
        references = [(r.encoder_last_hidden_state[0], r.logits[0]) for r in refs]

        def run(src_ids, src_mask, tgt_ids, tgt_mask, unpad):
            out = ours.backbone(src_ids, src_mask, tgt_ids, tgt_mask, unpad=unpad)
            return out.encoder.padded(), ours(src_ids, src_mask, tgt_ids, tgt_mask, unpad=unpad)

        worst = check_seq2seq_layouts(run, references, sources, targets, "BartForConditionalGeneration")
        # The decoder's hidden states as BartModel returns them, right-padded batch.
        src_ids, src_mask = padded(sources, "right")
        tgt_ids, tgt_mask = padded(targets, "right")
        theirs = reference.model(input_ids=src_ids, attention_mask=src_mask, decoder_input_ids=tgt_ids,
                                 decoder_attention_mask=tgt_mask).last_hidden_state
        mine = ours.backbone(src_ids, src_mask, tgt_ids, tgt_mask).last_hidden_state
        assert_close(mine[tgt_mask.bool()], theirs[tgt_mask.bool()], "BartModel decoder, right-padded batch")
    print(f"BartForConditionalGeneration encoder states and logits: max abs diff {worst:.2e}")


def test_export_round_trip_is_bit_identical(pair):
    reference, ours = pair
    exported = WEIGHTS.export_tensors(dict(ours.state_dict()), ours.config)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(exported[name], tensor), name


def test_cache_equals_recomputation(pair):
    check_cached_decoding(pair[1], HF_CONFIG.vocab_size)


def _with_end_tokens(seqs):
    """Every input ends in </s> (the token the classifier reads); one holds a second one inside."""
    out = [torch.cat([s, torch.tensor([EOS])]) for s in seqs]
    out[0][2] = EOS
    return out


HEADS = {
    "backbone": transformers.BartModel,
    "seq2seq_lm": transformers.BartForConditionalGeneration,
    "sequence_classification": transformers.BartForSequenceClassification,
    "question_answering": transformers.BartForQuestionAnswering,
}


def _reference_alone(reference, task, seq):
    out = reference(input_ids=seq[None])
    if task == "backbone":
        return {"decoder": out.last_hidden_state[0], "encoder": out.encoder_last_hidden_state[0]}
    if task == "seq2seq_lm":
        return {"logits": out.logits[0]}
    if task == "sequence_classification":
        return {"logits": out.logits[0]}
    return {"start": out.start_logits[0], "end": out.end_logits[0]}


def _ours(model, task, ids, mask, unpad):
    if task == "backbone":
        out = model.backbone.forward_on_shifted_input(ids, mask, unpad=unpad)
        return {"decoder": out.decoder.padded(), "encoder": out.encoder.padded()}
    if task == "seq2seq_lm":
        out = model.backbone.forward_on_shifted_input(ids, mask, unpad=unpad)
        return {"logits": out.decoder.padded(model.lm_head(out.last_hidden_state))}
    if task == "sequence_classification":
        return {"logits": model(ids, mask, unpad=unpad)}
    start, end = model(ids, mask, unpad=unpad)
    return {"start": start, "end": end}


@pytest.mark.parametrize("task", sorted(HEADS))
def test_every_head_imports_matches_and_exports_bit_identically(task, tmp_path):
    architecture = HEADS[task]
    reference = _randomized(architecture, **(LABELLED if task == "sequence_classification" else {}))
    reference.save_pretrained(tmp_path / "theirs")
    ours = lmforge.load_model(tmp_path / "theirs").eval()
    assert (ours.config.family, ours.task) == ("bart", task)

    # With no decoder inputs every BART class decodes the input shifted right after </s>.
    seqs = _with_end_tokens(sequences(HF_CONFIG.vocab_size))
    worst = 0.0
    with torch.no_grad():
        alone = [_reference_alone(reference, task, s) for s in seqs]
        for side in ("right", "left"):
            ids, mask = padded(seqs, side, pad_id=1)
            for unpad in (False, True):
                for name, batch in _ours(ours, task, ids, mask, unpad).items():
                    rows = list(batch) if task == "sequence_classification" else real_rows(batch, mask)
                    for row, (mine, theirs) in enumerate(zip(rows, alone)):
                        worst = max(worst, assert_close(mine, theirs[name], f"{task} {name}, {side}-padded, "
                                                                            f"unpad={unpad}, sequence {row}"))
        if task == "sequence_classification":
            # transformers' own right-padded batch (one </s> per row there: it needs equal counts).
            ids, mask = padded(_with_end_tokens(sequences(HF_CONFIG.vocab_size, seed=5))[1:], "right", pad_id=1)
            worst = max(worst, assert_close(ours(ids, mask), reference(input_ids=ids, attention_mask=mask).logits,
                                            "right-padded batch against the reference's batch"))
    print(f"{architecture.__name__}: max abs diff {worst:.2e}")

    lmforge.save(ours, tmp_path / "ours", format="hf")
    written = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert written["architectures"] == [architecture.__name__]
    back, info = architecture.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not any(info.values()), info
    theirs = reference.state_dict()
    assert back.state_dict().keys() == theirs.keys()
    for name, tensor in back.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name
    lmforge.save(ours, tmp_path / "native")
    for directory in ("ours", "native"):
        again = lmforge.load_model(tmp_path / directory)
        assert (again.config, again.task) == (ours.config, ours.task)
        for name, tensor in again.state_dict().items():
            assert torch.equal(tensor, ours.state_dict()[name]), (directory, name)


def test_classifier_needs_an_end_token_in_every_row():
    model = lmforge.build("bart-tiny", task="sequence_classification", labels=("a", "b"), seed=0).eval()
    ids = torch.tensor([[0, 5, 6, 2], [0, 5, 6, 7]])
    with pytest.raises(UserError, match="sequence 2 of the batch has no end token"):
        model(ids, torch.ones_like(ids))


def test_new_classifier_on_a_generation_checkpoint(tmp_path):
    """Fine-tuning starts from a BartForConditionalGeneration file: the backbone loads, the
    dense + tanh + out_proj head starts fresh (the LM head and its bias are left behind), and
    the export is what BartForSequenceClassification loads."""
    _randomized(transformers.BartForConditionalGeneration).save_pretrained(tmp_path / "lm")
    model = lmforge.load_model(tmp_path / "lm", task="sequence_classification", labels=("x", "y"))
    assert model.classifier.output.weight.shape == (2, 48)
    lmforge.save(model, tmp_path / "cls", format="hf")
    back, info = transformers.BartForSequenceClassification.from_pretrained(tmp_path / "cls",
                                                                             output_loading_info=True)
    assert not any(info.values()), info
    ids, mask = padded(_with_end_tokens(sequences(HF_CONFIG.vocab_size, seed=5))[1:], "right", pad_id=1)
    with torch.no_grad():
        assert_close(model.eval()(ids, mask), back.eval()(input_ids=ids, attention_mask=mask).logits, "fresh head")


def test_scaled_embeddings_match_bart():
    """``scale_embedding`` (token embeddings times sqrt(d_model)) read from config.json."""
    reference = _randomized(transformers.BartForConditionalGeneration, scale_embedding=True)
    config = config_from_hf(reference.config.to_dict())
    assert config.embedding_scale
    ours = port(reference, config, WEIGHTS, "seq2seq_lm")
    sources, targets = sequences(HF_CONFIG.vocab_size), sequences(HF_CONFIG.vocab_size, lengths=(3, 6, 2, 1), seed=1)
    with torch.no_grad():
        for source, target in zip(sources, targets):
            assert_close(ours(source[None], None, target[None]), reference(input_ids=source[None],
                                                                           decoder_input_ids=target[None]).logits,
                         "scaled embeddings")


def test_predict_mask_runs_the_head_on_chosen_decoder_positions_only(pair):
    """Training's path: (M, V) logits of the chosen decoder positions, in row-major order, equal
    the full logits at those positions, padded or unpadded."""
    _, ours = pair
    src_ids, src_mask = padded(sequences(HF_CONFIG.vocab_size), "right")
    tgt_ids, tgt_mask = padded(sequences(HF_CONFIG.vocab_size, lengths=(3, 6, 2, 1), seed=1), "right")
    chosen = tgt_mask.bool() & (torch.rand(tgt_mask.shape, generator=torch.Generator().manual_seed(2)) < 0.7)
    with torch.no_grad():
        full = ours(src_ids, src_mask, tgt_ids, tgt_mask)
        for unpad in (False, True):
            selected = ours(src_ids, src_mask, tgt_ids, tgt_mask, unpad=unpad, predict_mask=chosen)
            assert_close(selected, full[chosen], f"predict_mask, unpad={unpad}")
