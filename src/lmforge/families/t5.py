"""T5 (Raffel et al., 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer"), T5 v1.1 and FLAN-T5 (Chung et al., 2022).

Reference code: google-research/text-to-text-transfer-transformer with mesh-tensorflow, and
transformers' modeling_t5.py, whose weight names and config.json fields this file translates.
T5 is the shared encoder-decoder with pre-norm blocks, RMSNorm, no biases, unscaled attention
scores and relative position buckets (bidirectional in the encoder, causal in the decoder; one
table in block 0 of each stack, none in cross-attention), each stack ending in a final norm.
v1.0: relu feed-forward and an LM head tied to the token table that reads the decoder output
times d_model^-0.5. v1.1 / FLAN-T5: gated tanh-gelu feed-forward, an untied head, no rescale.
T5EncoderModel is the same encoder alone: a config with ``architecture="encoder"``.

transformers 5 writes ``tie_word_embeddings: true`` for every T5 and keeps the v1.0/v1.1
difference in ``scale_decoder_outputs``; older config.json files say ``tie_word_embeddings:
false`` for v1.1. Both spellings read to the same config here.
"""

from __future__ import annotations

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.families import Family
from lmforge.families.hf_config import (
    ACTIVATION_NAMES,
    activation_from_hf,
    architecture_for,
    labels_from_hf,
    labels_to_hf,
)
from lmforge.families.weights import Rule, WeightMap, prefixed, qkv_sizes


def t5_config(num_layers: int, hidden_size: int, num_heads: int, intermediate_size: int, head_dim: int = 64,
              vocab_size: int = 32128, gated: bool = False, **kw) -> ModelConfig:
    """``gated``: T5 v1.1 / FLAN-T5 (gated tanh-gelu, untied head, no rescale); else v1.0."""
    version = ({"activation": "gelu_tanh", "feed_forward": "gated", "tie_word_embeddings": False,
                "scale_output_by_inverse_sqrt_width": False} if gated else
               {"activation": "relu", "feed_forward": "plain", "tie_word_embeddings": True,
                "scale_output_by_inverse_sqrt_width": True})
    return ModelConfig(**{
        "family": "t5", "architecture": "encoder_decoder", "vocab_size": vocab_size, "hidden_size": hidden_size,
        "num_layers": num_layers, "num_heads": num_heads, "head_dim": head_dim,
        "intermediate_size": intermediate_size, "positions": "relative_buckets", "relative_buckets": 32,
        "relative_max_distance": 128, "max_positions": 512, "type_vocab_size": 0, "norm_placement": "pre",
        "norm_type": "rmsnorm", "norm_eps": 1e-6, "embedding_norm": False, "final_norm": True, "bias": False,
        "scale_attention_scores": False, "pooler": False, "pooling": "eos", "hidden_dropout": 0.1,
        "attention_dropout": 0.1, "classifier_dropout": 0.0, "pad_token_id": 0, "embedding_pad_row": False,
        "eos_token_id": 1, "decoder_start_token_id": 0, "initializer_range": 1.0, "initializer": "fan_in", **version, **kw})


PRESETS = {
    # A small v1.1-style model for tests and the tiny recipes (not a published checkpoint).
    "t5-tiny": t5_config(2, 128, 4, 512, head_dim=32, gated=True),
    "t5-small": t5_config(6, 512, 8, 2048),
    "t5-base": t5_config(12, 768, 12, 3072),
    "t5-large": t5_config(24, 1024, 16, 4096),
    "google/t5-v1_1-small": t5_config(8, 512, 6, 1024, gated=True),
    "google/t5-v1_1-base": t5_config(12, 768, 12, 2048, gated=True),
    "google/flan-t5-small": t5_config(8, 512, 6, 1024, gated=True),
}


def _feed_forward_from_hf(name: str) -> dict:
    """``feed_forward_proj``: "relu", "gated-gelu", ... as transformers' T5Config splits it."""
    parts = name.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise UserError(f"T5 config.json feed_forward_proj {name!r} is not supported")
    # transformers reads "gated-gelu" as the tanh approximation (mesh-tensorflow's gelu).
    activation = "gelu_new" if name == "gated-gelu" else parts[-1]
    return {"feed_forward": "gated" if len(parts) == 2 else "plain",
            "activation": activation_from_hf(activation, "feed_forward_proj")}


