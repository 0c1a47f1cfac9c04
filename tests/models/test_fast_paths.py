"""Every fast path gives the numbers of the simple padded path: forward outputs, losses and the
gradients of every parameter (fp32, dropout off, ~1e-5).

Fast paths: ``unpad=True`` (real tokens only, ``JaggedLayout``), the MLM head on the chosen
positions only (``predict_mask``), oneDNN GEMMs for fp32 linears on CPU (``layers.linear``),
the fused query/key/value projection, the grid and nested-tensor attention kernels, and the
dropout attention used in CPU training. The simple path is the padded batch with plain
``F.linear``; one test also checks the gradients against transformers' own BERT.
No torch.compile path exists (it was measured slower on CPU, see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lmforge
from lmforge.families.bert import WEIGHTS, bert_config
from lmforge.models import layout
from lmforge.models.layout import JaggedLayout, PaddedLayout
from lmforge.ops import fast_kernels
from lmforge.ops.onednn_linear import ONEDNN_LINEAR, linear

TOL = 1e-5
VOCAB = 97
CONFIG = bert_config(2, 32, 4, vocab_size=VOCAB, intermediate_size=48, max_positions=16,
                     hidden_dropout=0.0, attention_dropout=0.0, labels=("a", "b", "c"))
LENGTHS = [9, 1, 5, 3]  # a full row, a length-1 sequence and two padded ones
WIDTH = 9


def batch(left: bool = False):
    """ids, mask, types (B, T) with LENGTHS real tokens, right- (or left-) padded."""
    g = torch.Generator().manual_seed(7)
    ids = torch.zeros(len(LENGTHS), WIDTH, dtype=torch.long)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for row, n in enumerate(LENGTHS):
        span = slice(WIDTH - n, WIDTH) if left else slice(0, n)
        ids[row, span] = torch.randint(1, VOCAB, (n,), generator=g)
        mask[row, span] = 1
        types[row, span] = (torch.arange(n) >= n // 2).long()
    return ids, mask, types


def to_right(left_padded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The rows of a left-padded (B, T, ...) tensor moved to right padding."""
    out = torch.zeros_like(left_padded)
    for row, n in enumerate(mask.sum(1).tolist()):
        out[row, :n] = left_padded[row, left_padded.shape[1] - n:]
    return out


def grads(model) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape, what
    assert (a - b).abs().max() <= TOL, f"{what}: max difference {(a - b).abs().max():.2e}"


def assert_same_grads(fast: dict, simple: dict) -> None:
    assert fast.keys() == simple.keys()
    for name in simple:
        assert_close(fast[name], simple[name], f"gradient of {name}")


def run(model, fn):
    """(outputs, gradients) of ``fn(model)`` returning (loss, outputs)."""
    model.zero_grad(set_to_none=True)
    loss, outputs = fn(model)
    loss.backward()
    return [o.detach() for o in outputs], loss.detach(), grads(model)


@pytest.fixture(scope="module")
def models():
    return {task: lmforge.build(CONFIG, task=task, seed=3).eval()
            for task in ("pretraining", "sequence_classification", "token_classification", "question_answering")}


@pytest.mark.parametrize("left", [False, True])
def test_pretraining_unpad_and_predict_mask(models, left):
    model = models["pretraining"]
    ids, mask, types = batch(left)
    chosen = mask.bool() & (torch.rand(mask.shape, generator=torch.Generator().manual_seed(1)) < 0.5)
    chosen[1] = mask[1].bool()  # the length-1 sequence is predicted too
    labels, pair = ids[chosen], torch.tensor([0, 1, 1, 0])

    def fast(m):
        out = m(ids, mask, types, predict_mask=chosen, unpad=True)
        loss = F.cross_entropy(out.mlm_logits, labels) + F.cross_entropy(out.pair_logits, pair)
        return loss, [out.mlm_logits, out.pair_logits, out.encoder.padded()]

    right = [to_right(t, mask) for t in (ids, mask, types, chosen)] if left else [ids, mask, types, chosen]

    def simple(m):
        out = m(*right[:3])  # padded, logits at every position
        logits = out.mlm_logits[right[3]]
        loss = F.cross_entropy(logits, labels) + F.cross_entropy(out.pair_logits, pair)
        return loss, [logits, out.pair_logits, out.encoder.last_hidden_state * right[1][..., None]]

    fast_out, fast_loss, fast_grads = run(model, fast)
    with fast_kernels(False):
        simple_out, simple_loss, simple_grads = run(model, simple)
    if left:
        fast_out[2] = to_right(fast_out[2], mask)
    for a, b, what in zip(fast_out, simple_out, ["MLM logits", "pair logits", "hidden states"]):
        assert_close(a, b, what)
    assert_close(fast_loss, simple_loss, "loss")
    assert len(simple_grads) == sum(1 for p in model.parameters())  # every parameter is checked
    assert_same_grads(fast_grads, simple_grads)


