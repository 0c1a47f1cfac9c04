"""T5 (Raffel et al. 2020) from the shared core by configuration and a weight map alone, against
transformers' T5EncoderModel and T5Model: relative position buckets (bidirectional in the
encoder, causal in the decoder, one table in block 0 of each stack, added unscaled to every
layer's scores, none in cross-attention), unscaled scores, RMSNorm, no biases, the v1.1 gated
tanh-gelu feed-forward, and heads x d_kv (4 x 16) wider than d_model (48). Sequences reach past
the exact buckets (distance 8) into the logarithmic ones. Cached decoding equals recomputation."""

import pytest
import torch
import transformers
from parity_helpers import check_layouts, port, randomize, sequences
from seq2seq_helpers import check_cached_decoding, check_seq2seq_layouts

from lmforge.config import ModelConfig
from lmforge.families.weights import Rule, WeightMap, prefixed, qkv_sizes

LENGTHS = (13, 9, 1, 11)


def _attention(ours: str, theirs: str) -> list:
    return [Rule(f"{ours}.sublayer.qkv", tuple(f"{theirs}.{p}" for p in "qkv"), split=qkv_sizes),
            (f"{ours}.sublayer.output", f"{theirs}.o")]


def _stack(stack: str) -> list:
    layer, block = f"{stack}.layers.{{i}}.", f"{stack}.block.{{i}}.layer."
    feed_forward = 2 if stack == "decoder" else 1
    rules = [(f"{stack}_embeddings.word", f"{stack}.embed_tokens"),
             (f"{stack}.position_bias.table", f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias"),
             *_attention(layer + "attention", block + "0.SelfAttention"),
             (layer + "attention.norm", block + "0.layer_norm"),
             (layer + "feed_forward.sublayer.gate", f"{block}{feed_forward}.DenseReluDense.wi_0"),
             (layer + "feed_forward.sublayer.up", f"{block}{feed_forward}.DenseReluDense.wi_1"),
             (layer + "feed_forward.sublayer.down", f"{block}{feed_forward}.DenseReluDense.wo"),
             (layer + "feed_forward.norm", f"{block}{feed_forward}.layer_norm"),
             (f"{stack}.final_norm", f"{stack}.final_layer_norm")]
    if stack == "decoder":
        rules += [*_attention(layer + "cross_attention", block + "1.EncDecAttention"),
                  (layer + "cross_attention.norm", block + "1.layer_norm")]
    return rules


WEIGHTS = WeightMap(prefixed([("shared", "shared"), *_stack("encoder"), *_stack("decoder")], "backbone.", ""))
HF_CONFIG = transformers.T5Config(vocab_size=109, d_model=48, d_kv=16, d_ff=80, num_layers=2, num_decoder_layers=2,
                                  num_heads=4, relative_attention_num_buckets=32, relative_attention_max_distance=20,
                                  dropout_rate=0.0, feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6)


def core_config(hf: transformers.T5Config) -> ModelConfig:
    return ModelConfig(family="test", architecture="encoder_decoder", vocab_size=hf.vocab_size,
                       hidden_size=hf.d_model, num_layers=hf.num_layers, num_decoder_layers=hf.num_decoder_layers,
                       num_heads=hf.num_heads, head_dim=hf.d_kv, intermediate_size=hf.d_ff,
                       positions="relative_buckets", relative_buckets=hf.relative_attention_num_buckets,
                       relative_max_distance=hf.relative_attention_max_distance, type_vocab_size=0,
                       activation="gelu_tanh", feed_forward="gated", norm_placement="pre", norm_type="rmsnorm",
                       norm_eps=hf.layer_norm_epsilon, embedding_norm=False, final_norm=True, bias=False,
                       scale_attention_scores=False, pooler=False, hidden_dropout=0.0, attention_dropout=0.0)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    reference = randomize(transformers.T5Model(HF_CONFIG).eval(), std=0.1)
    return reference, port(reference, core_config(HF_CONFIG), WEIGHTS, "backbone")


def test_encoder_matches_t5_encoder_model(pair):
    reference, ours = pair
    encoder_only = transformers.T5EncoderModel(HF_CONFIG).eval()
    encoder_only.load_state_dict({k: v for k, v in reference.state_dict().items() if not k.startswith("decoder.")})
    seqs = sequences(HF_CONFIG.vocab_size, lengths=LENGTHS)
    with torch.no_grad():
        refs = [encoder_only(input_ids=s[None]).last_hidden_state[0] for s in seqs]
        check_layouts(lambda ids, mask, unpad: ours.backbone.encode(ids, mask, unpad=unpad).padded(), refs, seqs,
                      "T5EncoderModel (bidirectional buckets)")


def test_decoder_matches_t5_model(pair):
    reference, ours = pair
    sources = sequences(HF_CONFIG.vocab_size, lengths=LENGTHS)
    targets = sequences(HF_CONFIG.vocab_size, lengths=(12, 3, 10, 1), seed=1)
    with torch.no_grad():
        refs = [reference(input_ids=s[None], decoder_input_ids=t[None]) for s, t in zip(sources, targets)]
        references = [(r.encoder_last_hidden_state[0], r.last_hidden_state[0]) for r in refs]

        def run(src_ids, src_mask, tgt_ids, tgt_mask, unpad):
            out = ours(src_ids, src_mask, tgt_ids, tgt_mask, unpad=unpad)
            return out.encoder.padded(), out.decoder.padded()

        check_seq2seq_layouts(run, references, sources, targets, "T5Model (causal buckets)")


def test_cache_equals_recomputation():
    """Through a T5 decoder with an LM head: the position bias of each new query is the cached one's."""
    torch.manual_seed(0)
    reference = randomize(transformers.T5ForConditionalGeneration(HF_CONFIG).eval(), std=0.1)
    config = core_config(HF_CONFIG).replace(tie_word_embeddings=False)
    ours = port(reference, config, WeightMap(WEIGHTS.rules + [("lm_head.decoder", "lm_head")]), "seq2seq_lm")
    check_cached_decoding(ours, HF_CONFIG.vocab_size)
