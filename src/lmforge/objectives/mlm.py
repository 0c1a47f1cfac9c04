"""BERT's masked-LM objective: corruption of one sequence, the seeding that makes it dynamic or
static, and the loss (with BERT's next-sentence loss when the batch has sentence pairs).

Follows ``create_masked_lm_predictions`` in google-research/bert ``create_pretraining_data.py``
(Devlin et al. 2019, section 3.1 and appendix A.1): [CLS]/[SEP] are never candidates, candidates
(single tokens, or whole words when ``word_start`` is given) are shuffled, and they are taken
in that order until ``n = min(max_predictions, max(1, round(len * p)))`` positions are chosen;
a word that would overflow ``n`` is skipped. Each chosen token becomes [MASK] with p 0.8, a
uniformly random vocabulary entry with p 0.1, and stays unchanged with p 0.1. The draws use
numpy instead of Python's ``random``, so the distribution matches the reference but the exact
stream does not.

ALBERT's n-gram masking (Lan et al. 2020, appendix A.1; google-research/albert
``create_pretraining_data.py``) takes ``max_ngram > 1``: candidates are n-grams of whole words
(``ngram_choice``). RoBERTa's masking as fairseq's ``MaskTokensDataset`` does it is
``fairseq_mask_tokens``: a different count, every position a candidate and a per-token 80/10/10.

Dynamic masking (RoBERTa, Liu et al. 2019, section 4.1) seeds each mask from
``(seed, epoch, index)``, as fairseq's datasets do: every pass sees a fresh mask, and any pass
can be replayed.

The loss follows ``get_masked_lm_output`` and ``get_next_sentence_output`` in google-research/bert
``run_pretraining.py``: cross-entropy over the chosen positions only (the vocabulary head runs
on those alone, as the reference gathers ``max_predictions_per_seq`` positions), plus the NSP
cross-entropy per sequence (``lmforge.objectives.sentence_pairs``), summed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.objectives.base import IGNORE_INDEX, Objective
from lmforge.objectives.sentence_pairs import next_sentence_eval_sums, next_sentence_loss_sum

# Independent seed streams, so the masks never reuse the draws that built the instances.
MASK_STREAM = 1


def num_to_predict(length: int, mlm_probability: float, max_predictions: int | None) -> int:
    """How many positions to mask in a sequence of ``length`` tokens, specials included.

    ``round`` is Python's half-to-even rounding, written in the reference's order
    (``len(tokens) * masked_lm_prob``) so the float product is the same: 19 at 128, 77 at 512.
    """
    n = max(1, int(round(length * mlm_probability)))
    return n if max_predictions is None else min(max_predictions, n)


def mask_tokens(
    ids: np.ndarray,
    rng: np.random.Generator,
    *,
    vocab_size: int,
    mask_id: int,
    special_ids: Collection[int],
    mlm_probability: float = 0.15,
    max_predictions: int | None = 20,
    word_start: np.ndarray | None = None,
    sentence_starts: np.ndarray | None = None,
    max_ngram: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Mask one 1-D sequence; returns ``(masked_ids, labels)``, both int64 and shaped like ``ids``.

    ``labels`` holds the original id at chosen positions and ``IGNORE_INDEX`` elsewhere.
    ``word_start`` (bool over the vocabulary) switches on whole-word masking: a token that does
    not start a word joins the candidate before it. As in the reference, the join looks at the
    previous candidate even across a [SEP], so a B segment that starts with a "##" piece (after
    front truncation) is masked together with the last word of A.
    ``max_predictions=None`` puts no cap on ``n`` (for long packed MLM-only blocks).
    ``sentence_starts`` (bool per position) marks positions that open a word whatever their
    token: the first token of each sentence, which byte-level BPE writes without its "Ġ".
    ``max_ngram > 1`` switches on ALBERT's n-gram masking over the units (whole words with
    ``word_start``, else tokens), see ``ngram_choice``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    candidate = np.ones(len(ids), dtype=bool)
    for special in special_ids:  # a handful of ids: faster than np.isin per call
        candidate &= ids != special
    candidates = np.flatnonzero(candidate)
    n = num_to_predict(len(ids), mlm_probability, max_predictions)

    starts = word_starts_at(ids, word_start, sentence_starts)
    if max_ngram > 1:
        chosen = ngram_choice(candidates, n, rng, None if starts is None else starts[candidates], max_ngram)
    elif starts is None:
        # Every candidate has size 1, so shuffling and taking candidates until n are chosen is
        # the first n of a permutation.
        chosen = rng.permutation(candidates)[:n]
    else:
        chosen = _choose_whole_words(candidates, n, rng, starts[candidates])

    labels = np.full(ids.shape, IGNORE_INDEX, dtype=np.int64)
    labels[chosen] = ids[chosen]
    masked = ids.copy()
    # One uniform per chosen token splits it 0.8 / 0.1 / 0.1 like the reference's two draws
    # (random() < 0.8, then random() < 0.5 to keep).
    u = rng.random(len(chosen))
    random_ids = rng.integers(0, vocab_size, size=len(chosen))
    replaced = np.where(u < 0.8, mask_id, np.where(u < 0.9, ids[chosen], random_ids))
    masked[chosen] = replaced
    return masked, labels


def word_starts_at(
    ids: np.ndarray, word_start: np.ndarray | None, sentence_starts: np.ndarray | None
) -> np.ndarray | None:
    """Bool per position: the token opens a word (None: no word information, token units)."""
    if word_start is None:
        return None
    starts = np.asarray(word_start, dtype=bool)[ids]
    if sentence_starts is not None:
        starts = starts | np.asarray(sentence_starts, dtype=bool)
    return starts


def _word_bounds(candidate_starts: np.ndarray | None, count: int) -> list[int]:
    """Offsets into the candidates where each unit begins, plus ``count`` at the end."""
    if candidate_starts is None:
        return list(range(count + 1))
    starts = np.array(candidate_starts, dtype=bool)
    if count:
        starts[0] = True  # the reference opens a new word when there is no previous candidate
    return np.flatnonzero(starts).tolist() + [count]


def _choose_whole_words(
    candidates: np.ndarray, n: int, rng: np.random.Generator, candidate_starts: np.ndarray
) -> np.ndarray:
    if len(candidates) == 0:
        return candidates
    bounds = _word_bounds(candidate_starts, len(candidates))
    chosen: list[int] = []
    count = 0
    for w in rng.permutation(len(bounds) - 1).tolist():
        if count >= n:
            break
        size = bounds[w + 1] - bounds[w]
        if count + size > n:
            continue  # a word that would overflow n is skipped, smaller ones may still fit
        chosen.extend(range(bounds[w], bounds[w + 1]))
        count += size
    return candidates[np.asarray(chosen, dtype=np.int64)]


# ALBERT's favor_shorter_ngram: p(n) proportional to 1/n (6/11, 3/11, 2/11 for n <= 3).
def ngram_probabilities(max_ngram: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, max_ngram + 1)
    return weights / weights.sum()


def ngram_choice(
    candidates: np.ndarray,
    n: int,
    rng: np.random.Generator,
    candidate_starts: np.ndarray | None,
    max_ngram: int = 3,
    drawn_lengths: list[int] | None = None,
) -> np.ndarray:
    """ALBERT's n-gram masking (``create_masked_lm_predictions`` in google-research/albert).

    Units are whole words (``candidate_starts``) or single tokens. Every unit opens one
    n-gram window; windows are visited in a random order until ``n`` tokens are chosen. For each,
    a length k <= ``max_ngram`` is drawn with p proportional to 1/k among the lengths the window
    has (renormalised near the end of the sequence); while the k-gram would take more than ``n``
    tokens in all, shorter k are tried; a window that still overflows, or overlaps tokens already
    chosen, is skipped. The reference draws k from numpy's global generator; here every draw
    comes from ``rng``. ``drawn_lengths`` (statistics) collects each drawn k.
    """
    if len(candidates) == 0:
        return candidates
    bounds = _word_bounds(candidate_starts, len(candidates))
    num_units = len(bounds) - 1
    probabilities = ngram_probabilities(max_ngram)
    covered = np.zeros(len(candidates), dtype=bool)
    chosen: list[int] = []
    for first in rng.permutation(num_units).tolist():
        if len(chosen) >= n:
            break
        available = min(max_ngram, num_units - first)
        p = probabilities[:available]
        k = int(rng.choice(available, p=p / p.sum())) + 1
        if drawn_lengths is not None:
            drawn_lengths.append(k)
        # the k-gram's candidate offsets are bounds[first] .. bounds[first + k]
        while k > 1 and len(chosen) + bounds[first + k] - bounds[first] > n:
            k -= 1
        lo, hi = bounds[first], bounds[first + k]
        if len(chosen) + hi - lo > n or covered[lo:hi].any():
            continue
        covered[lo:hi] = True
        chosen.extend(range(lo, hi))
    return candidates[np.asarray(chosen, dtype=np.int64)]


def fairseq_mask_count(length: int, mlm_probability: float, rng: np.random.Generator) -> int:
    """fairseq's ``int(mask_prob * sz + np.random.rand())``: the expectation is exactly p * sz."""
    return int(mlm_probability * length + rng.random())


