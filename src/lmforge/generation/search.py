"""The search over next tokens: greedy or sampled decoding, and beam search, each a faithful
port of transformers' ``GenerationMixin`` (``_sample`` and the vectorised ``_beam_search`` of
transformers 4.50+, which replaced ``BeamSearchScorer`` with the same results):

* greedy / sampling: each unfinished row takes the argmax (or a multinomial draw) of its
  processed scores; a finished row leaves the batch (and its cache rows), so the others run on alone.
* beam search: log-softmax, processors, plus each beam's running score; the top
  ``max(2, 1 + #eos) * num_beams`` continuations over all beams of a prompt; those that end (EOS,
  max_new_tokens, stop string) and rank within the first ``num_beams`` join the finished
  hypotheses with score sum_logprobs / generated_length ** length_penalty; the best
  ``num_beams`` unfinished continue. ``early_stopping`` True stops a prompt once it has
  ``num_beams`` finished hypotheses; False and "never" stop once no running beam can beat the
  worst finished one (False estimates with the current length, "never" with the longest
  possible one when length_penalty > 0).

Lengths count generated tokens only, so left padding and prompt length change nothing.
Everything here works on token ids and a ``DecoderStep`` (``lmforge.generation.steps``), so
decoder-only and encoder-decoder models share it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lmforge.generation.processors import apply, build_processors
from lmforge.generation.settings import GenerationSettings
from lmforge.generation.stopping import Stopping

TokenCallback = Callable[[int, int], None]  # (row, token id), called as each token is chosen


@dataclass
class SearchResult:
    sequences: list[list[int]]  # generated ids per returned sequence, prompt-major
    scores: list[float] | None  # beam search: each sequence's length-penalised score


def _generator(settings: GenerationSettings, device) -> torch.Generator | None:
    if not settings.do_sample:
        return None
    generator = torch.Generator(device=device)
    if settings.seed is None:
        generator.seed()
    else:
        generator.manual_seed(settings.seed)
    return generator


def _expand(step, logits: torch.Tensor, histories: list[list[int]], copies: int):
    """Each prompt's row repeated ``copies`` times, side by side (prefill ran once per prompt)."""
    if copies == 1:
        return logits, histories
    rows = torch.arange(logits.shape[0], device=logits.device).repeat_interleave(copies)
    step.reorder(rows)
    return logits.index_select(0, rows), [list(h) for h in histories for _ in range(copies)]


ARGMAX_CHUNK = 256


