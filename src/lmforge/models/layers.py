"""The shared transformer layers: linear, norms, activations, attention, feed-forward and the
residual wiring around them.

Follows "Attention Is All You Need" (Vaswani et al., 2017) as BERT (Devlin et al., 2019) and
its successors use it; behaviour is chosen only by ``ModelConfig`` fields. Alternatives
(norm type, activation, feed-forward kind, norm placement) are small named modules picked from
a table, so ``forward`` methods carry no family-specific branches.

Every module here is token-wise except ``Attention``, which delegates the sequence structure to
a layout object (``lmforge.models.layout``): the same layers run on padded ``(B, T, H)``
batches and on unpadded ``(N, H)`` token lists.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.config import ModelConfig
from lmforge.models.kv_cache import LayerCache
from lmforge.models.positions import apply_rotary
from lmforge.ops.onednn_linear import linear


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and names) computed by ``lmforge.ops.onednn_linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich, 2019) as T5 and LLaMA use it, computed in fp32."""

    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def make_norm(config: ModelConfig, width: int | None = None) -> nn.Module:
    width = width or config.hidden_size
    if config.norm_type == "rmsnorm":
        return RMSNorm(width, config.norm_eps)
    return nn.LayerNorm(width, eps=config.norm_eps)


# erf-gelu (BERT) and tanh-gelu (GPT-2, ALBERT v2) differ by up to 4.7e-4: each family keeps its own.
ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


@dataclass
class AttentionInputs:
    """What the attention of every layer in a stack reads besides its hidden states."""

    layout: object  # PaddedLayout or JaggedLayout of the stack's tokens
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None  # (cos, sin) per token (LLaMA)
    position_bias: torch.Tensor | None = None  # additive (1, heads, T, S) score bias (T5)
    memory: torch.Tensor | None = None  # encoder output that cross-attention reads (BART, T5)
    memory_layout: object = None


class Attention(nn.Module):
    """Multi-head attention with queries, keys and values from one fused projection.

    The projection is one parameter ``qkv`` of shape ((heads + 2 kv_heads) d, H): one GEMM per
    call and no per-call concatenation; the weight map splits and fuses the checkpoints'
    separate q/k/v (or GPT-2's fused ``c_attn``). Fewer key/value heads than query heads is
    grouped-query attention (LLaMA). Self-attention applies rotary positions to q and k before
    they enter the cache; cross-attention (``cross=True``) takes q from the decoder and k, v
    from the encoder output, computed once per generation and kept in the cache."""

    def __init__(self, config: ModelConfig, causal: bool, cross: bool = False) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        self.causal = causal
        self.cross = cross
        self.rotary = config.positions == "rotary" and not cross
        self.dropout_p = config.attention_dropout
        self.scale = self.head_dim ** -0.5 if config.scale_attention_scores else 1.0
        self.query_width = self.num_heads * self.head_dim
        self.qkv = Linear(config.hidden_size, self.query_width + 2 * self.num_kv_heads * self.head_dim, bias=config.bias)
        self.output = Linear(self.query_width, config.hidden_size, bias=config.bias)

    def forward(self, x: torch.Tensor, inputs: AttentionInputs, cache: LayerCache | None = None) -> torch.Tensor:
        options = dict(num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, causal=self.causal,
                       dropout_p=self.dropout_p if self.training else 0.0, scale=self.scale)
        if self.cross:
            return self.output(self._cross_attend(x, inputs, cache, options))
        qkv = self.qkv(x)  # (..., (heads + 2 kv_heads) d)
        if not self.rotary and cache is None:  # the layout moves q, k, v in one piece
            return self.output(inputs.layout.self_attend(qkv, bias=inputs.position_bias, **options))
        kv_width = self.num_kv_heads * self.head_dim
        q, k, v = qkv.split([self.query_width, kv_width, kv_width], dim=-1)
        if self.rotary:
            cos, sin = inputs.rotary
            q, k = apply_rotary(q, cos, sin, self.num_heads), apply_rotary(k, cos, sin, self.num_kv_heads)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, past + T, kv_heads d)
        return self.output(inputs.layout.attend(q, k, v, bias=inputs.position_bias, **options))

    def _cross_attend(self, x, inputs: AttentionInputs, cache: LayerCache | None, options: dict) -> torch.Tensor:
        weight, bias = self.qkv.weight, self.qkv.bias
        width = self.query_width
        q = linear(x, weight[:width], None if bias is None else bias[:width])
        if cache is not None and cache.keys is not None:
            k, v = cache.keys, cache.values  # the encoder output does not change while decoding
        else:
            kv = linear(inputs.memory, weight[width:], None if bias is None else bias[width:])
            k, v = kv.chunk(2, dim=-1)
            if cache is not None:
                cache.append(k, v)
        return inputs.layout.attend(q, k, v, keys=inputs.memory_layout, **{**options, "causal": False})


class FeedForward(nn.Module):
    """Position-wise feed-forward: up-projection, activation, down-projection (BERT, GPT-2)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.up = Linear(config.hidden_size, config.intermediate_size, bias=config.bias)
        self.activation = ACTIVATIONS[config.activation]
        self.down = Linear(config.intermediate_size, config.hidden_size, bias=config.bias)

    def forward(self, x: torch.Tensor, *unused) -> torch.Tensor:
        return self.down(self.activation(self.up(x)))


class GatedFeedForward(nn.Module):
    """Gated linear unit feed-forward (Shazeer 2020, "GLU Variants Improve Transformer"):
    ``down(act(gate x) * up x)``; SwiGLU with silu (LLaMA), GeGLU with tanh-gelu (T5 v1.1)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate = Linear(config.hidden_size, config.intermediate_size, bias=config.bias)
        self.up = Linear(config.hidden_size, config.intermediate_size, bias=config.bias)
        self.activation = ACTIVATIONS[config.activation]
        self.down = Linear(config.intermediate_size, config.hidden_size, bias=config.bias)

    def forward(self, x: torch.Tensor, *unused) -> torch.Tensor:
        return self.down(self.activation(self.gate(x)) * self.up(x))


FEED_FORWARDS = {"plain": FeedForward, "gated": GatedFeedForward}


class _Residual(nn.Module):
    """A sublayer with its dropout and norm; subclasses say where the norm goes."""

    def __init__(self, config: ModelConfig, sublayer: nn.Module) -> None:
        super().__init__()
        self.sublayer = sublayer
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.norm = make_norm(config)


class PostNormResidual(_Residual):
    """BERT/BART wiring: ``x -> norm(x + dropout(sublayer(x)))``."""

    def forward(self, x: torch.Tensor, *context) -> torch.Tensor:
        return self.norm(x + self.dropout(self.sublayer(x, *context)))


class PreNormResidual(_Residual):
    """GPT-2/T5/LLaMA wiring: ``x -> x + dropout(sublayer(norm(x)))``."""

    def forward(self, x: torch.Tensor, *context) -> torch.Tensor:
        return x + self.dropout(self.sublayer(self.norm(x), *context))


RESIDUALS = {"post": PostNormResidual, "pre": PreNormResidual}


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation (google-research/bert, transformers' _init_weights): N(0, std)
    weights, zero biases, unit norms, zero padding row."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, (nn.LayerNorm, RMSNorm)):
        nn.init.ones_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
