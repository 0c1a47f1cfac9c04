"""lmforge's generation against transformers' ``generate`` on the same random-weight models
(ported with the core parity tests' weight maps): greedy and beam search token for token on
batched prompts of different lengths (left padding in transformers, the KV cache here), for
GPT-2, LLaMA with grouped-query attention, and the encoder-decoders BART and T5. Weights come
from ``randomize`` (std 0.2), so logits are far apart and argmax / top-k never meet near-ties.
The end-of-sequence id is a token the models do produce, so finished beams are exercised."""

from collections import Counter

import pytest
import test_bart_core as bart
import test_gpt2_core as gpt2
import test_llama_core as llama
import test_t5_core as t5
import torch
import transformers
from parity_helpers import port, randomize, sequences

from lmforge.errors import UserError
from lmforge.families.weights import WeightMap
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


# -- encoder-decoders ---------------------------------------------------------------------

def _bart():
    torch.manual_seed(0)
    reference = randomize(transformers.BartForConditionalGeneration(bart.HF_CONFIG).eval())
    reference.final_logits_bias.normal_()
    return reference, port(reference, bart.core_config(bart.HF_CONFIG), bart.WEIGHTS, "seq2seq_lm"), 2


def _t5():
    torch.manual_seed(0)
    reference = randomize(transformers.T5ForConditionalGeneration(t5.HF_CONFIG).eval(), std=0.1)
    config = t5.core_config(t5.HF_CONFIG).replace(tie_word_embeddings=False)
    weights = WeightMap(t5.WEIGHTS.rules + [("lm_head.decoder", "lm_head")])
    ours = port(reference, config, weights, "seq2seq_lm")
    with torch.no_grad():  # T5 v1.0's tied head reads h * d_model^-0.5; the core has no rescale yet (issue 11)
        ours.lm_head.decoder.weight.mul_(t5.HF_CONFIG.d_model ** -0.5)
    return reference, ours, 0


@pytest.fixture(scope="module", params=["bart", "t5"])
def seq2seq(request):
    return (_bart if request.param == "bart" else _t5)()


@pytest.mark.parametrize("search", ["greedy", "beam 4, no-repeat 3-grams, length penalty 0.7, early stopping",
                                    "beam 4, length penalty 2, never"])
def test_seq2seq_generation_equals_transformers(seq2seq, search):
    reference, ours, start = seq2seq
    options = SEARCHES[search]
    sources = _prompts(reference.config.vocab_size)
    pad = reference.config.pad_token_id
    first = generate_ids(ours, sources, GenerationSettings(max_new_tokens=8, num_beams=4, num_return_sequences=4),
                         pad_id=pad, decoder_start_token_id=start).sequences
    eos = Counter(t for row in first for t in row[1:6]).most_common(1)[0][0]
    width = max(len(s) for s in sources)
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in sources])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sources])
    # Replace the model's defaults (BART's forced_eos_token_id) rather than merge with them.
    reference.generation_config = transformers.GenerationConfig(decoder_start_token_id=start, pad_token_id=pad,
                                                                eos_token_id=eos)
    out = reference.generate(input_ids=ids, attention_mask=mask, do_sample=False, **options)
    theirs = _up_to_eos(out[:, 1:].tolist(), eos)  # transformers' rows open with the start token
    mine = generate_ids(ours, sources, GenerationSettings(eos_token_ids=(eos,), **options), pad_id=pad,
                        decoder_start_token_id=start).sequences
    assert mine == theirs, search


def test_seq2seq_inputs_and_outputs_must_fit_learned_positions():
    _, ours, start = _bart()  # 32 learned positions per stack
    with pytest.raises(UserError, match="input 1 has 40 tokens; this encoder reads at most 32"):
        generate_ids(ours, [[5] * 40], GenerationSettings(), decoder_start_token_id=start)
    with pytest.raises(UserError, match="exceeds the decoder's 32 positions"):
        generate_ids(ours, [[5]], GenerationSettings(max_new_tokens=32), decoder_start_token_id=start)
    assert len(generate_ids(ours, [[5]], GenerationSettings(max_new_tokens=31, eos_token_ids=()),
                            decoder_start_token_id=start).sequences[0]) == 31