def fairseq_mask_tokens(
    ids: np.ndarray,
    rng: np.random.Generator,
    *,
    vocab_size: int,
    mask_id: int,
    special_ids: Collection[int],
    mlm_probability: float = 0.15,
    word_start: np.ndarray | None = None,
    sentence_starts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """RoBERTa's masking as fairseq's ``MaskTokensDataset`` (``mask_prob`` 0.15,
    ``leave_unmasked_prob`` 0.1, ``random_token_prob`` 0.1); returns ``(masked_ids, labels)``.

    ``count = floor(p * units + U[0, 1))`` units are drawn uniformly without replacement from
    every position, <s> and </s> included (fairseq excludes nothing). Each chosen unit is then
    left unchanged with p 0.1, replaced by a random token with p 0.1, else by <mask>, from two
    independent uniforms as fairseq draws them. Random tokens are uniform over the non-special
    ids (fairseq zeroes the weights of the dictionary's leading special symbols). With
    ``word_start`` the units are whole words (fairseq's ``mask_whole_words``) and a word's
    decision applies to all its tokens.
    """
    ids = np.asarray(ids, dtype=np.int64)
    starts = word_starts_at(ids, word_start, sentence_starts)
    bounds = np.asarray(_word_bounds(None if starts is None else starts, len(ids)), dtype=np.int64)
    units = len(bounds) - 1
    count = min(units, fairseq_mask_count(units, mlm_probability, rng))
    picked = np.zeros(units, dtype=bool)
    picked[rng.choice(units, count, replace=False)] = True
    rand_or_unmask = picked & (rng.random(units) < 0.2)
    decision = rng.random(units) < 0.5
    unmask, random_token = rand_or_unmask & decision, rand_or_unmask & ~decision
    lengths = np.diff(bounds)
    picked_tokens = np.repeat(picked, lengths)
    labels = np.where(picked_tokens, ids, IGNORE_INDEX).astype(np.int64)
    masked = ids.copy()
    masked[np.repeat(picked & ~unmask & ~random_token, lengths)] = mask_id
    random_positions = np.repeat(random_token, lengths)
    ordinary = np.setdiff1d(np.arange(vocab_size), np.fromiter(special_ids, dtype=np.int64))
    masked[random_positions] = rng.choice(ordinary, int(random_positions.sum()))
    return masked, labels


@dataclass(frozen=True)
class MaskingPolicy:
    """Which random stream masks sequence ``index`` in ``epoch``.

    ``dynamic``: the stream is seeded by ``(seed, epoch, index)``, a fresh mask every pass.
    ``static``: seeded by ``(seed, epoch % dupe_factor, index)``, so the masks repeat with period
    ``dupe_factor``. That is the reference's static masking: ``create_pretraining_data.py``
    writes ``dupe_factor`` copies of the data, each masked once, and training walks through
    them; pass ``e`` here sees copy ``e % dupe_factor``.
    """

    seed: int
    mode: Literal["dynamic", "static"] = "dynamic"
    dupe_factor: int = 10

    def __post_init__(self) -> None:
        if self.mode not in ("dynamic", "static"):
            raise ValueError(f"masking mode must be 'dynamic' or 'static', not {self.mode!r}")
        if self.dupe_factor < 1:
            raise ValueError("dupe_factor must be at least 1")

    def mask_round(self, epoch: int) -> int:
        return epoch if self.mode == "dynamic" else epoch % self.dupe_factor

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, MASK_STREAM, self.mask_round(epoch), index])


