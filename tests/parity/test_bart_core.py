"""BART (Lewis et al. 2020) from the shared core by configuration and a weight map alone, against
transformers' BartModel / BartForConditionalGeneration: two post-norm stacks over one shared
token table, learned positions starting at row 2 (separate encoder and decoder tables),
``layernorm_embedding``, erf-gelu, decoder blocks with cross-attention, the tied LM head and its
``final_logits_bias`` buffer. Cached decoding equals recomputation."""

import pytest
import torch
import transformers
from parity_helpers import assert_close, padded, port, randomize, sequences
from seq2seq_helpers import check_cached_decoding, check_seq2seq_layouts

from lmforge.config import ModelConfig
from lmforge.families.weights import Rule, WeightMap, prefixed, qkv_sizes


def _attention(ours: str, theirs: str) -> list:
    return [Rule(f"{ours}.sublayer.qkv", tuple(f"{theirs}.{p}_proj" for p in "qkv"), split=qkv_sizes),
            (f"{ours}.sublayer.output", f"{theirs}.out_proj")]


def _stack(stack: str) -> list:
    layer, theirs = f"{stack}.layers.{{i}}.", f"{stack}.layers.{{i}}."
    rules = [(f"{stack}_embeddings.word", f"{stack}.embed_tokens"),
             (f"{stack}_embeddings.position", f"{stack}.embed_positions"),
             (f"{stack}_embeddings.norm", f"{stack}.layernorm_embedding"),
             *_attention(layer + "attention", theirs + "self_attn"),
             (layer + "attention.norm", theirs + "self_attn_layer_norm"),
             (layer + "feed_forward.sublayer.up", theirs + "fc1"),
             (layer + "feed_forward.sublayer.down", theirs + "fc2"),
             (layer + "feed_forward.norm", theirs + "final_layer_norm")]
    if stack == "decoder":
        rules += [*_attention(layer + "cross_attention", theirs + "encoder_attn"),
                  (layer + "cross_attention.norm", theirs + "encoder_attn_layer_norm")]
    return rules


WEIGHTS = WeightMap(prefixed([("shared", "shared"), *_stack("encoder"), *_stack("decoder")], "backbone.", "model.")
                    + [("lm_head.decoder", "lm_head"), ("lm_head.final_logits_bias", "final_logits_bias")])

HF_CONFIG = transformers.BartConfig(vocab_size=107, d_model=48, encoder_layers=2, decoder_layers=2,
                                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=80,
                                    decoder_ffn_dim=80, max_position_embeddings=32, dropout=0.0,
                                    attention_dropout=0.0, activation_dropout=0.0, pad_token_id=1, bos_token_id=0,
                                    eos_token_id=2, decoder_start_token_id=2)


def core_config(hf: transformers.BartConfig) -> ModelConfig:
    return ModelConfig(family="test", architecture="encoder_decoder", vocab_size=hf.vocab_size,
                       hidden_size=hf.d_model, num_layers=hf.encoder_layers, num_decoder_layers=hf.decoder_layers,
                       num_heads=hf.encoder_attention_heads, intermediate_size=hf.encoder_ffn_dim,
                       max_positions=hf.max_position_embeddings, position_offset=2, type_vocab_size=0,
                       activation="gelu", norm_eps=1e-5, embedding_norm=True, output_bias=True, pooler=False,
                       pad_token_id=hf.pad_token_id, eos_token_id=hf.eos_token_id, hidden_dropout=0.0,
                       attention_dropout=0.0)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    reference = randomize(transformers.BartForConditionalGeneration(HF_CONFIG).eval())
    reference.final_logits_bias.normal_()  # a buffer: randomize() leaves it at zero
    return reference, port(reference, core_config(HF_CONFIG), WEIGHTS, "seq2seq_lm")


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

        check_seq2seq_layouts(run, references, sources, targets, "BartForConditionalGeneration")
        # The decoder's hidden states as BartModel returns them, right-padded batch.
        src_ids, src_mask = padded(sources, "right")
        tgt_ids, tgt_mask = padded(targets, "right")
        theirs = reference.model(input_ids=src_ids, attention_mask=src_mask, decoder_input_ids=tgt_ids,
                                 decoder_attention_mask=tgt_mask).last_hidden_state
        mine = ours.backbone(src_ids, src_mask, tgt_ids, tgt_mask).last_hidden_state
        assert_close(mine[tgt_mask.bool()], theirs[tgt_mask.bool()], "BartModel decoder, right-padded batch")


def test_export_round_trip_is_bit_identical(pair):
    reference, ours = pair
    exported = WEIGHTS.export_tensors(dict(ours.state_dict()), ours.config)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(exported[name], tensor), name


def test_cache_equals_recomputation(pair):
    check_cached_decoding(pair[1], HF_CONFIG.vocab_size)
