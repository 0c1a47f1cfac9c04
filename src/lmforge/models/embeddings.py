"""Input embeddings: token (optionally scaled) + learned position + segment, then norm and
dropout (BERT §3.2, transformers' BertEmbeddings; BART's scaled tokens and
``layernorm_embedding``; GPT-2 without segments or norm; LLaMA and T5 tokens only, their
positions entering in attention). ALBERT's factorised embedding (Lan et al. 2020 §3.1) makes
the tables and norm E wide and ends with a linear E -> H (transformers'
``embedding_hidden_mapping_in``). Token-wise, so it embeds padded ``(B, T)`` ids and unpadded
``(N,)`` ids alike; the layout supplies the position ids."""

from __future__ import annotations

import math

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.models.layers import Linear, make_norm
from lmforge.models.positions import LearnedPositions


class Embeddings(nn.Module):
    def __init__(self, config: ModelConfig, word: nn.Embedding | None = None) -> None:
        super().__init__()
        # The padding row gets no gradient, as in the reference (padding_idx). An
        # encoder-decoder passes the one table both of its stacks share.
        width = config.embedding_width
        self.word = word if word is not None else nn.Embedding(
            config.vocab_size, width, padding_idx=config.pad_token_id if config.embedding_pad_row else None)
        self.scale = math.sqrt(config.hidden_size) if config.embedding_scale else None
        self.position = LearnedPositions(config, width) if config.positions == "learned" else None
        self.token_type = (
            nn.Embedding(config.type_vocab_size, width) if config.type_vocab_size else None
        )
        self.norm = make_norm(config, width) if config.embedding_norm else None
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.projection = Linear(width, config.hidden_size) if config.embedding_size else None

    def forward(self, input_ids, position_ids, token_type_ids=None) -> torch.Tensor:
        x = self.word(input_ids)
        if self.scale is not None:
            x = x * self.scale
        if self.position is not None:
            x = x + self.position(position_ids)
        if self.token_type is not None:
            if token_type_ids is None:
                # Absent segment ids mean segment 0, as in the reference.
                x = x + self.token_type.weight[0]
            else:
                x = x + self.token_type(token_type_ids)
        if self.norm is not None:
            x = self.norm(x)
        x = self.dropout(x)
        return x if self.projection is None else self.projection(x)
