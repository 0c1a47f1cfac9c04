"""Backbones: the models that turn token ids into hidden states, composed from the shared
layers by ``ModelConfig.architecture`` (torchtitan's rule: per-family files sit on one core).

* ``Transformer``: one stack. ``encoder``: bidirectional (BERT); ``decoder``: causal, no
  cross-attention (GPT, GPT-2, LLaMA), with a key/value cache for generation.
* ``EncoderDecoder``: two stacks sharing one token table (BART, T5): a bidirectional encoder,
  and a causal decoder whose blocks cross-attend to the encoder output.

Every backbone takes padded ``(B, T)`` batches. With ``unpad=True`` the padding is removed once,
before the embeddings, and the stacks run on real tokens only
(``lmforge.models.layout.JaggedLayout``); outputs equal the padded path's up to float rounding.
With a cache, inputs stay padded (left padding for batched generation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.models.blocks import TransformerStack
from lmforge.models.embeddings import Embeddings
from lmforge.models.heads import Pooler
from lmforge.models.kv_cache import KVCache
from lmforge.models.layers import AttentionInputs
from lmforge.models.layout import JaggedLayout, PaddedLayout
from lmforge.models.positions import RotaryEmbedding


@dataclass
class BackboneOutput:
    last_hidden_state: torch.Tensor  # (B, T, H) padded, or (N, H) when unpadded
    hidden_states: list[torch.Tensor] | None  # embeddings output, then each layer's output
    pooled: torch.Tensor | None  # (B, H) pooler output (BERT) or None
    layout: PaddedLayout | JaggedLayout
    input_ids: torch.Tensor  # the ids in the layout's form ((B, T) or (N,)), for "eos" pooling

    def padded(self, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """A hidden tensor in (B, T, H) form whichever layout ran (zeros at padding)."""
        return self.layout.to_padded(self.last_hidden_state if hidden is None else hidden)

    def pool(self, pooling: str, eos_token_id: int | None = None) -> torch.Tensor:
        """(B, H): the hidden state of each sequence's first, last real or final EOS token."""
        return self.layout.pool(self.last_hidden_state, pooling, self.input_ids, eos_token_id)


def lay_out(input_ids, attention_mask, token_type_ids, unpad: bool, past_length: int = 0, document_ids=None):
    """The layout of a padded batch, and its ids in that layout's form. ``document_ids`` (B, T)
    splits each row into the documents packed in it (unpadded layout only)."""
    if document_ids is not None and not unpad:
        raise UserError("attention within packed documents (document_ids) needs the unpadded layout (unpad=True)")
    if unpad:
        if past_length:
            raise UserError("cached decoding runs on padded batches (unpad=False)")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        layout = (JaggedLayout.from_mask(attention_mask) if document_ids is None
                  else JaggedLayout.from_documents(attention_mask, document_ids))
        token_type_ids = None if token_type_ids is None else layout.unpad(token_type_ids)
        return layout, layout.unpad(input_ids), token_type_ids
    return PaddedLayout.from_inputs(input_ids, attention_mask, past_length), input_ids, token_type_ids


