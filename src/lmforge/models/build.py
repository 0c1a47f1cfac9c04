"""Task models (a backbone with heads) and ``build_model``, which makes a randomly initialised
one for a config and a task (transformers' BertForPreTraining, ...ForSequenceClassification,
GPT2LMHeadModel, BartForConditionalGeneration play these roles there).

A task model receives its backbone (``lmforge.models.backbones``); heads read its hidden
states. Every task model keeps the backbone under ``backbone.``, so weight names are
``backbone.encoder.layers.0...`` whatever the task; the bare backbone is the task "backbone".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.models.backbones import BackboneOutput, EncoderDecoderOutput, build_backbone
from lmforge.models.heads import DenseTanhClassifier, LinearClassifier, LMHead, MaskedLMHead, PairHead
from lmforge.models.kv_cache import KVCache
from lmforge.models.layers import Attention, Linear, init_weights
from lmforge.models.positions import RelativePositionBias


class TaskModel(nn.Module):
    """A backbone with heads. Subclasses name their task and define ``forward``."""

    task: str = ""
    uses_pooler = False  # as the reference, heads that never read the pooler do not build it
    architectures = ("encoder",)  # the backbones this task's heads can read

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__()
        if config.architecture not in self.architectures:
            raise UserError(f"task {self.task} needs an {' or '.join(self.architectures)} model, "
                            f"not an {config.architecture}")
        self.config = config
        self.backbone = backbone

    @classmethod
    def needs_pooler(cls, config: ModelConfig) -> bool:
        """Whether this task's heads read the backbone's pooler (it is built only then)."""
        return cls.uses_pooler

    def top_states(self, input_ids, attention_mask=None, token_type_ids=None, unpad: bool = False) -> BackboneOutput:
        """The hidden states a fine-tuning head reads: the backbone's; for an encoder-decoder
        the decoder's over the input shifted right (BART), carrying the input's ids, whose
        final end token "eos" pooling finds (the decoder state there has read the whole input)."""
        if self.config.architecture != "encoder_decoder":
            return self.backbone(input_ids, attention_mask, token_type_ids, unpad=unpad)
        out = self.backbone.forward_on_shifted_input(input_ids, attention_mask, unpad=unpad)
        return replace(out.decoder, input_ids=out.encoder.input_ids)

    def layer_groups(self) -> list[nn.Module]:
        """Bottom to top (ULMFiT's discriminative learning rates); heads and pooler on top."""
        heads = [module for name, module in self.named_children() if name != "backbone"]
        pooler = getattr(self.backbone, "pooler", None)
        return [*self.backbone.layer_groups(), nn.ModuleList(heads + ([pooler] if pooler is not None else []))]


class Backbone(TaskModel):
    """The bare backbone (feature extraction): its own output, no heads."""

    task = "backbone"
    uses_pooler = True
    architectures = ("encoder", "decoder", "encoder_decoder")

    def forward(self, *args, **kwargs) -> BackboneOutput | EncoderDecoderOutput:
        return self.backbone(*args, **kwargs)

    def layer_groups(self) -> list[nn.Module]:
        return self.backbone.layer_groups()


@dataclass
class PretrainingOutput:
    mlm_logits: torch.Tensor  # (B, T, V), or (M, V) over the selected positions only
    pair_logits: torch.Tensor | None  # (B, 2) next-sentence / sentence-order logits
    encoder: BackboneOutput


class ForPretraining(TaskModel):
    """Masked-LM head plus the sentence-pair head (BERT's MLM + NSP, ALBERT's MLM + SOP); a
    config without ``pretraining_pair_head`` (RoBERTa) pretrains with the MLM head alone."""

    task = "pretraining"
    has_pair_head = True
    uses_pooler = True

    @classmethod
    def needs_pooler(cls, config: ModelConfig) -> bool:
        return cls.has_pair_head and config.pretraining_pair_head

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__(config, backbone)
        self.mlm_head = MaskedLMHead(config, backbone.embeddings.word)
        self.pair_head = PairHead(config) if self.needs_pooler(config) else None

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, predict_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, unpad: bool = False) -> PretrainingOutput:
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