def test_full_rows_attend_in_place(models):
    """Packed blocks (every row full, RoBERTa's FULL-SENTENCES): the tokens already are the
    attention grid, so no copy is made; outputs and every gradient equal the padded path's."""
    model = models["pretraining"]
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(1, VOCAB, (3, WIDTH), generator=g)
    mask, types = torch.ones_like(ids), (torch.arange(WIDTH) >= 4).long().expand(3, -1)
    assert JaggedLayout.from_mask(mask).grid_mask is None  # the in-place case
    chosen = torch.rand(ids.shape, generator=g) < 0.5
    labels, pair = ids[chosen], torch.tensor([0, 1, 1])

    def fast(m):
        out = m(ids, mask, types, predict_mask=chosen, unpad=True)
        loss = F.cross_entropy(out.mlm_logits, labels) + F.cross_entropy(out.pair_logits, pair)
        return loss, [out.mlm_logits, out.pair_logits, out.encoder.padded()]

    def simple(m):
        out = m(ids, mask, types)
        loss = F.cross_entropy(out.mlm_logits[chosen], labels) + F.cross_entropy(out.pair_logits, pair)
        return loss, [out.mlm_logits[chosen], out.pair_logits, out.encoder.last_hidden_state]

    fast_out, fast_loss, fast_grads = run(model, fast)
    with fast_kernels(False):
        simple_out, simple_loss, simple_grads = run(model, simple)
    for a, b, what in zip(fast_out, simple_out, ["MLM logits", "pair logits", "hidden states"]):
        assert_close(a, b, what)
    assert_close(fast_loss, simple_loss, "loss")
    assert len(simple_grads) == sum(1 for p in model.parameters())
    assert_same_grads(fast_grads, simple_grads)


def test_take_rows_is_index_select():
    """``layout.take_rows`` (distinct rows, index_copy backward) against index_select."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(10, 6, generator=g, requires_grad=True)
    index = torch.tensor([7, 0, 3, 9])
    upstream = torch.randn(4, 6, generator=g)
    taken = layout.take_rows(x, index)
    assert torch.equal(taken, x.index_select(0, index))
    assert torch.equal(torch.autograd.grad(taken, x, upstream)[0],
                       torch.autograd.grad(x.index_select(0, index), x, upstream)[0])


@pytest.mark.parametrize("left", [False, True])
@pytest.mark.parametrize("task", ["sequence_classification", "token_classification", "question_answering"])
def test_task_heads_unpad(models, task, left):
    model = models[task]
    ids, mask, types = batch(left)
    right = [to_right(t, mask) for t in (ids, mask, types)] if left else [ids, mask, types]
    real = right[1].bool()
    g = torch.Generator().manual_seed(2)
    token_labels = torch.randint(0, 3, ids.shape, generator=g)
    starts, ends = torch.tensor([2, 0, 4, 1]), torch.tensor([5, 0, 4, 2])

    def loss_of(outputs):
        if task == "sequence_classification":
            return F.cross_entropy(outputs[0], torch.tensor([0, 2, 1, 2]))
        if task == "token_classification":
            return F.cross_entropy(outputs[0][real], token_labels[real])
        return F.cross_entropy(outputs[0], starts) + F.cross_entropy(outputs[1], ends)

    def outputs_of(m, inputs, unpad):
        out = m(*inputs, unpad=unpad)
        out = list(out) if isinstance(out, tuple) else [out]
        if left and unpad and task != "sequence_classification":
            out = [to_right(o, mask) for o in out]  # compare in the right-padded frame
            if task == "question_answering":  # where padding cannot be an answer
                out = [o.masked_fill(~real, torch.finfo(o.dtype).min) for o in out]
        return out

    def fast(m):
        out = outputs_of(m, (ids, mask, types), unpad=True)
        return loss_of(out), out

    def simple(m):
        out = outputs_of(m, right, unpad=False)
        return loss_of(out), out

    fast_out, fast_loss, fast_grads = run(model, fast)
    with fast_kernels(False):
        simple_out, simple_loss, simple_grads = run(model, simple)
    for a, b in zip(fast_out, simple_out):
        if task == "sequence_classification":
            assert_close(a, b, "logits")
        else:
            assert_close(a[real], b[real], "logits at real tokens")
    assert_close(fast_loss, simple_loss, "loss")
    assert_same_grads(fast_grads, simple_grads)


def test_gradients_match_transformers(tmp_path):
    """The fused QKV projection and oneDNN backward against transformers' BERT (separate
    projections, plain linears): every parameter's gradient."""
    transformers = pytest.importorskip("transformers")
    model = lmforge.build(CONFIG, task="masked_lm", seed=4).eval()
    lmforge.save(model, tmp_path, format="hf")
    reference = transformers.BertForMaskedLM.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    ids, mask, types = batch()
    labels = torch.where(mask.bool(), ids, torch.full_like(ids, -100))
    chosen = labels != -100
    loss = F.cross_entropy(model(ids, mask, types, predict_mask=chosen, unpad=True).mlm_logits, ids[chosen])
    loss.backward()
    reference(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels).loss.backward()
    theirs = dict(reference.named_parameters())
    # Our gradients under HF names, through the family's weight map (fused q/k/v split apart).
    ours = WEIGHTS.export_tensors({name: p.grad for name, p in model.named_parameters()}, CONFIG)
    checked = 0
    for hf_name, grad in ours.items():
        assert hf_name in theirs, hf_name
        assert_close(grad, theirs[hf_name].grad, f"gradient of {hf_name}")
        checked += 1
    assert checked == sum(1 for _ in reference.parameters())


