"""Pretraining steps: lmforge against transformers, in one process, for BERT, RoBERTa and ALBERT.

    python benchmarks/pretrain_step.py --device cpu             # issue 5's CPU target (BERT)
    python benchmarks/pretrain_step.py --device cpu --family roberta   # issue 9's CPU targets
    python benchmarks/pretrain_step.py --device cpu --family albert
    python benchmarks/pretrain_step.py --device cuda            # BERT-base, bf16, seq 128 and 512
    python benchmarks/pretrain_step.py --device cuda --dry-run  # the GPU path, tiny, on CPU if no GPU

Both sides start from the same weights (lmforge builds the model, transformers loads its HF
export) and train on the same batches, with dropout as the family's preset has it (0.1 for
BERT and RoBERTa, none for ALBERT v2). The batches, per ``--family``:

* ``bert``: sequences of uniformly drawn real lengths (a quarter of ``--seq-len`` to
  ``--seq-len``) padded to the longest, 15% of real tokens chosen for prediction (80/10/10
  corrupted). Model: ``bert-mini`` on CPU (4 layers, H 256, vocab 30,522).
* ``roberta``: FULL-SENTENCES blocks (Liu et al. 2019 §4.2) as packing leaves them when the
  corpus is long: every row full, ``<s> ... </s>`` with a ``</s>`` where a new document starts
  inside the block; masked by lmforge's ``fairseq_mask_tokens`` (count floor(0.15 * len +
  U[0,1)), any position, 80/10/10). Model: ``roberta-base`` cut to 4 layers, H 256, 4 heads,
  I 1024 on CPU (vocab 50,265).
* ``albert``: ``[CLS] A [SEP] B [SEP]`` pairs as google-research/albert builds them (full length
  with p 0.9, else a short target uniform in [5, seq_len]), a sentence-order label per pair,
  n-gram masking by lmforge's ``mask_tokens`` (n <= 3, at most 20 predictions). Model:
  ``albert-base-v2`` cut to 4 layers sharing one group on CPU (H 768, E 128, vocab 30,000).

One step is forward, backward, gradient clipping at 1.0, AdamW and zeroing the gradients, as
each side's own training loop does it:

* lmforge: ``MaskedLMObjective`` (with ``pair_task="sop"`` for ALBERT) with ``unpad=True``
  (real tokens only, vocabulary head on the chosen positions) and lmforge's optimizer (AdamW,
  BERT's no-decay groups; fused as ``lmforge.training.loop.Trainer`` builds it for RoBERTa and
  ALBERT; for BERT the for-loop kernel on CPU its RESULTS.md figures were taken with).
* transformers: ``BertForMaskedLM`` / ``RobertaForMaskedLM`` / ``AlbertForPreTraining``
  (``attn_implementation="sdpa"``) on the padded batch with labels -100 off the chosen
  positions (and ``sentence_order_label``), and the optimizer the transformers ``Trainer``
  builds by default with torch >= 2.8 (``adamw_torch_fused``).

Before timing, the first batch's loss (MLM, plus SOP for ALBERT) is compared in eval mode (no
dropout) and fp32: it must agree within 1e-4. Then warm-up steps, then ``--repeats`` rounds in
which each side runs the same ``--steps`` batches, the side going first alternating.
Throughput counts real (non-pad) tokens only. GPU runs use bf16 autocast on both sides.

Model FLOPs per step (for MFU on GPU), counted on real tokens only, the same for both sides:

    6 * P * N                      P: parameters each token goes through in the transformer
                                      layers, a shared layer counted each time it runs, plus
                                      ALBERT's E -> H projection (not embedding tables, not
                                      the heads); N: real tokens (forward 2, backward 4)
  + 12 * L * H * sum_i T_i^2       attention scores and weighted values of each sequence of
                                      real length T_i: forward 4*T*H per token and layer, x3
  + 6 * (H*W + W*V) * M            MLM head (transform dense H -> W and vocabulary projection;
                                      W = E for ALBERT, else H) on the M predicted positions

MFU = FLOPs / seconds / peak, with the dense bf16 peak of the detected GPU (989 TFLOP/s for
H100 SXM and H200).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, machine, median, peak_flops, print_json, print_table, select_device  # noqa: E402

CPU_TARGET = dict(runs=[(128, 32)], repeats=7, warmup=2, steps=1)  # (seq_len, batch)
GPU_TARGET = dict(runs=[(128, 256), (512, 64)], repeats=5, warmup=3, steps=5)
DRY_RUN = dict(runs=[(32, 4), (64, 2)], repeats=1, warmup=1, steps=1)
TINY = dict(num_layers=2, hidden_size=64, num_heads=2, intermediate_size=128, vocab_size=1024)
MASK_ID, FIRST_WORD_ID = 103, 1000  # BERT's [MASK]; draw words above the special tokens


@dataclass
class Run:
    seq_len: int
    batch_size: int


def make_batches(count: int, run: Run, vocab_size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Padded BERT MLM batches: [CLS] words [SEP], real lengths uniform in [seq_len/4, seq_len]."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        lengths = torch.randint(max(3, run.seq_len // 4), run.seq_len + 1, (run.batch_size,), generator=g)
        width = int(lengths.max())
        positions = torch.arange(width)[None, :]
        mask = positions < lengths[:, None]
        ids = torch.randint(FIRST_WORD_ID, vocab_size, (run.batch_size, width), generator=g)
        ids[:, 0] = 101  # [CLS]
        ids[positions == (lengths[:, None] - 1)] = 102  # [SEP]
        ids[~mask] = 0
        words = mask & (positions > 0) & (positions < lengths[:, None] - 1)
        chosen = words & (torch.rand(ids.shape, generator=g) < 0.15)
        chosen[0, 1] = True  # at least one prediction per batch
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        roll = torch.rand(ids.shape, generator=g)
        corrupted = torch.where(chosen & (roll < 0.8), torch.full_like(ids, MASK_ID), ids)
        random_words = torch.randint(FIRST_WORD_ID, vocab_size, ids.shape, generator=g)
        corrupted = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_words, corrupted)
        batches.append({"input_ids": corrupted, "token_type_ids": torch.zeros_like(ids),
                        "attention_mask": mask.long(), "labels": labels})
    return batches


def collate(rows: list[dict[str, np.ndarray]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad examples (input_ids, token_type_ids, labels[, next_sentence_label]) to the longest."""
    width = max(len(r["input_ids"]) for r in rows)
    fill = {"input_ids": pad_id, "token_type_ids": 0, "labels": -100}
    batch = {key: torch.full((len(rows), width), value, dtype=torch.long) for key, value in fill.items()}
    batch["attention_mask"] = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        for key in fill:
            batch[key][i, :n] = torch.from_numpy(r[key])
        batch["attention_mask"][i, :n] = 1
    if "next_sentence_label" in rows[0]:
        batch["next_sentence_label"] = torch.tensor([int(r["next_sentence_label"]) for r in rows])
    return batch