class ForCausalLM(TaskModel):
    """Next-token logits from a decoder (GPT, GPT-2, LLaMA); ``cache`` for incremental decoding."""

    task = "causal_lm"
    architectures = ("decoder",)

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__(config, backbone)
        self.lm_head = LMHead(config, backbone.embeddings.word)

    def forward(self, input_ids, attention_mask=None, cache: KVCache | None = None, unpad: bool = False,
                output_hidden_states: bool = False, document_ids: torch.Tensor | None = None,
                predict_mask: torch.Tensor | None = None) -> torch.Tensor:
        """-> (B, T, V) logits (zeros at padding when unpadded). ``document_ids`` (B, T) keeps
        attention inside each document packed in a row (unpadded only); ``predict_mask`` (B, T)
        bool runs the vocabulary head only where it is True, giving (M, V) logits in row-major
        order of those positions (training reads only the positions that have a target)."""
        out = self.backbone(input_ids, attention_mask, None, output_hidden_states, unpad, cache,
                            document_ids=document_ids)
        if predict_mask is not None:
            selected = out.layout.unpad(predict_mask) if unpad else predict_mask
            return self.lm_head(out.last_hidden_state[selected])
        return out.padded(self.lm_head(out.last_hidden_state))


class ForSeq2SeqLM(TaskModel):
    """Decoder-side next-token logits of an encoder-decoder (BART, T5 conditional generation)."""

    task = "seq2seq_lm"
    architectures = ("encoder_decoder",)

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__(config, backbone)
        self.lm_head = LMHead(config, backbone.shared)

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                cache: KVCache | None = None, encoder_output: BackboneOutput | None = None,
                unpad: bool = False, predict_mask: torch.Tensor | None = None) -> torch.Tensor:
        """-> (B, T_decoder, V) logits; ``predict_mask`` (B, T_decoder) bool runs the vocabulary
        head only where it is True, giving (M, V) logits in row-major order of those positions
        (training reads only the positions that have a target, as ``ForCausalLM``)."""
        out = self.backbone(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask,
                            unpad=unpad, cache=cache, encoder_output=encoder_output)
        if predict_mask is not None:
            selected = out.decoder.layout.unpad(predict_mask) if unpad else predict_mask
            return self.lm_head(out.last_hidden_state[selected])
        return out.decoder.padded(self.lm_head(out.last_hidden_state))


class ForSequenceClassification(TaskModel):
    """A classifier on one vector per sequence: BERT's pooler output over [CLS], or the token
    ``config.pooling`` picks (GPT-2: the last real token) when the backbone has no pooler.
    ``classifier_hidden`` (RoBERTa): a dense + tanh head on that token instead of the pooler.
    An encoder-decoder (BART) classifies from the decoder state at the input's final end token."""

    task = "sequence_classification"
    uses_pooler = True
    architectures = ("encoder", "decoder", "encoder_decoder")

    @classmethod
    def needs_pooler(cls, config: ModelConfig) -> bool:
        return not config.classifier_hidden

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__(config, backbone)
        if config.classifier_hidden:
            self.classifier = DenseTanhClassifier(config, max(config.num_labels, 1))
        else:
            self.classifier = LinearClassifier(config, max(config.num_labels, 1), bias=config.sequence_classifier_bias)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, unpad: bool = False):
        if self.config.pooling == "eos":
            _check_every_row_has(input_ids, attention_mask, self.config.eos_token_id)
        out = self.top_states(input_ids, attention_mask, token_type_ids, unpad=unpad)
        pooled = out.pooled if out.pooled is not None else out.pool(self.config.pooling, self.config.eos_token_id)
        return self.classifier(pooled)  # (B, labels)


def _check_every_row_has(input_ids, attention_mask, eos_token_id) -> None:
    """"eos" pooling reads each row's final end token (BART: transformers reads the last of
    equally many per row and raises otherwise; lmforge reads each row's last): a row without one
    has nothing to read."""
    present = input_ids == eos_token_id
    if attention_mask is not None:
        present &= attention_mask.bool()
    if not bool(present.any(-1).all()):
        row = int((~present.any(-1)).nonzero()[0])
        raise UserError(f"sequence {row + 1} of the batch has no end token (id {eos_token_id}), which this "
                        "model's classifier reads; encode inputs with the tokenizer's special tokens")


