"""Logits processors against transformers' own classes on the same scores, and sampling:
seeded runs repeat, and no sampled token lies outside the top-k / top-p set of its step."""

import pytest
import torch
import transformers.generation.logits_process as hf

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.generation import GenerationSettings, generate_ids
from lmforge.generation.processors import banned_ngram_continuations, no_repeat_ngram, repetition_penalty, top_k, top_p
from lmforge.models.build import build_model

VOCAB = 61


def _scores(rows=3, seed=0):
    return torch.randn(rows, VOCAB, generator=torch.Generator().manual_seed(seed)) * 3


HISTORIES = [[5, 6, 7, 5, 6], [1, 2, 3, 4, 1, 2], [9]]


def _padded(histories):
    width = max(map(len, histories))
    return torch.tensor([h + [0] * (width - len(h)) for h in histories])  # right fill: unused below


@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_repetition_penalty_matches_transformers(penalty):
    scores = _scores()
    theirs = torch.stack([hf.RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([h]), scores[i:i + 1].clone())[0]
                          for i, h in enumerate(HISTORIES)])
    assert torch.equal(repetition_penalty(penalty)(HISTORIES, scores.clone()), theirs)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_no_repeat_ngram_matches_transformers(size):
    scores = _scores()
    theirs = torch.stack([hf.NoRepeatNGramLogitsProcessor(size)(torch.tensor([h]), scores[i:i + 1].clone())[0]
                          for i, h in enumerate(HISTORIES)])
    assert torch.equal(no_repeat_ngram(size)(HISTORIES, scores), theirs)
    assert banned_ngram_continuations([5, 6, 7, 5, 6], 3) == [7]


@pytest.mark.parametrize("k,keep", [(5, 1), (1, 2), (200, 1)])
def test_top_k_matches_transformers(k, keep):
    scores = _scores()
    assert torch.equal(top_k(k, keep)(HISTORIES, scores), hf.TopKLogitsWarper(k, min_tokens_to_keep=keep)(None, scores))


@pytest.mark.parametrize("p,keep", [(0.9, 1), (0.3, 1), (0.01, 2), (1.0, 1)])
def test_top_p_matches_transformers(p, keep):
    scores = _scores()
    assert torch.equal(top_p(p, keep)(HISTORIES, scores), hf.TopPLogitsWarper(p, min_tokens_to_keep=keep)(None, scores))


@pytest.fixture(scope="module")
def model():
    config = ModelConfig(family="test", architecture="decoder", vocab_size=VOCAB, hidden_size=32, num_layers=2,
                         num_heads=4, intermediate_size=64, max_positions=64, type_vocab_size=0,
                         norm_placement="pre", final_norm=True, embedding_norm=False, pooler=False,
                         hidden_dropout=0.0, attention_dropout=0.0, initializer_range=0.3)
    return build_model(config, "causal_lm", seed=0).eval()


PROMPTS = [[3, 4, 5, 6], [7], [8, 9]]


def _sample(model, **options):
    settings = GenerationSettings(do_sample=True, max_new_tokens=8, num_return_sequences=3, **options)
    return generate_ids(model, PROMPTS, settings).sequences


def test_seeded_sampling_repeats(model):
    first = _sample(model, seed=11, top_k=0)
    assert _sample(model, seed=11, top_k=0) == first
    assert _sample(model, seed=12, top_k=0) != first
    assert len(first) == len(PROMPTS) * 3 and all(len(row) == 8 for row in first)


def _step_logits(model, prompt, generated):
    """Each step's next-token logits, recomputed without a cache."""
    with torch.no_grad():
        ids = torch.tensor([prompt + generated])
        return model(ids)[0, len(prompt) - 1: -1]


@pytest.mark.parametrize("options", [{"top_k": 4}, {"top_k": 0, "top_p": 0.5},
                                     {"top_k": 3, "top_p": 0.8, "temperature": 0.7}])
def test_sampled_tokens_stay_inside_the_allowed_set(model, options):
    rows = _sample(model, seed=3, **options)
    allowed_sizes = []
    for index, generated in enumerate(rows):
        logits = _step_logits(model, PROMPTS[index // 3], generated) / options.get("temperature", 1.0)
        for step, token in enumerate(generated):
            scores = logits[step:step + 1]
            if options.get("top_k"):
                scores = hf.TopKLogitsWarper(options["top_k"])(None, scores)
            if options.get("top_p", 1.0) < 1.0:
                scores = hf.TopPLogitsWarper(options["top_p"])(None, scores)
            allowed = torch.isfinite(scores[0])
            assert allowed[token], f"row {index} step {step}: token {token} outside the allowed set"
            allowed_sizes.append(int(allowed.sum()))
    assert max(allowed_sizes) > 1 and max(allowed_sizes) < VOCAB  # the filter bit, and sampling had a choice


def test_top_k_1_sampling_is_greedy(model):
    greedy = generate_ids(model, PROMPTS, GenerationSettings(max_new_tokens=8)).sequences
    sampled = generate_ids(model, PROMPTS, GenerationSettings(max_new_tokens=8, do_sample=True, top_k=1, seed=5))
    assert sampled.sequences == greedy


def test_beam_sampling_runs_seeded(model):
    settings = GenerationSettings(max_new_tokens=6, do_sample=True, num_beams=3, num_return_sequences=2, seed=1)
    first = generate_ids(model, PROMPTS, settings)
    assert generate_ids(model, PROMPTS, settings).sequences == first.sequences
    assert len(first.sequences) == 6 and first.scores == sorted(first.scores[:2], reverse=True) + first.scores[2:]


@pytest.mark.parametrize("options,message", [
    ({"max_new_tokens": 0}, "max_new_tokens"), ({"max_new_tokens": -3}, "max_new_tokens"),
    ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"do_sample": True, "temperature": 0.0}, "temperature"), ({"do_sample": True, "temperature": -1.0}, "temperature"),
    ({"num_beams": 0}, "num_beams"), ({"num_return_sequences": 2}, "num_return_sequences"),
    ({"num_beams": 2, "num_return_sequences": 3}, "cannot exceed"), ({"early_stopping": "sometimes"}, "early_stopping"),
    ({"stop_strings": ("",)}, "stop strings"), ({"repetition_penalty": 0.0}, "repetition_penalty"),
])
def test_bad_settings_are_one_line_errors(options, message):
    with pytest.raises(UserError, match=message) as error:
        GenerationSettings(**options)
    assert "\n" not in str(error.value)


def test_bad_prompts_and_models(model):
    with pytest.raises(UserError, match="prompt 2 is empty"):
        generate_ids(model, [[3], []], GenerationSettings())
    with pytest.raises(UserError, match="no room"):
        generate_ids(model, [[3]], GenerationSettings(max_new_tokens=64))
    encoder = build_model(model.config.replace(architecture="encoder"), "masked_lm")
    with pytest.raises(UserError, match="language-model head"):
        generate_ids(encoder, [[3]], GenerationSettings())


def test_long_prompts_keep_their_last_tokens(model, capsys):
    long_prompt = list(range(3, 60)) + [4, 5, 6, 7, 8, 9, 10]  # 64 tokens; 60 fit beside 4 new ones
    out = generate_ids(model, [long_prompt], GenerationSettings(max_new_tokens=4)).sequences
    assert out == generate_ids(model, [long_prompt[-60:]], GenerationSettings(max_new_tokens=4)).sequences
    assert "keeping its last 60" in capsys.readouterr().err
