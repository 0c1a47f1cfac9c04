"""BART's machine translation (Lewis et al. 2020, section 3.4 "Machine Translation"): BART's
encoder token embeddings are replaced by a new, randomly initialised source encoder with its
own vocabulary (a few bidirectional transformer layers), trained end to end "to map foreign
words into an input that BART can de-noise to English". Two stages: first only the new
encoder, BART's positional embeddings and the self-attention input projection of BART's first
encoder layer are trained, everything else frozen; then all parameters for a few iterations.

Here the new encoder is an lmforge ``Transformer`` (BART's switches at BART's width, learned
positions of its own); its output takes the place of the token embeddings inside BART's encoder
embedding (scaled when BART scales, plus BART's positions, ``layernorm_embedding``, dropout).
The paper's stage-1 set is, in lmforge names: ``backbone.source_encoder.*``,
``backbone.encoder_embeddings.position.*`` (T5 has no such table: its encoder's relative
position table instead) and ``backbone.encoder.layers.0.attention.sublayer.qkv.*`` (q, k and v
are one fused projection).

A checkpoint with a source encoder is lmforge's own layout (transformers has no such class)
plus ``source_encoder/`` holding the encoder's settings and the source tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.models.backbones import BackboneOutput, EncoderDecoder, Transformer
from lmforge.models.layers import AttentionInputs, init_weights

SOURCE_DIR = "source_encoder"
SETTINGS_FILE = "source_encoder.json"
STAGE1_PREFIXES = ("backbone.source_encoder.", "backbone.encoder_embeddings.position.",
                   "backbone.encoder.position_bias.", "backbone.encoder.layers.0.attention.sublayer.qkv.")


def source_config(config: ModelConfig, layers: int, vocab_size: int, pad_id: int | None) -> ModelConfig:
    """The new encoder's config: BART's switches and width, its own depth and vocabulary."""
    return config.replace(architecture="encoder", num_layers=layers, num_decoder_layers=layers,
                          vocab_size=vocab_size, pad_token_id=pad_id, pooler=False, labels=())


class SourceEncodedBackbone(EncoderDecoder):
    """An encoder-decoder whose encoder reads the new source encoder's output in place of its
    token embeddings; decoding (and generation's cached decoding) is unchanged."""

    def __init__(self, config: ModelConfig, source: ModelConfig) -> None:
        super().__init__(config)
        self.source_config = source
        self.source_encoder = Transformer(source, with_pooler=False)
        self.source_tokenizer = None  # the new vocabulary's tokenizer, saved beside the model

    def encode(self, input_ids, attention_mask=None, output_hidden_states: bool = False,
               unpad: bool = False) -> BackboneOutput:
        source = self.source_encoder(input_ids, attention_mask, unpad=unpad)
        layout, embeddings = source.layout, self.encoder_embeddings
        x = source.last_hidden_state
        if embeddings.scale is not None:
            x = x * embeddings.scale
        position_ids = layout.position_ids(input_ids.device)
        if embeddings.position is not None:
            x = x + embeddings.position(position_ids)
        if embeddings.norm is not None:
            x = embeddings.norm(x)
        x = embeddings.dropout(x)
        inputs = AttentionInputs(layout)
        if self.rotary is not None:
            inputs.rotary = self.rotary(position_ids, x.dtype)
        x, hidden_states = self.encoder(x, inputs, None, output_hidden_states)
        return BackboneOutput(x, hidden_states, None, layout, source.input_ids)

    def layer_groups(self) -> list[nn.Module]:
        return [self.source_encoder, *super().layer_groups()]


def with_source_encoder(model: nn.Module, layers: int, source_tokenizer, seed: int) -> nn.Module:
    """A copy of the seq2seq ``model`` (BART) with a new source encoder of ``layers`` layers over
    ``source_tokenizer``'s vocabulary, initialised as lmforge initialises any model."""
    from lmforge.models.build import ForSeq2SeqLM

    if model.task != "seq2seq_lm":
        raise UserError(f"a new source encoder needs an encoder-decoder with a language-model head, not a {model.task}")
    if layers < 1:
        raise UserError(f"the new source encoder needs at least one layer, got {layers}")
    config = model.config
    torch.manual_seed(seed)
    backbone = SourceEncodedBackbone(config, source_config(config, layers, source_tokenizer.vocab_size,
                                                           source_tokenizer.pad_id))
    translation = ForSeq2SeqLM(config, backbone)
    backbone.source_encoder.apply(lambda module: init_weights(module, config.initializer_range))
    word = backbone.source_encoder.embeddings.word
    if word.padding_idx is not None:
        with torch.no_grad():
            word.weight[word.padding_idx].zero_()
    missing, unexpected = translation.load_state_dict(model.state_dict(), strict=False)
    wrong = [name for name in [*missing, *unexpected] if not name.startswith("backbone.source_encoder.")]
    if wrong:
        raise UserError(f"the checkpoint does not fit an encoder-decoder with a new source encoder ({wrong[0]})")
    backbone.source_tokenizer = source_tokenizer
    return translation.float()


def in_stage1(name: str) -> bool:
    """Whether the paper's first stage trains the parameter called ``name``."""
    return name.startswith(STAGE1_PREFIXES)


class TwoStages:
    """The Trainer's ``on_epoch``: epochs before ``stage1_epochs`` train the stage-1 set only,
    later ones everything. Frozen parameters get no gradient, so AdamW skips them."""

    def __init__(self, model: nn.Module, stage1_epochs: int) -> None:
        self.model, self.stage1_epochs = model, stage1_epochs

    def on_epoch(self, epoch: int) -> None:
        stage1 = epoch < self.stage1_epochs
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(in_stage1(name) or not stage1)


# ---------------------------------------------------------------------------------------
# Saving and loading


def save_source_side(model: nn.Module, directory: Path) -> None:
    """Beside lmforge's own layout of the whole model: the new encoder's settings and tokenizer."""
    backbone = model.backbone
    if not isinstance(backbone, SourceEncodedBackbone):
        return
    side = Path(directory) / SOURCE_DIR
    side.mkdir(parents=True, exist_ok=True)
    source = backbone.source_config
    settings = {"layers": source.num_layers, "vocab_size": source.vocab_size, "pad_token_id": source.pad_token_id}
    (side / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    if backbone.source_tokenizer is not None:
        backbone.source_tokenizer.save(side)


def has_source_encoder(directory: str | Path) -> bool:
    return (Path(directory) / SOURCE_DIR / SETTINGS_FILE).is_file()


def load_with_source_encoder(directory: str | Path) -> nn.Module:
    """A model ``save_source_side`` wrote (strictly: every tensor present and used)."""
    from safetensors.torch import load_file

    from lmforge.interop.native import is_native, read_native_manifest
    from lmforge.interop.state import copy_into
    from lmforge.models.build import ForSeq2SeqLM
    from lmforge.tokenization import Tokenizer

    directory = Path(directory)
    if not is_native(directory):
        raise UserError(f"{directory}: a model with a new source encoder is stored in lmforge's layout (lmforge.json)")
    config, _ = read_native_manifest(directory)
    settings = json.loads((directory / SOURCE_DIR / SETTINGS_FILE).read_text())
    backbone = SourceEncodedBackbone(config, source_config(config, settings["layers"], settings["vocab_size"],
                                                          settings["pad_token_id"]))
    model = ForSeq2SeqLM(config, backbone)
    copy_into(model, load_file(directory / "model.safetensors"))
    backbone.source_tokenizer = Tokenizer.from_dir(directory / SOURCE_DIR)
    return model
