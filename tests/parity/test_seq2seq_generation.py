"""Encoder-decoder generation against transformers' ``generate``, token for token, on the
random-weight BART, T5 v1.0 and T5 v1.1 models of the family parity tests (ported through
lmforge.families.bart / t5): greedy (also with repetition penalty and n-gram blocking) and beam
search (4 beams with length penalties, no_repeat_ngram_size and every early-stopping rule) on
a batch of sources of different lengths (right-padded for transformers; left-padded here, the
encoder running once and the decoder through its self- and cross-attention cache). The
decoder starts from each config's ``decoder_start_token_id`` (BART </s>, T5 <pad>); the
end-of-sequence id is a token the model produces, so finished beams are exercised."""

from collections import Counter

import pytest
import test_bart as bart
import test_t5 as t5
import torch
import transformers
from parity_helpers import port
from test_generation import SEARCHES, _prompts, _up_to_eos

from lmforge.errors import UserError
from lmforge.families import bart as bart_family
from lmforge.families import t5 as t5_family
from lmforge.generation import GenerationSettings, generate_ids


def _bart():
    reference = bart._randomized(transformers.BartForConditionalGeneration)
    config = bart_family.config_from_hf(bart.HF_CONFIG.to_dict())
    return reference, port(reference, config, bart_family.WEIGHTS, "seq2seq_lm")


def _t5(version):
    reference = t5._randomized(transformers.T5ForConditionalGeneration, version)
    config = t5_family.config_from_hf(t5.hf_dict(version))
    return reference, port(reference, config, t5_family.WEIGHTS, "seq2seq_lm")


MODELS = {"bart": _bart, "t5 v1.0": lambda: _t5("v1.0"), "t5 v1.1": lambda: _t5("v1.1")}


@pytest.fixture(scope="module", params=sorted(MODELS))
def seq2seq(request):
    return request.param, *MODELS[request.param]()


def _frequent_token(ours, sources, pad) -> int:
    first = generate_ids(ours, sources, GenerationSettings(max_new_tokens=8, num_beams=4, num_return_sequences=4),
                         pad_id=pad).sequences
    return Counter(t for row in first for t in row[1:6]).most_common(1)[0][0]


def _hf_generate(reference, start, sources, pad, options, **generation):
    width = max(len(s) for s in sources)
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in sources])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sources])
    # Replace the model's defaults (BART's forced_eos_token_id) rather than merge with them.
    reference.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=start, pad_token_id=pad, **generation)
    with torch.no_grad():
        out = reference.generate(input_ids=ids, attention_mask=mask, do_sample=False, **options)
    return out[:, 1:].tolist()  # transformers' rows open with the start token


@pytest.mark.parametrize("search", SEARCHES)
def test_seq2seq_generation_equals_transformers(seq2seq, search):
    name, reference, ours = seq2seq
    options = SEARCHES[search]
    sources = _prompts(reference.config.vocab_size)
    pad = reference.config.pad_token_id
    eos = _frequent_token(ours, sources, pad)
    theirs = _up_to_eos(_hf_generate(reference, ours.config.decoder_start_token_id, sources, pad, options,
                                     eos_token_id=eos), eos)
    # No decoder_start_token_id given: the config's (BART 2, T5 0) is the one transformers uses.
    mine = generate_ids(ours, sources, GenerationSettings(eos_token_ids=(eos,), **options), pad_id=pad).sequences
    assert mine == theirs, f"{name}, {search}"
    if search == "beam 4":  # some returned beams finished on the end token, others ran to the length limit
        assert {row[-1] == eos for row in mine} == {True, False}


def test_each_source_alone_gives_the_batched_result(seq2seq):
    _, reference, ours = seq2seq
    sources = _prompts(reference.config.vocab_size)
    settings = GenerationSettings(**SEARCHES["beam 4, no-repeat 3-grams, length penalty 0.7, early stopping"])
    batched = generate_ids(ours, sources, settings).sequences
    assert batched == [row for source in sources for row in generate_ids(ours, [source], settings).sequences]


def test_seq2seq_inputs_and_outputs_must_fit_learned_positions():
    _, ours = _bart()  # 32 learned positions per stack
    with pytest.raises(UserError, match="input 1 has 40 tokens; this encoder reads at most 32"):
        generate_ids(ours, [[5] * 40], GenerationSettings())
    with pytest.raises(UserError, match="exceeds the decoder's 32 positions"):
        generate_ids(ours, [[5]], GenerationSettings(max_new_tokens=32))
    assert len(generate_ids(ours, [[5]], GenerationSettings(max_new_tokens=31, eos_token_ids=())).sequences[0]) == 31


@pytest.mark.parametrize("search", ["greedy", "beam 4"])
def test_bart_with_transformers_default_generation_config(search):
    """transformers' generate with BART's own defaults (config.json: decoder start </s>, end </s>,
    pad <pad>, forced_eos_token_id </s>): the last of max_new_tokens is forced to </s>."""
    reference, ours = _bart()
    sources = _prompts(reference.config.vocab_size)
    options = {**SEARCHES[search], "max_new_tokens": 6}
    width = max(len(s) for s in sources)
    ids = torch.tensor([s + [1] * (width - len(s)) for s in sources])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sources])
    assert reference.generation_config.forced_eos_token_id == 2
    with torch.no_grad():
        theirs = _up_to_eos(reference.generate(input_ids=ids, attention_mask=mask, **options)[:, 1:].tolist(), 2)
    settings = GenerationSettings(eos_token_ids=(2,), forced_eos_token_id=2, **options)
    mine = generate_ids(ours, sources, settings, pad_id=1).sequences
    assert mine == theirs
    assert all(row[-1] == 2 and len(row) <= 6 for row in mine)
    unforced = generate_ids(ours, sources, GenerationSettings(eos_token_ids=(2,), **options), pad_id=1).sequences
    assert unforced != mine  # the forcing is what made them equal


def test_forced_eos_must_be_a_token_id():
    with pytest.raises(UserError, match="forced_eos_token_id must be an integer >= 0"):
        GenerationSettings(forced_eos_token_id=-1)