class MaskedLMObjective(Objective):
    """MLM loss over the chosen positions (``labels != IGNORE_INDEX``), plus the pair loss when the
    batch has ``next_sentence_label``: NSP (BERT) or, with ``pair_task="sop"``, ALBERT's sentence
    order, which runs through the same two-way pair head and is reported as ``sop``. Sums here;
    the loop divides by the global counts (chosen tokens for MLM, sequences for the pair task)."""

    def __init__(self, pad_id: int = 0, pair_task: Literal["nsp", "sop"] = "nsp") -> None:
        self.pad_id = pad_id
        self.pair_task = pair_task

    def counts(self, batch: dict) -> dict[str, int]:
        counts = {"mlm": int((batch["labels"] != IGNORE_INDEX).sum())}
        if "next_sentence_label" in batch:
            counts[self.pair_task] = int(batch["next_sentence_label"].numel())
        return counts

    def _forward(self, model, batch: dict, unpad: bool):
        chosen = batch["labels"] != IGNORE_INDEX
        out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                    predict_mask=chosen, unpad=unpad)
        return out, batch["labels"][chosen]

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        out, targets = self._forward(model, batch, unpad)
        sums = {"mlm": F.cross_entropy(out.mlm_logits.float(), targets, reduction="sum")}
        if "next_sentence_label" in batch:
            sums[self.pair_task] = next_sentence_loss_sum(out.pair_logits, batch["next_sentence_label"])
        return sums

    def eval_sums(self, model, batch: dict, unpad: bool) -> dict[str, tuple[float, float]]:
        out, targets = self._forward(model, batch, unpad)
        n = targets.numel()
        metrics = {
            "mlm_loss": (float(F.cross_entropy(out.mlm_logits.float(), targets, reduction="sum")), n),
            "mlm_accuracy": (float((out.mlm_logits.argmax(-1) == targets).sum()), n),
        }
        if "next_sentence_label" in batch:
            pair = next_sentence_eval_sums(out.pair_logits, batch["next_sentence_label"])
            metrics.update({name.replace("nsp", self.pair_task, 1): value for name, value in pair.items()})
        return metrics
