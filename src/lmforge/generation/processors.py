"""Logits processors: each turns one step's next-token scores (R, V) into new scores, given
each row's history (its real prompt tokens, then the tokens generated so far).

Semantics of transformers' generation/logits_process.py: ``RepetitionPenaltyLogitsProcessor``
(CTRL, Keskar et al. 2019: a seen token's score is divided by the penalty when positive and
multiplied when negative), ``NoRepeatNGramLogitsProcessor`` (fairseq's ``no_repeat_ngram_size``:
a token that would complete an n-gram already in the history gets -inf), and the sampling
warpers ``TemperatureLogitsWarper``, ``TopKLogitsWarper`` and ``TopPLogitsWarper`` (nucleus
sampling, Holtzman et al. 2020), applied in that order and only when sampling; and
``ForcedEOSTokenLogitsProcessor`` on the last step (``apply``).

One deliberate difference: the history is a row's real tokens only. transformers also counts
left-padding ids as history for n-gram blocking, so a padded batch can ban a continuation the
prompt alone would allow; here a prompt gets the same result alone or in any batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lmforge.generation.settings import GenerationSettings

Processor = Callable[[Sequence[Sequence[int]], torch.Tensor], torch.Tensor]


def repetition_penalty(penalty: float) -> Processor:
    def process(histories, scores):
        vocab = scores.shape[-1]
        width = max(len(h) for h in histories)
        seen_ids = torch.full((len(histories), width), vocab, dtype=torch.long)
        for row, history in enumerate(histories):
            seen_ids[row, : len(history)] = torch.as_tensor(history, dtype=torch.long)
        seen = torch.zeros(len(histories), vocab + 1, dtype=torch.bool)  # column `vocab` absorbs the fill
        seen.scatter_(1, seen_ids, True)
        seen = seen[:, :vocab].to(scores.device)
        penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
        return torch.where(seen, penalised, scores)
    return process


def banned_ngram_continuations(history: Sequence[int], size: int) -> list[int]:
    """Tokens that would repeat an n-gram of ``history`` (fairseq / transformers' _get_ngrams)."""
    if len(history) + 1 < size:
        return []
    prefix = tuple(history[len(history) - size + 1:]) if size > 1 else ()
    return [history[i + size - 1] for i in range(len(history) - size + 1)
            if tuple(history[i:i + size - 1]) == prefix]


def no_repeat_ngram(size: int) -> Processor:
    def process(histories, scores):
        scores = scores.clone()
        for row, history in enumerate(histories):
            banned = banned_ngram_continuations(list(history), size)
            if banned:
                scores[row, banned] = -float("inf")
        return scores
    return process


def temperature(value: float) -> Processor:
    return lambda histories, scores: scores / value


def top_k(k: int, min_tokens_to_keep: int = 1) -> Processor:
    def process(histories, scores):
        kept = min(max(k, min_tokens_to_keep), scores.shape[-1])
        threshold = torch.topk(scores, kept)[0][..., -1, None]
        return scores.masked_fill(scores < threshold, -float("inf"))
    return process


def top_p(p: float, min_tokens_to_keep: int = 1) -> Processor:
    def process(histories, scores):
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        # Drop the low tail whose total mass is at most 1 - p; the top tokens always stay.
        drop = cumulative <= (1 - p)
        drop[..., -min_tokens_to_keep:] = False
        return scores.masked_fill(drop.scatter(1, order, drop), -float("inf"))
    return process


def build_processors(settings: GenerationSettings) -> list[Processor]:
    """In transformers' order: penalties first, then (sampling only) the warpers."""
    processors: list[Processor] = []
    if settings.repetition_penalty != 1.0:
        processors.append(repetition_penalty(settings.repetition_penalty))
    if settings.no_repeat_ngram_size > 0:
        processors.append(no_repeat_ngram(settings.no_repeat_ngram_size))
    if settings.do_sample:
        # Beam sampling keeps one more candidate than there are EOS ids, so a beam can continue.
        keep = (len(settings.eos_token_ids) + 1 if settings.eos_token_ids else 2) if settings.beam_search else 1
        if settings.temperature != 1.0:
            processors.append(temperature(settings.temperature))
        if settings.top_k:
            processors.append(top_k(settings.top_k, keep))
        if settings.top_p < 1.0:
            processors.append(top_p(settings.top_p, keep))
    return processors


def apply(processors: list[Processor], histories, scores: torch.Tensor, settings: GenerationSettings | None = None,
          new_tokens: int = 0) -> torch.Tensor:
    """``scores`` through ``processors``; with ``settings``, the step that picks the last of
    ``max_new_tokens`` (``new_tokens`` already generated) is forced to ``forced_eos_token_id``
    (after the others: the forced scores are what every later processor would leave them)."""
    for process in processors:
        scores = process(histories, scores)
    if settings is not None and settings.forced_eos_token_id is not None and new_tokens == settings.max_new_tokens - 1:
        forced = torch.full_like(scores, -float("inf"))
        forced[:, settings.forced_eos_token_id] = 0.0
        return forced
    return scores