class ForMultipleChoice(ForSequenceClassification):
    """One score per (context, answer) sequence from the same pooled vector (BERT's SWAG head,
    GPT's multiple choice); the task takes the softmax over each example's answers."""

    task = "multiple_choice"
    architectures = ("encoder", "decoder")

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        TaskModel.__init__(self, config, backbone)
        self.classifier = LinearClassifier(config, 1)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, unpad: bool = False):
        return super().forward(input_ids, attention_mask, token_type_ids, unpad).squeeze(-1)  # (rows,)


class ForTokenClassification(TaskModel):
    """A label per token from its final hidden vector (NER)."""

    task = "token_classification"
    architectures = ("encoder", "decoder")

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__(config, backbone)
        self.classifier = LinearClassifier(config, max(config.num_labels, 1))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, unpad: bool = False):
        out = self.backbone(input_ids, attention_mask, token_type_ids, unpad=unpad)
        return out.padded(self.classifier(out.last_hidden_state))  # (B, T, labels)


class ForQuestionAnswering(TaskModel):
    """Span start and end logits per token (BERT on SQuAD; BART from its decoder states over
    the shifted input). No dropout, as the reference."""

    task = "question_answering"
    architectures = ("encoder", "encoder_decoder")

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__(config, backbone)
        self.span_head = Linear(config.hidden_size, 2)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, unpad: bool = False):
        out = self.top_states(input_ids, attention_mask, token_type_ids, unpad=unpad)
        logits = out.padded(self.span_head(out.last_hidden_state))  # (B, T, 2)
        if attention_mask is not None:
            # Padding can never be an answer; -inf-like fill keeps softmax/argmax honest.
            logits = logits.masked_fill(~attention_mask.bool()[..., None], torch.finfo(logits.dtype).min)
        return logits[..., 0], logits[..., 1]


TASK_MODELS: dict[str, type[TaskModel]] = {
    cls.task: cls
    for cls in (Backbone, ForPretraining, ForMaskedLM, ForCausalLM, ForSeq2SeqLM, ForSequenceClassification,
                ForMultipleChoice, ForTokenClassification, ForQuestionAnswering)
}


def task_model_class(task: str) -> type[TaskModel]:
    if task not in TASK_MODELS:
        raise UserError(f"unknown task {task!r}; known: {', '.join(sorted(TASK_MODELS))}")
    return TASK_MODELS[task]


def init_fan_in(model: nn.Module, factor: float) -> None:
    """Mesh TensorFlow's initialisation, as T5 trains from it (transformers'
    ``T5PreTrainedModel._init_weights``): each linear N(0, factor / sqrt(fan_in)); token
    embeddings and an untied output projection N(0, factor); the relative position table
    N(0, factor / sqrt(hidden)); norms at 1. With unscaled attention scores the query
    projection also carries the 1 / sqrt(head_dim) a scaled model applies to the scores
    (T5's q: N(0, factor / sqrt(hidden * head_dim)))."""
    model.apply(lambda module: init_weights(module, factor))  # embeddings, norms, biases
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=factor * module.in_features ** -0.5)
        for module in model.modules():
            if isinstance(module, Attention) and module.scale == 1.0:
                module.qkv.weight[: module.query_width] *= module.head_dim ** -0.5
            elif isinstance(module, RelativePositionBias):
                nn.init.normal_(module.table.weight, std=factor * model.config.hidden_size ** -0.5)
            elif isinstance(module, LMHead):  # tied or not, the output projection is the token table's scale
                nn.init.normal_(module.decoder.weight, std=factor)


def build_model(config: ModelConfig, task: str = "pretraining", seed: int | None = None) -> TaskModel:
    """A randomly initialised model for ``task`` (BERT's init: N(0, initializer_range))."""
    model_class = task_model_class(task)
    if seed is not None:
        torch.manual_seed(seed)
    model = model_class(config, build_backbone(config, with_pooler=model_class.needs_pooler(config)))
    if config.initializer == "fan_in":
        init_fan_in(model, config.initializer_range)
    else:
        model.apply(lambda module: init_weights(module, config.initializer_range))
    for module in model.modules():
        # A tied output projection was initialised after its embedding: restore the zero padding row.
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    return model