# RoBERTa's dictionary: <s> 0, <pad> 1, </s> 2, <unk> 3, words, and <mask> last.
ROBERTA_BOS, ROBERTA_PAD, ROBERTA_EOS, ROBERTA_UNK = 0, 1, 2, 3
DOCUMENT_TOKENS = 400  # mean document length in the synthetic stream (a </s> inside ~1 block in 3)


def roberta_batches(count: int, run: Run, vocab_size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Full FULL-SENTENCES blocks, masked as fairseq's MaskTokensDataset does."""
    from lmforge.objectives.mlm import fairseq_mask_tokens

    rng = np.random.default_rng(seed)
    mask_id = vocab_size - 1
    specials = (ROBERTA_BOS, ROBERTA_PAD, ROBERTA_EOS, ROBERTA_UNK, mask_id)
    batches = []
    for _ in range(count):
        rows = []
        for _ in range(run.batch_size):
            body = rng.integers(ROBERTA_UNK + 1, mask_id, run.seq_len - 2)
            body[rng.random(len(body)) < 1 / DOCUMENT_TOKENS] = ROBERTA_EOS  # document boundaries
            ids = np.concatenate(([ROBERTA_BOS], body, [ROBERTA_EOS]))
            # floor(0.15 * len + U) >= 1 predictions per row from 7 tokens on
            masked, labels = fairseq_mask_tokens(ids, rng, vocab_size=vocab_size, mask_id=mask_id,
                                                 special_ids=specials)
            rows.append({"input_ids": masked, "token_type_ids": np.zeros_like(ids), "labels": labels})
        batches.append(collate(rows, ROBERTA_PAD))
    return batches


# ALBERT's SentencePiece vocabulary: <pad> 0, <unk> 1, [CLS] 2, [SEP] 3, [MASK] 4.
ALBERT_PAD, ALBERT_CLS, ALBERT_SEP, ALBERT_MASK = 0, 2, 3, 4
SHORT_SEQ_PROB = 0.1  # google-research/albert's default: a short target length 10% of the time


def albert_batches(count: int, run: Run, vocab_size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Sentence-order pairs with n-gram masking, as google-research/albert's data builder shapes them."""
    from lmforge.objectives.mlm import mask_tokens

    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        rows = []
        for _ in range(run.batch_size):
            length = run.seq_len if rng.random() >= SHORT_SEQ_PROB else int(rng.integers(5, run.seq_len + 1))
            body = length - 3
            len_a = int(rng.integers(1, body))
            a = rng.integers(ALBERT_MASK + 1, vocab_size, len_a)
            b = rng.integers(ALBERT_MASK + 1, vocab_size, body - len_a)
            ids = np.concatenate(([ALBERT_CLS], a, [ALBERT_SEP], b, [ALBERT_SEP]))
            types = np.concatenate((np.zeros(len_a + 2, dtype=np.int64), np.ones(body - len_a + 1, dtype=np.int64)))
            masked, labels = mask_tokens(ids, rng, vocab_size=vocab_size, mask_id=ALBERT_MASK,
                                         special_ids=(ALBERT_PAD, ALBERT_CLS, ALBERT_SEP), max_ngram=3)
            rows.append({"input_ids": masked, "token_type_ids": types, "labels": labels,
                         "next_sentence_label": rng.integers(0, 2)})
        batches.append(collate(rows, ALBERT_PAD))
    return batches


@dataclass(frozen=True)
class Setup:
    """What a family's benchmark needs: its models, batches and the reference's argument names."""

    cpu_preset: str
    cpu_shape: dict  # overrides of the preset on CPU
    gpu_preset: str
    task: str  # lmforge's task; exports as ``reference``
    reference: str  # transformers class
    batches: Callable[[int, Run, int, int], list[dict[str, torch.Tensor]]]
    pad_id: int
    pair_task: str = "nsp"
    tiny: dict = field(default_factory=dict)  # extra --dry-run overrides
    reference_names: dict = field(default_factory=dict)  # batch key -> the reference's argument
    fused_cpu_optimizer: bool = True  # lmforge's Trainer builds fused AdamW on every device


FAMILIES = {
    # BERT's figures in RESULTS.md were taken with the CPU for-loop AdamW; kept for comparability.
    "bert": Setup("bert-mini", {}, "bert-base-uncased", "masked_lm", "BertForMaskedLM", make_batches, 0,
                  fused_cpu_optimizer=False),
    "roberta": Setup("roberta-base", dict(num_layers=4, hidden_size=256, num_heads=4, intermediate_size=1024),
                     "roberta-base", "masked_lm", "RobertaForMaskedLM", roberta_batches, ROBERTA_PAD),
    "albert": Setup("albert-base-v2", dict(num_layers=4), "albert-base-v2", "pretraining", "AlbertForPreTraining",
                    albert_batches, ALBERT_PAD, pair_task="sop", tiny=dict(embedding_size=32),
                    reference_names={"next_sentence_label": "sentence_order_label"}),
}


def build_pair(config, device: torch.device, directory: Path, setup: Setup = FAMILIES["bert"]):
    """(lmforge model, transformers model) with identical weights."""
    import transformers

    import lmforge

    ours = lmforge.build(config, task=setup.task, seed=0)
    lmforge.save(ours, directory, format="hf")
    reference = getattr(transformers, setup.reference).from_pretrained(directory, attn_implementation="sdpa")
    return ours.to(device), reference.to(device)


def lmforge_optimizer(model, device: torch.device, fused_cpu: bool = False) -> torch.optim.Optimizer:
    """lmforge's AdamW (training/loop.py's groups and defaults); fused on CPU when ``fused_cpu``."""
    from lmforge.training.loop import TrainConfig, param_groups

    cfg = TrainConfig()
    fused = {"fused": True} if device.type == "cuda" or fused_cpu else {}
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                             betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, **fused)


def transformers_optimizer(model) -> torch.optim.Optimizer:
    """transformers' Trainer default (optim="adamw_torch_fused", weight decay off biases and
    LayerNorm weights, which for these encoders is the same split as lmforge's), with lmforge's values."""
    from lmforge.training.loop import TrainConfig, param_groups

    cfg = TrainConfig()
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                             betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, fused=True)


