"""``x @ W.T + b`` with its three GEMMs (forward, input and weight gradients) in oneDNN.

Eager fp32 ``F.linear`` on CPU calls MKL's sgemm, which on the AMD CPUs we measured runs at
less than half of oneDNN's speed (benchmarks/RESULTS.md, "oneDNN linears"). oneDNN's
matmul-with-bias is the op PyTorch's inductor itself lowers CPU linears to. Same IEEE fp32
arithmetic, only the summation order differs (~1e-7 relative).

Small products stay with ``F.linear``: a oneDNN call costs ~25 us more to set up, which made
the per-token linears of decoding (1-8 rows by 256-1024 features) twice as slow as MKL's
(benchmarks/decode.py). Without autograd (inference) the op is called directly, skipping the
``autograd.Function`` machinery.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from lmforge import ops


def _onednn_linear_op():
    """oneDNN's matmul-with-bias, or None in a torch build without oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None)


ONEDNN_LINEAR = _onednn_linear_op()


def _intel_cpu() -> bool:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("vendor_id") and "GenuineIntel" in line for line in cpuinfo)
    except OSError:
        return False


# Where the weight gradient's GEMM runs. On the Intel Xeon we measured (2 cores, KVM guest), MKL's
# sgemm with transposed operands beats oneDNN, which copies a transposed operand and hands back
# a transposed gradient that autograd then copies into the parameter's layout. The weight
# gradient of ALBERT-base's 768 x 3072 feed-forward took 130-230 ms in MKL against 390-780 ms in
# oneDNN (4,000 tokens, 2 threads), and ALBERT's pretraining step went from 1.0x to 1.3x
# transformers' (benchmarks/pretrain_step.py --family albert, twice each on the same loaded
# machine; RoBERTa's 4-layer step unchanged). On the AMD CPUs of RESULTS.md oneDNN was twice
# MKL's speed, so elsewhere the weight gradient stays in oneDNN (not re-measured there).
WEIGHT_GRAD_MKL = _intel_cpu()


class _OneDnnLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return ONEDNN_LINEAR(x, weight, bias, "none", [], "")

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = ONEDNN_LINEAR(grad, weight.t(), None, "none", [], "")  # (N, O) @ (O, I)
        if ctx.needs_input_grad[1] and WEIGHT_GRAD_MKL:
            grad_weight = grad.t().mm(x)  # (O, N) @ (N, I), row-major like the weight
        elif ctx.needs_input_grad[1]:
            # oneDNN copies a transposed first operand to row-major, so transpose the smaller
            # of grad (N, O) and x (N, I): for the vocabulary projection this halves the time.
            if weight.shape[0] > weight.shape[1]:
                grad_weight = ONEDNN_LINEAR(x.t(), grad.t(), None, "none", [], "").t()  # ((I, N) @ (N, O)).T
            else:
                grad_weight = ONEDNN_LINEAR(grad.t(), x.t(), None, "none", [], "")  # (O, N) @ (N, I)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_x, grad_weight, grad_bias


# Multiply-adds below which oneDNN's setup outweighs its faster GEMM: an 8 x 256 -> 1024 decode
# linear (2M) is faster in MKL, a 8 x 256 -> 50,257 vocabulary projection (103M) in oneDNN.
MIN_MULTIPLY_ADDS = 1 << 24


def usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """fp32 on CPU outside autocast and torch.compile (which picks its own kernels), for
    products big enough to repay oneDNN's setup."""
    return (ONEDNN_LINEAR is not None and ops.fast_kernels_enabled() and x.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.numel() * weight.shape[0] >= MIN_MULTIPLY_ADDS
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, through oneDNN where ``usable``; unchanged elsewhere (GPU, bf16, ...)."""
    if not usable(x, weight):
        return F.linear(x, weight, bias)
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                              or (bias is not None and bias.requires_grad))
    out = _OneDnnLinear.apply(rows, weight, bias) if needs_grad else ONEDNN_LINEAR(rows, weight, bias, "none", [], "")
    return out.view(*x.shape[:-1], weight.shape[0])