@pytest.mark.skipif(ONEDNN_LINEAR is None, reason="this torch build has no oneDNN")
@pytest.mark.parametrize("shape", [(37, 16, 48), (37, 48, 16), (5, 3, 7, 11)])  # (..., in, out)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("weight_grad_mkl", [True, False])
def test_onednn_linear_matches_f_linear(shape, bias, weight_grad_mkl, monkeypatch):
    from lmforge.ops import onednn_linear

    monkeypatch.setattr(onednn_linear, "MIN_MULTIPLY_ADDS", 0)  # these small shapes would stay in F.linear
    monkeypatch.setattr(onednn_linear, "WEIGHT_GRAD_MKL", weight_grad_mkl)
    g = torch.Generator().manual_seed(0)
    *lead, inputs, outputs = shape
    x = torch.randn(*lead, inputs, generator=g, requires_grad=True)
    w = torch.randn(outputs, inputs, generator=g, requires_grad=True)
    assert onednn_linear.usable(x, w)
    b = torch.randn(outputs, generator=g, requires_grad=True) if bias else None
    params = [x, w] + ([b] if bias else [])
    y = linear(x, w, b)
    upstream = torch.randn(y.shape, generator=g)
    fast = torch.autograd.grad(y, params, upstream)
    y0 = F.linear(x, w, b)
    simple = torch.autograd.grad(y0, params, upstream)
    assert_close(y, y0, "output")
    for a, c in zip(fast, simple):
        assert_close(a, c, "gradient")
    with torch.inference_mode():
        assert_close(linear(x, w, b), y0.detach(), "inference output")


def test_grid_and_nested_attention_agree():
    """The CPU grid kernel and the nested-jagged kernel (the CUDA choice), forward and backward."""
    ids, mask, _ = batch(left=True)
    heads, width = 4, 32
    grid, nested = JaggedLayout.from_mask(mask, kernel="grid"), JaggedLayout.from_mask(mask, kernel="nested")
    assert grid.kernel == "grid" and nested.kernel == "nested"
    g = torch.Generator().manual_seed(5)
    qkv = torch.randn(grid.num_tokens, 3 * width, generator=g, requires_grad=True)
    upstream = torch.randn(grid.num_tokens, width, generator=g)
    outs = []
    for lay in (grid, nested):
        out = lay.self_attend(qkv, num_heads=heads, causal=False, dropout_p=0.0)
        outs.append((out.detach(), torch.autograd.grad(out, qkv, upstream)[0]))
    assert_close(outs[0][0], outs[1][0], "attention output")
    assert_close(outs[0][1], outs[1][1], "gradient")
    # causal (decoder) attention on left-padded rows equals padded attention on right-padded ones
    right_mask = to_right(mask, mask)
    padded = PaddedLayout.from_inputs(ids, right_mask)
    dense = padded.self_attend(to_right(grid.to_padded(qkv.detach()), mask), num_heads=heads, causal=True,
                               dropout_p=0.0)
    jagged = grid.self_attend(qkv.detach(), num_heads=heads, causal=True, dropout_p=0.0)
    real = right_mask.bool()
    assert_close(to_right(grid.to_padded(jagged), mask)[real], dense[real], "causal attention")