def _feed_forward_to_hf(config: ModelConfig) -> str:
    activation = ACTIVATION_NAMES[config.activation]
    if config.feed_forward == "plain":
        return activation
    if config.activation == "gelu":  # transformers reads "gated-gelu" as the tanh form
        raise UserError("a gated erf-gelu T5 feed-forward has no config.json spelling (gated-gelu is tanh-gelu)")
    return "gated-gelu" if config.activation == "gelu_tanh" else f"gated-{activation}"


def config_from_hf(hf: dict) -> ModelConfig:
    # v1.0 ties and rescales, v1.1 does neither: one switch in either spelling (see the docstring).
    if "scale_decoder_outputs" in hf:
        tied = bool(hf["scale_decoder_outputs"])
    else:
        tied = hf.get("tie_word_embeddings", True) is not False
    num_layers = hf.get("num_layers", 6)
    dropout = hf.get("dropout_rate", 0.1)
    encoder_only = (hf.get("architectures") or [""])[0] == ENCODER_ONLY
    return t5_config(
        num_layers, hf.get("d_model", 512), hf.get("num_heads", 8), hf.get("d_ff", 2048),
        head_dim=hf.get("d_kv", 64), vocab_size=hf.get("vocab_size", 32128),
        **_feed_forward_from_hf(hf.get("feed_forward_proj", "relu")),
        num_decoder_layers=hf.get("num_decoder_layers") or num_layers,
        relative_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_max_distance=hf.get("relative_attention_max_distance", 128),
        max_positions=hf.get("n_positions", 512),
        norm_eps=hf.get("layer_norm_epsilon", 1e-6),
        hidden_dropout=dropout,
        attention_dropout=dropout,
        classifier_dropout=hf.get("classifier_dropout", 0.0),
        initializer_range=hf.get("initializer_factor", 1.0), initializer="fan_in",
        tie_word_embeddings=tied,
        scale_output_by_inverse_sqrt_width=tied,
        pad_token_id=hf.get("pad_token_id", 0),
        eos_token_id=_first(hf.get("eos_token_id", 1)),
        decoder_start_token_id=hf.get("decoder_start_token_id", 0),
        labels=labels_from_hf(hf),
        **({"architecture": "encoder"} if encoder_only else {}),
    )


def _first(value):
    return value[0] if isinstance(value, list) else value


def config_to_hf(config: ModelConfig, task: str) -> dict:
    if config.tie_word_embeddings != config.scale_output_by_inverse_sqrt_width:
        raise UserError("a T5 either ties its output and rescales it (v1.0) or does neither (v1.1); "
                        "this config mixes the two and has no Hugging Face form")
    if config.architecture == "encoder":
        if task != "backbone":
            raise UserError(f"an encoder-only T5 {task} model has no Hugging Face architecture (only "
                            f"{ENCODER_ONLY}); save it in lmforge's format instead")
        architecture = ENCODER_ONLY
    else:
        architecture = architecture_for(ARCHITECTURES, task, "T5")
    return {
        "architectures": [architecture],
        "model_type": "t5",
        "vocab_size": config.vocab_size,
        "d_model": config.hidden_size,
        "d_kv": config.head_dim,
        "d_ff": config.intermediate_size,
        "num_layers": config.num_layers,
        "num_decoder_layers": config.num_decoder_layers,
        "num_heads": config.num_heads,
        "relative_attention_num_buckets": config.relative_buckets,
        "relative_attention_max_distance": config.relative_max_distance,
        "n_positions": config.max_positions,
        "dropout_rate": config.hidden_dropout,
        "classifier_dropout": config.classifier_dropout,
        "layer_norm_epsilon": config.norm_eps,
        "initializer_factor": config.initializer_range,
        "feed_forward_proj": _feed_forward_to_hf(config),
        "tie_word_embeddings": config.tie_word_embeddings,
        "scale_decoder_outputs": config.scale_output_by_inverse_sqrt_width,
        "is_encoder_decoder": True,
        "pad_token_id": config.pad_token_id,
        "eos_token_id": config.eos_token_id,
        "decoder_start_token_id": config.decoder_start_token_id,
        **labels_to_hf(config),
    }