class _Stacked(nn.Module):
    """What both backbones share: rotary tables and running one stack over a layout."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.rotary = RotaryEmbedding(config) if config.positions == "rotary" else None

    def _run(self, embeddings: Embeddings, stack: TransformerStack, input_ids, attention_mask, token_type_ids,
             output_hidden_states: bool, unpad: bool, cache: KVCache | None = None, memory=None, document_ids=None):
        past = cache.past_length if cache is not None else 0
        layout, ids, types = lay_out(input_ids, attention_mask, token_type_ids, unpad, past, document_ids)
        position_ids = layout.position_ids(input_ids.device)
        x = embeddings(ids, position_ids, types)
        inputs = AttentionInputs(layout)
        if self.rotary is not None:
            inputs.rotary = self.rotary(position_ids, x.dtype)
        if memory is not None:
            inputs.memory, inputs.memory_layout = memory.last_hidden_state, memory.layout
        x, hidden_states = stack(x, inputs, cache, output_hidden_states)
        return x, hidden_states, layout, ids


class Transformer(_Stacked):
    """Embeddings, one stack (bidirectional ``encoder`` or causal ``decoder``) and an optional
    pooler (BERT's dense + tanh over the pooled token)."""

    def __init__(self, config: ModelConfig, with_pooler: bool = True) -> None:
        super().__init__(config)
        self.embeddings = Embeddings(config)
        stack = TransformerStack(config, config.num_layers, causal=config.architecture == "decoder")
        # Named by role, so weight names read "encoder.layers.0" or "decoder.layers.0".
        self.add_module("decoder" if stack.causal else "encoder", stack)
        self.pooler = Pooler(config) if config.pooler and with_pooler else None

    @property
    def stack(self) -> TransformerStack:
        return self.decoder if self.config.architecture == "decoder" else self.encoder

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states: bool = False,
                unpad: bool = False, cache: KVCache | None = None, document_ids=None) -> BackboneOutput:
        """``document_ids`` (B, T): attention and positions stay inside each packed document."""
        x, hidden_states, layout, ids = self._run(self.embeddings, self.stack, input_ids, attention_mask,
                                                  token_type_ids, output_hidden_states, unpad, cache,
                                                  document_ids=document_ids)
        out = BackboneOutput(x, hidden_states, None, layout, ids)
        if self.pooler is not None:
            out.pooled = self.pooler(out.pool(self.config.pooling, self.config.eos_token_id))
        return out

    def new_cache(self) -> KVCache:
        return KVCache.empty(len(self.stack.schedule))

    def layer_groups(self) -> list[nn.Module]:
        """Bottom to top: embeddings, then each distinct layer (ULMFiT's discriminative learning
        rates); a pre-norm stack's final norm (GPT-2 ``ln_f``) goes with the top layer."""
        layers = list(self.stack.distinct_layers())
        if self.stack.final_norm is not None:
            layers[-1] = nn.ModuleList([layers[-1], self.stack.final_norm])
        return [self.embeddings, *layers]


@dataclass
class EncoderDecoderOutput:
    decoder: BackboneOutput
    encoder: BackboneOutput

    @property
    def last_hidden_state(self) -> torch.Tensor:
        return self.decoder.last_hidden_state


class EncoderDecoder(_Stacked):
    """A bidirectional encoder and a causal, cross-attending decoder over one shared token
    table; each stack has its own positions and embedding norm (BART) or none (T5)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.hidden_size,
                                   padding_idx=config.pad_token_id if config.embedding_pad_row else None)
        self.encoder_embeddings = Embeddings(config, word=self.shared)
        self.decoder_embeddings = Embeddings(config, word=self.shared)
        self.encoder = TransformerStack(config, config.num_layers, causal=False)
        self.decoder = TransformerStack(config, config.num_decoder_layers, causal=True, cross_attention=True)

    def encode(self, input_ids, attention_mask=None, output_hidden_states: bool = False,
               unpad: bool = False) -> BackboneOutput:
        x, hidden_states, layout, ids = self._run(self.encoder_embeddings, self.encoder, input_ids, attention_mask,
                                                  None, output_hidden_states, unpad)
        return BackboneOutput(x, hidden_states, None, layout, ids)

    def decode(self, decoder_input_ids, memory: BackboneOutput, decoder_attention_mask=None,
               output_hidden_states: bool = False, unpad: bool = False, cache: KVCache | None = None) -> BackboneOutput:
        """The decoder over ``decoder_input_ids`` attending to ``memory`` (an ``encode`` output)."""
        x, hidden_states, layout, ids = self._run(self.decoder_embeddings, self.decoder, decoder_input_ids,
                                                  decoder_attention_mask, None, output_hidden_states, unpad,
                                                  cache, memory)
        return BackboneOutput(x, hidden_states, None, layout, ids)

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                output_hidden_states: bool = False, unpad: bool = False, cache: KVCache | None = None,
                encoder_output: BackboneOutput | None = None) -> EncoderDecoderOutput:
        """``encoder_output`` reuses an earlier ``encode`` (cached decoding encodes once)."""
        if encoder_output is None:
            encoder_output = self.encode(input_ids, attention_mask, output_hidden_states, unpad)
        decoder_output = self.decode(decoder_input_ids, encoder_output, decoder_attention_mask,
                                     output_hidden_states, unpad, cache)
        return EncoderDecoderOutput(decoder_output, encoder_output)

    def new_cache(self) -> KVCache:
        return KVCache.empty(len(self.decoder.schedule), cross_attention=True)

    def layer_groups(self) -> list[nn.Module]:
        return [self.shared, *self.encoder.distinct_layers(), *self.decoder.distinct_layers()]


def build_backbone(config: ModelConfig, with_pooler: bool = True) -> nn.Module:
    if config.architecture == "encoder_decoder":
        return EncoderDecoder(config)
    return Transformer(config, with_pooler=with_pooler)
