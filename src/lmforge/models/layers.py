"""The shared transformer core: attention, feed-forward, residual wiring, blocks and stacks.

Follows "Attention Is All You Need" (Vaswani et al., 2017) as BERT (Devlin et al., 2019) and
its successors use it; behaviour is chosen only by ``ModelConfig`` fields. Alternatives
(norm type, activation, norm placement) are small named modules picked from a table, so
``forward`` methods carry no family-specific branches.

Every module here is token-wise except ``SelfAttention``/``CrossAttention``, which delegate
the sequence structure to a layout object (``lmforge.models.layout``): the same layers run on
padded ``(B, T, H)`` batches and on unpadded ``(N, H)`` token lists.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from lmforge.config import ModelConfig


def _onednn_linear_op():
    """oneDNN's matmul-with-bias (the op inductor lowers linears to), or None without oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None)


_ONEDNN_LINEAR = _onednn_linear_op()


class _OneDnnLinear(torch.autograd.Function):
    """``x @ W.T + b`` with its three GEMMs (forward, input and weight gradients) in oneDNN.

    Eager fp32 ``F.linear`` on CPU calls MKL's sgemm, which on the AMD CPUs we measured runs at
    less than half of oneDNN's speed (benchmarks/RESULTS.md). Same IEEE fp32 arithmetic, only
    the summation order differs (~1e-7 relative)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _ONEDNN_LINEAR(x, weight, bias, "none", [], "")

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _ONEDNN_LINEAR(grad, weight.t(), None, "none", [], "")  # (N, O) @ (O, I)
        if ctx.needs_input_grad[1]:
            # oneDNN copies a transposed first operand to row-major, so transpose the smaller
            # of grad (N, O) and x (N, I): for the vocabulary projection this halves the time.
            if weight.shape[0] > weight.shape[1]:
                grad_weight = _ONEDNN_LINEAR(x.t(), grad.t(), None, "none", [], "").t()  # ((I, N) @ (N, O)).T
            else:
                grad_weight = _ONEDNN_LINEAR(grad.t(), x.t(), None, "none", [], "")  # (O, N) @ (N, I)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_x, grad_weight, grad_bias


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, through oneDNN for fp32 on CPU; unchanged elsewhere (GPU, autocast,
    torch.compile, which picks its own kernels)."""
    if (_ONEDNN_LINEAR is None or x.device.type != "cpu" or x.dtype != torch.float32
            or weight.dtype != torch.float32 or x.numel() == 0 or torch.is_autocast_enabled("cpu")
            or torch.compiler.is_compiling()):
        return F.linear(x, weight, bias)
    out = _OneDnnLinear.apply(x.reshape(-1, x.shape[-1]).contiguous(), weight, bias)
    return out.view(*x.shape[:-1], weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and names) computed by ``linear``."""

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


class SelfAttention(nn.Module):
    """Multi-head self-attention: query/key/value projections, SDPA, output projection.

    The three projections keep their own weights (the checkpoints' names) but run as one
    ``(H, 3H)`` GEMM whose output the layout moves in one piece (one scatter to the attention
    grid instead of three). On CPU this measured neutral (benchmarks/RESULTS.md); it is the
    usual layout for GPU kernels."""

    def __init__(self, config: ModelConfig, causal: bool) -> None:
        super().__init__()
        width = config.hidden_size
        self.num_heads = config.num_heads
        self.causal = causal
        self.dropout_p = config.attention_dropout
        self.query = Linear(width, width, bias=config.bias)
        self.key = Linear(width, width, bias=config.bias)
        self.value = Linear(width, width, bias=config.bias)
        self.output = Linear(width, width, bias=config.bias)

    def forward(self, x: torch.Tensor, layout) -> torch.Tensor:
        projections = (self.query, self.key, self.value)
        weight = torch.cat([p.weight for p in projections])  # (3H, H)
        bias = torch.cat([p.bias for p in projections]) if self.query.bias is not None else None
        context = layout.self_attend(
            linear(x, weight, bias),  # (..., 3H)
            num_heads=self.num_heads,
            causal=self.causal,
            dropout_p=self.dropout_p if self.training else 0.0,
        )
        return self.output(context)


class CrossAttention(SelfAttention):
    """Encoder-decoder attention (BART, T5 decoders): queries from the decoder, keys and
    values from the encoder output ``memory`` laid out as ``memory_layout``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, causal=False)

    def forward(self, x: torch.Tensor, layout, memory: torch.Tensor, memory_layout) -> torch.Tensor:
        context = layout.attend(
            self.query(x),
            self.key(memory),
            self.value(memory),
            num_heads=self.num_heads,
            causal=False,
            dropout_p=self.dropout_p if self.training else 0.0,
            keys=memory_layout,
        )
        return self.output(context)


class FeedForward(nn.Module):
    """Position-wise feed-forward: up-projection, activation, down-projection."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.up = Linear(config.hidden_size, config.intermediate_size, bias=config.bias)
        self.activation = ACTIVATIONS[config.activation]
        self.down = Linear(config.intermediate_size, config.hidden_size, bias=config.bias)

    def forward(self, x: torch.Tensor, *context) -> torch.Tensor:
        return self.down(self.activation(self.up(x)))


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


class TransformerBlock(nn.Module):
    """One layer: self-attention, optional cross-attention, feed-forward, each in a residual.

    Post-norm (BERT)::

        x ──► attention ──► dropout ──► (+x) ──► norm ──► h ──► FFN ──► dropout ──► (+h) ──► norm

    Pre-norm (GPT-2)::

        x ──► norm ──► attention ──► dropout ──► (+x) ──► h ──► norm ──► FFN ──► dropout ──► (+h)
    """

    def __init__(self, config: ModelConfig, causal: bool, cross_attention: bool) -> None:
        super().__init__()
        residual = RESIDUALS[config.norm_placement]
        self.attention = residual(config, SelfAttention(config, causal))
        self.cross_attention = residual(config, CrossAttention(config)) if cross_attention else None
        self.feed_forward = residual(config, FeedForward(config))

    def forward(self, x: torch.Tensor, layout, memory=None, memory_layout=None) -> torch.Tensor:
        x = self.attention(x, layout)
        if self.cross_attention is not None:
            x = self.cross_attention(x, layout, memory, memory_layout)
        return self.feed_forward(x)


class TransformerStack(nn.Module):
    """A stack of blocks, with an optional final norm (pre-norm families)."""

    def __init__(self, config: ModelConfig, causal: bool, cross_attention: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerBlock(config, causal, cross_attention) for _ in range(config.num_layers)
        )
        self.final_norm = make_norm(config) if config.final_norm else None

    def forward(self, x, layout, memory=None, memory_layout=None, output_hidden_states: bool = False):
        """Returns the last hidden state and, if asked, the input plus every layer's output."""
        hidden_states = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, layout, memory, memory_layout)
            if hidden_states is not None:
                hidden_states.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
            if hidden_states is not None:
                hidden_states[-1] = x
        return x, hidden_states


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