ARCHITECTURES = {
    "backbone": "T5Model",
    "seq2seq_lm": "T5ForConditionalGeneration",
}
ENCODER_ONLY = "T5EncoderModel"  # the backbone of an architecture="encoder" config


def _attention(ours: str, theirs: str) -> list:
    return [Rule(f"{ours}.sublayer.qkv", tuple(f"{theirs}.{p}" for p in "qkv"), split=qkv_sizes),
            (f"{ours}.sublayer.output", f"{theirs}.o")]


def _gated(config: ModelConfig) -> bool:
    return config.feed_forward == "gated"


def _plain(config: ModelConfig) -> bool:
    return config.feed_forward == "plain"


def _two_stacks(config: ModelConfig) -> bool:
    return config.architecture == "encoder_decoder"


def _encoder_only(config: ModelConfig) -> bool:
    return config.architecture == "encoder"


def _stack(stack: str) -> list:
    layer, block = f"{stack}.layers.{{i}}.", f"{stack}.block.{{i}}.layer."
    feed_forward = f"{block}{2 if stack == 'decoder' else 1}."
    rules = [(f"{stack}_embeddings.word", f"{stack}.embed_tokens"),  # tied to shared
             (f"{stack}.position_bias.table", f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias"),
             *_attention(layer + "attention", block + "0.SelfAttention"),
             (layer + "attention.norm", block + "0.layer_norm"),
             # v1.1's gated form: gate = wi_0 (through the activation), up = wi_1; v1.0's one wi.
             (layer + "feed_forward.sublayer.gate", feed_forward + "DenseReluDense.wi_0"),
             Rule(layer + "feed_forward.sublayer.up", feed_forward + "DenseReluDense.wi_1", applies=_gated),
             Rule(layer + "feed_forward.sublayer.up", feed_forward + "DenseReluDense.wi", applies=_plain),
             (layer + "feed_forward.sublayer.down", feed_forward + "DenseReluDense.wo"),
             (layer + "feed_forward.norm", feed_forward + "layer_norm"),
             (f"{stack}.final_norm", f"{stack}.final_layer_norm")]
    if stack == "decoder":
        rules += [*_attention(layer + "cross_attention", block + "1.EncDecAttention"),
                  (layer + "cross_attention.norm", block + "1.layer_norm")]
    return rules


BACKBONE_RULES = [Rule("shared", "shared", applies=_two_stacks),
                  Rule("embeddings.word", "shared", applies=_encoder_only),  # T5EncoderModel
                  *_stack("encoder"), *_stack("decoder")]
WEIGHTS = WeightMap(prefixed(BACKBONE_RULES, "backbone.", "") + [("lm_head.decoder", "lm_head")])

FAMILY = Family(
    name="t5",
    presets=PRESETS,
    hf_model_types=("t5",),
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    weights=WEIGHTS,
    hf_architectures=ARCHITECTURES,
    hf_backbone_prefix="",
    # transformers' T5Model keeps an unused relative table in decoder block 0's cross-attention
    # only in old saves; it holds nothing the model reads.
    hf_ignored=(r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$",),
    hf_more_architectures={ENCODER_ONLY: "backbone"},
    # Old T5EncoderModel saves keep the tied copy, which an encoder-only model has no name for.
    hf_tied_aliases={"encoder.embed_tokens.weight": "shared.weight"},
    notes={
        "t5-tiny": "tiny v1.1-style model for tests and recipes",
        "t5-small": "Raffel et al. 2020 (v1.0)",
        "t5-base": "Raffel et al. 2020 (v1.0)",
        "t5-large": "Raffel et al. 2020 (v1.0)",
        "google/t5-v1_1-small": "T5 v1.1 (gated-gelu, untied)",
        "google/t5-v1_1-base": "T5 v1.1 (gated-gelu, untied)",
        "google/flan-t5-small": "Chung et al. 2022",
    },
)
