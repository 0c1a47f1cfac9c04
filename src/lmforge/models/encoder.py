"""Encoder models: the bidirectional backbone and its task heads (BERT, Devlin et al. 2019;
transformers' BertModel / BertFor* classes). Families that are "an encoder with these
switches" (BERT today; RoBERTa, ALBERT later) are built from these classes by configuration.

Every model takes a padded batch (``input_ids``, ``attention_mask``, ``token_type_ids``; all
``(B, T)``). With ``unpad=True`` the padding is removed once, before the embeddings, and the
whole stack runs on the real tokens only (``lmforge.models.layout.JaggedLayout``); outputs
are identical to the padded path up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.models.embeddings import Embeddings
from lmforge.models.heads import LinearClassifier, MaskedLMHead, PairHead, Pooler
from lmforge.models.layers import Linear, TransformerStack, init_weights
from lmforge.models.layout import JaggedLayout, PaddedLayout


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor  # (B, T, H) padded, or (N, H) when unpadded
    hidden_states: list[torch.Tensor] | None  # embeddings output, then each layer's output
    pooled: torch.Tensor | None  # (B, H) pooler output over the first token
    layout: PaddedLayout | JaggedLayout

    def padded(self, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """A hidden tensor in (B, T, H) form whichever layout ran (zeros at padding)."""
        return self.layout.to_padded(self.last_hidden_state if hidden is None else hidden)


class EncoderModel(nn.Module):
    """Embeddings, a bidirectional transformer stack and an optional pooler."""

    def __init__(self, config: ModelConfig, with_pooler: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = TransformerStack(config, causal=config.causal)
        self.pooler = Pooler(config) if config.pooler and with_pooler else None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        unpad: bool = False,
    ) -> EncoderOutput:
        if unpad:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            layout = JaggedLayout.from_mask(attention_mask)
            input_ids = layout.unpad(input_ids)  # (N,)
            token_type_ids = None if token_type_ids is None else layout.unpad(token_type_ids)
        else:
            layout = PaddedLayout.from_inputs(input_ids, attention_mask)
        position_ids = layout.position_ids(input_ids.device)
        x = self.embeddings(input_ids, position_ids, token_type_ids)
        x, hidden_states = self.encoder(x, layout, output_hidden_states=output_hidden_states)
        pooled = self.pooler(layout.first_tokens(x)) if self.pooler is not None else None
        return EncoderOutput(x, hidden_states, pooled, layout)

    def layer_groups(self) -> list[nn.Module]:
        """Bottom to top: embeddings, then each layer (ULMFiT's discriminative learning rates)."""
        return [self.embeddings, *self.encoder.layers]


class TaskModel(nn.Module):
    """A backbone with heads. Subclasses name their task and define ``forward``."""

    task: str = ""
    uses_pooler = False  # as the reference, heads that never read the pooler do not build it

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = EncoderModel(config, with_pooler=self.uses_pooler)

    def layer_groups(self) -> list[nn.Module]:
        heads = [module for name, module in self.named_children() if name != "backbone"]
        top = nn.ModuleList(heads + ([self.backbone.pooler] if self.backbone.pooler is not None else []))
        return [*self.backbone.layer_groups(), top]


@dataclass
class PretrainingOutput:
    mlm_logits: torch.Tensor  # (B, T, V), or (M, V) over the selected positions only
    pair_logits: torch.Tensor | None  # (B, 2) next-sentence / sentence-order logits
    encoder: EncoderOutput


class ForPretraining(TaskModel):
    """Masked-LM head plus the sentence-pair head (BERT's MLM + NSP)."""

    task = "pretraining"
    has_pair_head = True
    uses_pooler = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.mlm_head = MaskedLMHead(config, self.backbone.embeddings.word)
        self.pair_head = PairHead(config) if self.has_pair_head else None

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        predict_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        unpad: bool = False,
    ) -> PretrainingOutput:
        """``predict_mask`` (B, T) bool: run the vocabulary head only where it is True, giving
        (M, V) logits in row-major order of the True positions. None: logits everywhere."""
        out = self.backbone(input_ids, attention_mask, token_type_ids, output_hidden_states, unpad)
        hidden = out.last_hidden_state
        if predict_mask is not None:
            selected = out.layout.unpad(predict_mask) if unpad else predict_mask
            hidden = hidden[selected]  # (M, H)
        mlm_logits = self.mlm_head(hidden)
        pair_logits = self.pair_head(out.pooled) if self.pair_head is not None else None
        return PretrainingOutput(mlm_logits, pair_logits, out)


class ForMaskedLM(ForPretraining):
    """Masked-LM head only (no pooler use, no pair head)."""

    task = "masked_lm"
    has_pair_head = False
    uses_pooler = False


class ForSequenceClassification(TaskModel):
    """Classifier on the pooled [CLS] vector (BERT fine-tuning, single sentences and pairs)."""

    task = "sequence_classification"
    uses_pooler = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.classifier = LinearClassifier(config, max(config.num_labels, 1))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, unpad: bool = False):
        out = self.backbone(input_ids, attention_mask, token_type_ids, unpad=unpad)
        return self.classifier(out.pooled)  # (B, labels)


class ForTokenClassification(TaskModel):
    """A label per token from its final hidden vector (NER)."""

    task = "token_classification"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.classifier = LinearClassifier(config, max(config.num_labels, 1))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, unpad: bool = False):
        out = self.backbone(input_ids, attention_mask, token_type_ids, unpad=unpad)
        return out.padded(self.classifier(out.last_hidden_state))  # (B, T, labels)


class ForQuestionAnswering(TaskModel):
    """Span start and end logits per token (BERT on SQuAD). No dropout, as the reference."""

    task = "question_answering"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.span_head = Linear(config.hidden_size, 2)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, unpad: bool = False):
        out = self.backbone(input_ids, attention_mask, token_type_ids, unpad=unpad)
        logits = out.padded(self.span_head(out.last_hidden_state))  # (B, T, 2)
        if attention_mask is not None:
            # Padding can never be an answer; -inf-like fill keeps softmax/argmax honest.
            logits = logits.masked_fill(~attention_mask.bool()[..., None], torch.finfo(logits.dtype).min)
        return logits[..., 0], logits[..., 1]


class Backbone(EncoderModel):
    """The bare encoder as a task model (feature extraction); weights have no prefix."""

    task = "backbone"


TASK_MODELS: dict[str, type[nn.Module]] = {
    cls.task: cls
    for cls in (Backbone, ForPretraining, ForMaskedLM, ForSequenceClassification,
                ForTokenClassification, ForQuestionAnswering)
}


def build_model(config: ModelConfig, task: str = "pretraining", seed: int | None = None) -> nn.Module:
    """A randomly initialised model for ``task`` (BERT's init: N(0, initializer_range))."""
    if seed is not None:
        torch.manual_seed(seed)
    model = TASK_MODELS[task](config)
    model.apply(lambda module: init_weights(module, config.initializer_range))
    return model