def greedy_tokens(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(-1)`` of (R, V) scores, the same index (the first maximum): on CPU
    torch's argmax over a 50k vocabulary runs at a tenth of the speed of ``amax``, so the
    maximum of each chunk of ``ARGMAX_CHUNK`` columns comes first, then argmax over the chunk
    maxima (the first chunk holding the maximum) and within that chunk alone."""
    rows, vocab = scores.shape
    if scores.device.type != "cpu" or vocab < 16 * ARGMAX_CHUNK:
        return scores.argmax(dim=-1)
    whole = vocab - vocab % ARGMAX_CHUNK
    maxima = scores[:, :whole].view(rows, -1, ARGMAX_CHUNK).amax(dim=-1)  # (R, chunks)
    if whole < vocab:
        maxima = torch.cat([maxima, scores[:, whole:].amax(dim=-1, keepdim=True)], dim=1)
    start = maxima.argmax(dim=-1, keepdim=True) * ARGMAX_CHUNK  # (R, 1)
    # Columns past the vocabulary (a short last chunk) read the last column again, after it.
    columns = (start + torch.arange(ARGMAX_CHUNK, device=scores.device)).clamp_(max=vocab - 1)
    return columns.gather(1, scores.gather(1, columns).argmax(dim=-1, keepdim=True)).squeeze(1)


def sample_or_greedy(step, histories: list[list[int]], settings: GenerationSettings, stopping: Stopping,
                     on_token: TokenCallback | None = None) -> SearchResult:
    processors = build_processors(settings)
    logits = step.prefill()
    logits, histories = _expand(step, logits, histories, settings.num_return_sequences)
    generator = _generator(settings, logits.device)
    generated: list[list[int]] = [[] for _ in histories]
    active = list(range(len(histories)))  # the rows still in the batch, by their original index
    while True:
        scores = apply(processors, [histories[row] for row in active], logits, settings, len(generated[active[0]]))
        if settings.do_sample:
            tokens = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)
        else:
            tokens = greedy_tokens(scores)
        for row, token in zip(active, tokens.tolist()):
            generated[row].append(token)
            histories[row].append(token)
            if on_token is not None:
                on_token(row, token)
        keep = [position for position, row in enumerate(active) if not stopping.finished(generated[row])]
        if not keep:
            return SearchResult(generated, None)
        if len(keep) < len(active):  # finished rows leave the batch (and the cache)
            kept = torch.tensor(keep, device=tokens.device)
            step.reorder(kept)
            tokens = tokens.index_select(0, kept)
            active = [active[position] for position in keep]
        logits = step.advance(tokens)


def beam_search(step, histories: list[list[int]], settings: GenerationSettings, stopping: Stopping) -> SearchResult:
    processors = build_processors(settings)
    beams, lp = settings.num_beams, settings.length_penalty
    logits = step.prefill()
    batch = logits.shape[0]
    logits, histories = _expand(step, logits, histories, beams)
    device, vocab = logits.device, logits.shape[-1]
    generator = _generator(settings, device)
    keep = max(2, 1 + len(settings.eos_token_ids)) * beams
    top_beams = torch.arange(keep, device=device) < beams
    longest = settings.max_new_tokens
    never = -1.0e9

    running = torch.zeros(batch, beams, longest, dtype=torch.long, device=device)
    running_scores = torch.zeros(batch, beams, device=device)
    running_scores[:, 1:] = never  # only the first copy of each prompt may start a beam
    finished = running.clone()
    finished_scores = torch.full((batch, beams), never, device=device)
    finished_lengths = torch.zeros(batch, beams, dtype=torch.long, device=device)
    is_finished = torch.zeros(batch, beams, dtype=torch.bool, device=device)
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
    prompts = histories[::beams]
    length = 0
    while True:
        log_probs = apply(processors, histories, torch.log_softmax(logits, dim=-1), settings, length)
        totals = (log_probs.view(batch, beams, vocab) + running_scores[:, :, None]).view(batch, -1)
        if settings.do_sample:
            picked = torch.multinomial(totals.softmax(dim=-1), keep, generator=generator)
            top_scores, order = totals.gather(1, picked).sort(dim=-1, descending=True)
            top_ids = picked.gather(1, order)
        else:
            top_scores, top_ids = torch.topk(totals, keep)
        source_beam, token = top_ids // vocab, top_ids % vocab
        candidates = running.gather(1, source_beam[:, :, None].expand(-1, -1, longest)).clone()
        candidates[:, :, length] = token
        prefix = candidates[:, :, : length + 1].tolist()
        hits = torch.tensor([[stopping.finished(seq) for seq in row] for row in prefix], device=device)

        # The best unfinished continuations run on.
        running_candidates = top_scores + hits.float() * never
        survivors = torch.topk(running_candidates, beams)[1]
        running = candidates.gather(1, survivors[:, :, None].expand(-1, -1, longest))
        running_scores = running_candidates.gather(1, survivors)
        source_rows = (source_beam.gather(1, survivors) + torch.arange(batch, device=device)[:, None] * beams).flatten()

        # Finished candidates among the top num_beams join the hypotheses if they beat them.
        just_finished = hits & top_beams[None, :]
        final_scores = top_scores / ((length + 1) ** lp)
        if settings.early_stopping is True:
            final_scores = final_scores + is_finished.all(-1, keepdim=True).float() * never
        final_scores = final_scores + (~improvable).float() * never + (~just_finished).float() * never
        merged_scores = torch.cat([finished_scores, final_scores], 1)
        best = torch.topk(merged_scores, beams)[1]
        finished = torch.cat([finished, candidates], 1).gather(1, best[:, :, None].expand(-1, -1, longest))
        finished_scores = merged_scores.gather(1, best)
        finished_lengths = torch.cat([finished_lengths, torch.full_like(top_scores, length + 1, dtype=torch.long)],
                                     1).gather(1, best)
        is_finished = torch.cat([is_finished, just_finished], 1).gather(1, best)

        length += 1
        best_length = longest if settings.early_stopping == "never" and lp > 0 else length
        best_running = running_scores[:, :1] / (best_length ** lp)
        worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True)[0], never)
        improvable = improvable & (best_running > worst_finished).any(dim=-1, keepdim=True)
        open_beams = not (bool(is_finished.all()) and settings.early_stopping is True)
        if not (bool(improvable.any()) and open_beams and not bool(hits.all())):
            break
        step.reorder(source_rows)
        new_tokens = running[:, :, length - 1].flatten()
        histories = [prompts[row // beams] + running[row // beams, row % beams, :length].tolist()
                     for row in range(batch * beams)]
        logits = step.advance(new_tokens)

    count = settings.num_return_sequences
    sequences = [finished[b, k, : finished_lengths[b, k]].tolist() for b in range(batch) for k in range(count)]
    return SearchResult(sequences, finished_scores[:, :count].flatten().tolist())
