"""Sliding-window perplexity against the loop of transformers' guide "Perplexity of fixed-length
models", run on the same random-weight GPT-2 and LLaMA (ported with the core parity tests'
weight maps), with stride < max_length so windows overlap and only new tokens are scored."""

import math

import pytest
import test_gpt2_core as gpt2
import test_llama_core as llama
import torch
import transformers
from parity_helpers import port, randomize

from lmforge.generation.sliding_perplexity import perplexity, windows

TEXT_TOKENS = 150


def guide_loop(reference, ids: torch.Tensor, max_length: int, stride: int, count_every_token: bool = False) -> float:
    """The guide's loop; ``count_every_token`` weights each window by the tokens it scores."""
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    seq_len = ids.size(1)
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = ids[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = reference(input_ids, labels=target_ids).loss
        num_valid_tokens = (target_ids != -100).sum().item()
        num_loss_tokens = num_valid_tokens - target_ids.size(0)  # the guide's "internal label shift"
        if count_every_token:
            num_loss_tokens = (target_ids[:, 1:] != -100).sum().item()
        nll_sum += loss.item() * num_loss_tokens
        n_tokens += num_loss_tokens
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return math.exp(nll_sum / n_tokens)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def pair(request):
    module, model_class = {"gpt2": (gpt2, transformers.GPT2LMHeadModel),
                           "llama": (llama, transformers.LlamaForCausalLM)}[request.param]
    torch.manual_seed(0)
    # std 0.05: perplexities of a few dozen, where a relative error would show.
    reference = randomize(model_class(module.HF_CONFIG).eval(), std=0.05)
    return reference, port(reference, module.core_config(module.HF_CONFIG), module.WEIGHTS, "causal_lm")


@pytest.mark.parametrize("max_length,stride", [(32, 8), (24, 24), (32, 13)])
def test_perplexity_equals_the_guide_loop(pair, max_length, stride):
    reference, ours = pair
    ids = torch.randint(3, reference.config.vocab_size, (1, TEXT_TOKENS), generator=torch.Generator().manual_seed(4))
    for guide_weighting in (True, False):
        theirs = guide_loop(reference, ids, max_length, stride, count_every_token=not guide_weighting)
        mine = perplexity(ours, ids[0], max_length=max_length, stride=stride, guide_weighting=guide_weighting)
        assert abs(mine.perplexity / theirs - 1) < 1e-4, (guide_weighting, mine.perplexity, theirs)
    assert mine.windows == len(list(windows(TEXT_TOKENS, max_length, stride)))


def test_windows_score_every_token_once():
    for length, max_length, stride in [(150, 32, 8), (10, 32, 8), (100, 20, 20), (101, 20, 7)]:
        scored = []
        for begin, end, new in windows(length, max_length, stride):
            assert end - begin <= max_length and new <= end - begin
            scored.extend(range(end - new, end))
        assert scored == list(range(length))
