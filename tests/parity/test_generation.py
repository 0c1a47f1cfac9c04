"""lmforge's generation against transformers' ``generate`` on the same random-weight models
(ported with the core parity tests' weight maps): greedy and beam search token for token on
batched prompts of different lengths (left padding in transformers, the KV cache here), for
GPT-2 and LLaMA with grouped-query attention (the encoder-decoders BART and T5 are in
test_seq2seq_generation.py). Weights come from ``randomize`` (std 0.2), so logits are far apart
and argmax / top-k never meet near-ties.
The end-of-sequence id is a token the models do produce, so finished beams are exercised."""

from collections import Counter

import pytest
import test_gpt2_core as gpt2
import test_llama_core as llama
import torch
import transformers
from parity_helpers import port, randomize, sequences

from lmforge.generation import GenerationSettings, generate_ids

PAD = 0
SEARCHES = {
    "greedy": {"max_new_tokens": 10},
    "greedy, repetition penalty, no-repeat 2-grams": {"max_new_tokens": 12, "repetition_penalty": 1.5,
                                                      "no_repeat_ngram_size": 2},
    "beam 4": {"max_new_tokens": 10, "num_beams": 4, "num_return_sequences": 4},
    "beam 4, no-repeat 3-grams, length penalty 0.7, early stopping": {
        "max_new_tokens": 10, "num_beams": 4, "no_repeat_ngram_size": 3, "length_penalty": 0.7,
        "num_return_sequences": 2, "early_stopping": True},
    "beam 4, length penalty 2, never": {"max_new_tokens": 10, "num_beams": 4, "length_penalty": 2.0,
                                        "num_return_sequences": 3, "early_stopping": "never"},
    "beam 3, length penalty -1": {"max_new_tokens": 9, "num_beams": 3, "length_penalty": -1.0,
                                  "num_return_sequences": 3},
}


def _decoder(module, reference_class, name):
    torch.manual_seed(0)
    reference = randomize(reference_class(module.HF_CONFIG).eval())
    return name, reference, port(reference, module.core_config(module.HF_CONFIG), module.WEIGHTS, "causal_lm")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def decoder(request):
    if request.param == "gpt2":
        return _decoder(gpt2, transformers.GPT2LMHeadModel, "GPT-2")
    return _decoder(llama, transformers.LlamaForCausalLM, "LLaMA (grouped-query attention)")


def _prompts(vocab: int) -> list[list[int]]:
    return [s.tolist() for s in sequences(vocab, lengths=(7, 4, 1, 5))]


def _up_to_eos(rows: list[list[int]], eos: int) -> list[list[int]]:
    """transformers pads finished rows after their end token; the generated part ends there."""
    return [row[: row.index(eos) + 1] if eos in row else row for row in rows]


def _frequent_token(model, prompts) -> int:
    """A token the model generates often (but not first): the end id that makes beams finish."""
    out = generate_ids(model, prompts, GenerationSettings(max_new_tokens=8, num_beams=4, num_return_sequences=4))
    return Counter(t for row in out.sequences for t in row[1:6]).most_common(1)[0][0]


def _hf_decoder_generate(reference, prompts, eos, options):
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    out = reference.generate(input_ids=ids, attention_mask=mask, pad_token_id=PAD, eos_token_id=eos,
                             do_sample=False, **options)
    return _up_to_eos(out[:, width:].tolist(), eos)


@pytest.mark.parametrize("search", SEARCHES)
def test_decoder_generation_equals_transformers(decoder, search):
    name, reference, ours = decoder
    options = SEARCHES[search]
    prompts = _prompts(reference.config.vocab_size)
    eos = _frequent_token(ours, prompts)
    theirs = _hf_decoder_generate(reference, prompts, eos, options)
    mine = generate_ids(ours, prompts, GenerationSettings(eos_token_ids=(eos,), **options), pad_id=PAD).sequences
    assert mine == theirs, f"{name}, {search}"
    if search == "beam 4":  # some returned beams finished on the end token, others ran to the length limit
        assert {row[-1] == eos for row in mine} == {True, False}


def test_each_prompt_alone_gives_the_batched_result(decoder):
    _, _, ours = decoder
    prompts = _prompts(ours.config.vocab_size)
    settings = GenerationSettings(**SEARCHES["beam 4, no-repeat 3-grams, length penalty 0.7, early stopping"])
    batched = generate_ids(ours, prompts, settings).sequences
    alone = [row for prompt in prompts for row in generate_ids(ours, [prompt], settings).sequences]
    assert batched == alone