def test_dropout_attention_is_sdpa_math_with_its_mask():
    """The CPU training attention: softmax(q k^T * scale, masked) * keep / (1 - p) @ v, where
    keep is the draw it makes, forward and backward; and it drops a fraction p."""
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(3, 2, 6, 8, generator=g, requires_grad=True) for _ in range(3))
    key_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    p = 0.3
    torch.manual_seed(11)
    out = layout.attention(q, k, v, key_mask, causal=False, dropout_p=p)
    torch.manual_seed(11)
    keep = torch.rand(3, 2, 6, 6) >= p  # the same draw
    scores = (q @ k.transpose(-1, -2)) / 8 ** 0.5
    scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    expected = (scores.softmax(-1) * keep / (1 - p)) @ v
    upstream = torch.randn(out.shape, generator=g)
    assert_close(out, expected, "output")
    for a, b in zip(torch.autograd.grad(out, (q, k, v), upstream), torch.autograd.grad(expected, (q, k, v), upstream)):
        assert_close(a, b, "gradient")
    # rate: 1/(1-p) rescaling keeps the expectation; the dropped share is p
    torch.manual_seed(12)
    eye = torch.eye(256).expand(4, 1, 256, 256)
    probs = layout.attention(torch.zeros(4, 1, 256, 8), torch.zeros(4, 1, 256, 8), eye, None,
                             causal=False, dropout_p=p)
    dropped = float((probs == 0).float().mean())
    assert abs(dropped - p) < 0.005
    assert abs(float(probs.sum(-1).mean()) - 1.0) < 0.01


@pytest.mark.parametrize("causal", [False, True])
def test_training_attention_per_sequence_equals_the_grid(causal, monkeypatch):
    """With attention dropout on CPU and sequences of very different lengths, attention runs one
    sequence at a time (scores of sum T_i S_i, not B max_T max_S): with every key kept (the draw
    patched to ones) it equals the grid, forward and backward, for self- and cross-attention, a
    score bias cut to each sequence (T5) and grouped key/value heads."""
    q_mask = torch.zeros(3, 12, dtype=torch.long)
    k_mask = torch.zeros(3, 10, dtype=torch.long)
    for row, (t, s) in enumerate([(12, 10), (2, 3), (4, 1)]):
        q_mask[row, :t], k_mask[row, :s] = 1, 1
    queries, keys = JaggedLayout.from_mask(q_mask, kernel="grid"), JaggedLayout.from_mask(k_mask, kernel="grid")
    assert not queries._attends_each_sequence(torch.zeros(1), keys, dropout_p=0.1)  # short: the grid
    monkeypatch.setattr(layout, "MIN_MEAN_LENGTH_PER_SEQUENCE", 1)
    assert queries._attends_each_sequence(torch.zeros(1), keys, dropout_p=0.1)
    assert not queries._attends_each_sequence(torch.zeros(1), keys, dropout_p=0.0)
    monkeypatch.setattr(torch, "rand_like", lambda x: torch.ones_like(x))  # keep every score
    g = torch.Generator().manual_seed(8)
    heads, kv_heads, d = 4, 2, 8
    q = torch.randn(queries.num_tokens, heads * d, generator=g, requires_grad=True)
    k, v = (torch.randn(keys.num_tokens, kv_heads * d, generator=g, requires_grad=True) for _ in range(2))
    bias = torch.randn(1, heads, 12, 10, generator=g)
    upstream = torch.randn(queries.num_tokens, heads * d, generator=g)
    key_layout = queries if causal else keys  # causal: self-attention of the queries' sequences
    if causal:
        k, v = (torch.randn(queries.num_tokens, kv_heads * d, generator=g, requires_grad=True) for _ in range(2))
        bias = torch.randn(1, heads, 12, 12, generator=g)
    outs = []
    for each in (True, False):
        monkeypatch.setattr(JaggedLayout, "_attends_each_sequence", lambda *a, each=each: each)
        out = queries.attend(q, k, v, num_heads=heads, num_kv_heads=kv_heads, causal=causal, dropout_p=0.1,
                             keys=key_layout, bias=bias)
        outs.append((out.detach(), *torch.autograd.grad(out, (q, k, v), upstream)))
    for a, b, what in zip(outs[0], outs[1], ("output", "q gradient", "k gradient", "v gradient")):
        assert_close(a, b, what)