def on(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def applied_layer_params(model) -> int:
    """Parameters a token goes through in the stack (a shared layer once per run of it), plus an
    embedding projection (ALBERT's E -> H)."""
    stack = model.backbone.encoder
    total = sum(p.numel() for block in stack.schedule for p in block.parameters())
    if stack.final_norm is not None:
        total += sum(p.numel() for p in stack.final_norm.parameters())
    projection = model.backbone.embeddings.projection
    return total + (0 if projection is None else sum(p.numel() for p in projection.parameters()))


def model_flops(batch: dict, config, layer_params: int) -> float:
    """Useful FLOPs of one training step on ``batch`` (see the module docstring)."""
    lengths = batch["attention_mask"].sum(1).double()
    predicted = float((batch["labels"] != -100).sum())
    hidden, width, vocab = config.hidden_size, config.embedding_width, config.vocab_size
    return (6 * layer_params * float(lengths.sum())
            + 12 * config.num_layers * hidden * float((lengths ** 2).sum())
            + 6 * (hidden * width + width * vocab) * predicted)


def lmforge_loss(objective, model, batch: dict) -> torch.Tensor:
    """The loss lmforge's loop trains on: each term's sum over its count, added."""
    counts = objective.counts(batch)
    sums = objective.loss_sums(model, batch, unpad=True)
    terms = [sums[name] / counts[name] for name in sums]
    return terms[0] if len(terms) == 1 else torch.stack(terms).sum()


def reference_inputs(batch: dict, setup: Setup) -> dict:
    return {setup.reference_names.get(k, k): v for k, v in batch.items()}


def check_losses(ours, reference, batch: dict, setup: Setup = FAMILIES["bert"]) -> tuple[float, float]:
    """First-batch pretraining loss of both models in eval mode and fp32."""
    from lmforge.objectives.mlm import MaskedLMObjective

    objective = MaskedLMObjective(setup.pad_id, setup.pair_task)
    ours.eval(), reference.eval()
    with torch.no_grad():
        ours_loss = lmforge_loss(objective, ours, batch)
        reference_loss = reference(**reference_inputs(batch, setup)).loss
    return float(ours_loss), float(reference_loss)


def benchmark(run: Run, config, device: torch.device, settings: dict, bf16: bool,
              setup: Setup = FAMILIES["bert"]) -> dict:
    from lmforge.objectives.mlm import MaskedLMObjective

    pool = settings["warmup"] + settings["repeats"] * settings["steps"]
    batches = [on(b, device) for b in setup.batches(pool, run, config.vocab_size, run.seq_len)]
    with tempfile.TemporaryDirectory() as directory:
        ours, reference = build_pair(config, device, Path(directory), setup)
    ours_loss, reference_loss = check_losses(ours, reference, batches[0], setup)
    if abs(ours_loss - reference_loss) > 1e-4:
        raise SystemExit(f"outputs differ: first-batch loss {ours_loss:.6f} (lmforge) vs {reference_loss:.6f}")
    objective = MaskedLMObjective(setup.pad_id, setup.pair_task)
    optimizers = {"lmforge": lmforge_optimizer(ours, device, setup.fused_cpu_optimizer),
                  "transformers": transformers_optimizer(reference)}
    reference_batches = [reference_inputs(b, setup) for b in batches]

    def ours_step(index):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = lmforge_loss(objective, ours, batches[index])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ours.parameters(), 1.0)
        optimizers["lmforge"].step()
        optimizers["lmforge"].zero_grad(set_to_none=True)

    def reference_step(index):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = reference(**reference_batches[index]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        optimizers["transformers"].step()
        optimizers["transformers"].zero_grad(set_to_none=True)

    ours.train(), reference.train()
    warmup, steps = settings["warmup"], settings["steps"]
    for index in range(warmup):
        ours_step(index)
        reference_step(index)

    def rounds(step):
        def one(r: int) -> None:
            for index in range(warmup + r * steps, warmup + (r + 1) * steps):
                step(index)
        return one

    times = interleaved({"lmforge": rounds(ours_step), "transformers": rounds(reference_step)},
                        settings["repeats"], device)
    tokens = [sum(int(b["attention_mask"].sum()) for b in batches[warmup + r * steps: warmup + (r + 1) * steps])
              for r in range(settings["repeats"])]
    layer_params = applied_layer_params(ours)
    flops = [sum(model_flops(b, config, layer_params) for b in batches[warmup + r * steps: warmup + (r + 1) * steps])
             for r in range(settings["repeats"])]
    result = {"seq_len": run.seq_len, "batch_size": run.batch_size, "loss_lmforge": ours_loss,
              "loss_transformers": reference_loss, "repeats": settings["repeats"], "steps_per_repeat": steps}
    peak = peak_flops(device)
    for side in times:
        rates = [n / t for n, t in zip(tokens, times[side])]
        result[side] = median(rates)
        result[f"{side}_step_s"] = median([t / steps for t in times[side]])
        if peak:
            result[f"{side}_mfu"] = median([f / t / peak for f, t in zip(flops, times[side])])
    result["ratio"] = result["lmforge"] / result["transformers"]
    result["paired_ratio"] = median([b / a for a, b in zip(times["lmforge"], times["transformers"])])
    return result


# -- ablation: what each means buys (CPU) ---------------------------------------------------
# Cumulative: each row adds one means to the row above; the last is lmforge as it ships.
LADDER = [
    ("padded, MLM head on every position", dict(unpad=False, select=False, onednn=False, fused_qkv=False, lean=False)),
    ("+ MLM head on the chosen positions only", dict(unpad=False, select=True, onednn=False, fused_qkv=False, lean=False)),
    ("+ no compute on padding (unpad, grid attention)", dict(unpad=True, select=True, onednn=False, fused_qkv=False, lean=False)),
    ("+ oneDNN GEMMs for fp32 linears", dict(unpad=True, select=True, onednn=True, fused_qkv=False, lean=False)),
    ("+ one fused Q/K/V projection", dict(unpad=True, select=True, onednn=True, fused_qkv=True, lean=False)),
    ("+ leaner dropout attention (= lmforge)", dict(unpad=True, select=True, onednn=True, fused_qkv=True, lean=True)),
]
ALTERNATIVES = [  # lmforge with one choice swapped
    ("lmforge, nested-jagged SDPA instead of the grid", dict(kernel="nested")),
    ("lmforge, AdamW foreach=True (bit-identical)", dict(optimizer={"foreach": True})),
    ("lmforge, AdamW fused=True", dict(optimizer={"fused": True})),
]
SHIPPED = dict(unpad=True, select=True, onednn=True, fused_qkv=True, lean=True, kernel=None, optimizer={})


def _separate_qkv(self, x, inputs, cache=None):
    """Attention.forward without the fused projection: three GEMMs on the q, k and v rows, and
    three scatters to the attention grid."""
    from lmforge.ops.onednn_linear import linear

    width = self.query_width
    kv = self.num_kv_heads * self.head_dim
    w, b = self.qkv.weight, self.qkv.bias
    q, k, v = (linear(x, w[a:z], None if b is None else b[a:z])
               for a, z in ((0, width), (width, width + kv), (width + kv, width + 2 * kv)))
    return self.output(inputs.layout.attend(q, k, v, num_heads=self.num_heads, causal=self.causal,
                                            dropout_p=self.dropout_p if self.training else 0.0, scale=self.scale))


class _Switches:
    """Turns lmforge's CPU means off and on by swapping module attributes (restored on exit)."""

    def __init__(self, onednn: bool, fused_qkv: bool, lean: bool, kernel: str | None, **_) -> None:
        from lmforge.models import layers, layout
        from lmforge.ops import cpu_attention, onednn_linear

        self.patches = []
        if not onednn:
            self.patches.append((onednn_linear, "ONEDNN_LINEAR", None))
        if not fused_qkv:
            self.patches.append((layers.Attention, "forward", _separate_qkv))
        if not lean:
            self.patches.append((cpu_attention, "usable", lambda q, dropout_p: False))
        if kernel:
            original = layout.JaggedLayout.from_mask.__func__
            self.patches.append((layout.JaggedLayout, "from_mask",
                                 classmethod(lambda cls, mask, kernel_=None: original(cls, mask, kernel))))

    def __enter__(self):
        self.saved = [(obj, name, obj.__dict__[name] if isinstance(obj, type) else getattr(obj, name))
                      for obj, name, _ in self.patches]
        for obj, name, value in self.patches:
            setattr(obj, name, value)

    def __exit__(self, *exc):
        for obj, name, value in self.saved:
            setattr(obj, name, value)


def ablation(run: Run, config, settings: dict) -> int:
    """lmforge with its means switched on one by one, and transformers, interleaved (CPU, fp32)."""
    import copy

    import torch.nn.functional as F

    from lmforge.objectives.mlm import MaskedLMObjective

    device = torch.device("cpu")
    pool = settings["warmup"] + settings["repeats"]
    batches = make_batches(pool, run, config.vocab_size, seed=run.seq_len)
    with tempfile.TemporaryDirectory() as directory:
        base, reference = build_pair(config, device, Path(directory))
    objective = MaskedLMObjective()
    variants = [(name, {**SHIPPED, **switches}) for name, switches in LADDER]
    variants += [(name, {**SHIPPED, **switches}) for name, switches in ALTERNATIVES]
    sides, models = {}, {}
    for name, switches in variants:
        model = copy.deepcopy(base).train()
        optimizer = lmforge_optimizer(model, device)
        if switches["optimizer"]:
            optimizer = torch.optim.AdamW(optimizer.param_groups, **switches["optimizer"])

        def step(batch, model=model, optimizer=optimizer, switches=switches):
            with _Switches(**switches):
                if switches["select"]:
                    loss = objective.loss_sums(model, batch, switches["unpad"])["mlm"] / objective.counts(batch)["mlm"]
                else:
                    logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).mlm_logits
                    loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())
                loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        sides[name], models[name] = step, model
    reference_optimizer = transformers_optimizer(reference.train())

    def reference_step(batch):
        reference(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        reference_optimizer.step()
        reference_optimizer.zero_grad(set_to_none=True)
    sides["transformers BertForMaskedLM (sdpa, padded)"] = reference_step

    for batch in batches[:settings["warmup"]]:
        for step in sides.values():
            step(batch)
    warmup = settings["warmup"]
    times = interleaved({name: (lambda r, step=step: step(batches[warmup + r])) for name, step in sides.items()},
                        settings["repeats"], device)
    tokens = [int(b["attention_mask"].sum()) for b in batches[warmup:]]
    rates = {name: median([n / t for n, t in zip(tokens, ts)]) for name, ts in times.items()}
    reference_rate = rates["transformers BertForMaskedLM (sdpa, padded)"]
    rows, previous = [], None
    for i, (name, rate) in enumerate(rates.items()):
        step_gain = f"{rate / previous:.2f}x" if previous and i < len(LADDER) else ""
        rows.append([name, rate, median(times[name]), step_gain, f"{rate / reference_rate:.2f}x"])
        previous = rate
    print_table(f"Ablation, MLM pretraining step {run.batch_size}x{run.seq_len} (fp32, cpu); repeats "
                f"{settings['repeats']}; {machine(device)}",
                ["variant", "real tokens/s", "s/step", "vs row above", "vs transformers"], rows)
    print_json({"benchmark": "pretrain_step_ablation", "device": "cpu", "machine": machine(device),
                "repeats": settings["repeats"], "ours": rates[LADDER[-1][0]], "reference": reference_rate,
                "ratio": rates[LADDER[-1][0]] / reference_rate, "variants": rates})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=list(FAMILIES), default="bert",
                        help="bert (issue 5), roberta or albert (issue 9): models and batches (module docstring)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cpu: the family's small model in fp32 (bert-mini for BERT); cuda: its base "
                             "preset in bf16")
    parser.add_argument("--seq-len", type=int, nargs="+", help="sequence length(s) (default: 128 cpu; 128 512 cuda)")
    parser.add_argument("--batch-size", type=int, help="sequences per step (default: 32 cpu; 256 at 128, 64 at 512 cuda)")
    parser.add_argument("--repeats", type=int, help="timed rounds per side (default: 7 cpu, 5 cuda)")
    parser.add_argument("--steps", type=int, help="optimizer steps per round (default: 1 cpu, 5 cuda)")
    parser.add_argument("--warmup", type=int, help="untimed steps per side first (default: 2 cpu, 3 cuda)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny model and sizes, one repeat: checks the code path; with --device cuda "
                             "and no GPU it runs the GPU path (bf16 autocast, fused AdamW) on CPU")
    parser.add_argument("--ablation", action="store_true",
                        help="CPU: lmforge with its means switched on one at a time, against transformers")
    args = parser.parse_args(argv)
    settings, device = select_device(args, CPU_TARGET, GPU_TARGET, DRY_RUN)
    from lmforge.families import get_preset

    setup = FAMILIES[args.family]
    bf16 = args.device == "cuda"
    if args.device == "cuda":
        config = get_preset(setup.gpu_preset)
    else:
        config = get_preset(setup.cpu_preset).replace(**setup.cpu_shape)
    if args.dry_run:
        config = config.replace(**TINY, **setup.tiny, max_positions=max([64, *(args.seq_len or [])]))
    for key in ("repeats", "steps", "warmup"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    runs = [Run(s, b) for s, b in settings["runs"]]
    if args.seq_len:
        default_batch = {s: b for s, b in settings["runs"]}
        runs = [Run(s, args.batch_size or default_batch.get(s, runs[0].batch_size)) for s in args.seq_len]
    elif args.batch_size:
        runs = [Run(r.seq_len, args.batch_size) for r in runs]

    if args.ablation:
        if device.type != "cpu":
            raise SystemExit("--ablation measures the CPU means; use --device cpu")
        if args.family != "bert":
            raise SystemExit("--ablation runs on BERT (--family bert)")
        return ablation(runs[0], config, settings)
    results = [benchmark(run, config, device, settings, bf16, setup) for run in runs]
    shared = f" sharing {config.num_layer_groups} group(s)" if config.num_layer_groups else ""
    factorised = f", E {config.embedding_size}" if config.embedding_size else ""
    what = (f"{args.family}: {config.num_layers} layers{shared}, H {config.hidden_size}, {config.num_heads} heads, "
            f"I {config.intermediate_size}{factorised}, V {config.vocab_size}")
    rows = []
    for r in results:
        for side in ("lmforge", "transformers"):
            rows.append([f"{side} {r['batch_size']}x{r['seq_len']}", r[side], r[f"{side}_step_s"],
                         f"{100 * r[f'{side}_mfu']:.1f}%" if f"{side}_mfu" in r else "-"])
        rows.append([f"ratio {r['batch_size']}x{r['seq_len']}", r["ratio"], f"paired {r['paired_ratio']:.2f}", ""])
    print_table(f"{'MLM + SOP' if setup.pair_task == 'sop' else 'MLM'} pretraining step ({what}; {'bf16' if bf16 else 'fp32'}; {device.type}); "
                f"repeats {settings['repeats']} x {settings['steps']} step(s); {machine(device)}",
                ["side", "real tokens/s", "s/step", "MFU"], rows)
    for r in results:
        print(f"first-batch loss (eval, fp32) {r['batch_size']}x{r['seq_len']}: lmforge {r['loss_lmforge']:.6f}, "
              f"transformers {r['loss_transformers']:.6f}")
    worst = min(results, key=lambda r: r["ratio"])
    print_json({"benchmark": "pretrain_step", "family": args.family, "device": device.type, "machine": machine(device),
                "dry_run": args.dry_run, "model": what, "ours": worst["lmforge"], "reference": worst["transformers"],
                "ratio": worst["ratio"], "repeats": settings["repeats"], "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
