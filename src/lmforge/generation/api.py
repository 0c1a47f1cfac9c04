"""``lmforge.generate``: text in, text out, for decoder-only (GPT, GPT-2, LLaMA) and
encoder-decoder (BART, T5) models with a language-model head.

    result = lmforge.generate(model, tokenizer, ["Once upon a time"], max_new_tokens=30)
    result.texts[0], result.token_ids[0]

Prompts longer than the context window keep their last tokens (truncated from the left, with a
warning): a decoder's prompt plus ``max_new_tokens`` must fit its ``max_positions``, and a
``max_new_tokens`` that leaves no room for a prompt is an error. ``generate_ids`` is the same on
token ids, without a tokenizer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lmforge.errors import UserError
from lmforge.generation.search import SearchResult, TokenCallback, beam_search, sample_or_greedy
from lmforge.generation.settings import GenerationSettings
from lmforge.generation.steps import CausalLMStep, Seq2SeqStep
from lmforge.generation.stopping import Stopping

GENERATIVE_TASKS = ("causal_lm", "seq2seq_lm")


@dataclass
class Generated:
    """One entry per returned sequence, prompt-major (prompt i's sequences are at
    ``i * num_return_sequences ...``), as transformers orders them."""

    texts: list[str]  # the generated continuation (prompt not included), cut before a stop string
    token_ids: list[list[int]]  # the generated ids (an end token included, as transformers keeps it)
    prompt_index: list[int]
    scores: list[float] | None = None  # beam search: length-penalised log-probability


def check_generative(model) -> None:
    task = getattr(model, "task", None)
    if task not in GENERATIVE_TASKS:
        raise UserError(f"generation needs a model with a language-model head (a causal_lm decoder or a "
                        f"seq2seq_lm encoder-decoder); this one is a {task or type(model).__name__} model")


def fit_context(prompts: list[list[int]], model, max_new_tokens: int,
                warn: Callable[[str], None] | None = None) -> list[list[int]]:
    """Decoder prompts cut from the left so that prompt + new tokens fit the positions; an
    encoder-decoder's inputs and outputs must fit its learned positions (relative ones have no limit)."""
    positions = model.config.max_positions
    if model.task != "causal_lm":
        if model.config.positions == "learned":
            for index, source in enumerate(prompts):
                if len(source) > positions:
                    raise UserError(f"input {index + 1} has {len(source)} tokens; this encoder reads at most "
                                    f"{positions}")
            if max_new_tokens + 1 > positions:
                raise UserError(f"max_new_tokens {max_new_tokens} exceeds the decoder's {positions} positions "
                                "(the start token takes one)")
        return prompts
    room = positions - max_new_tokens
    if room < 1:
        raise UserError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the model's "
                        f"{positions} positions; ask for at most {positions - 1}")
    fitted = []
    for index, prompt in enumerate(prompts):
        if len(prompt) > room:
            (warn or _warn)(f"prompt {index + 1} has {len(prompt)} tokens; keeping its last {room} so that "
                            f"{max_new_tokens} new tokens fit the model's {positions} positions")
            prompt = prompt[len(prompt) - room:]
        fitted.append(prompt)
    return fitted


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


@torch.inference_mode()
def generate_ids(model, prompts: Sequence[Sequence[int]], settings: GenerationSettings, *, pad_id: int = 0,
                 decoder_start_token_id: int | None = None, decode: Callable[[list[int]], str] | None = None,
                 on_token: TokenCallback | None = None, warn: Callable[[str], None] | None = None) -> SearchResult:
    """Generate from token-id prompts (for an encoder-decoder: the source ids). ``on_token``
    (greedy and sampling) hears each new token as it is chosen, by row."""
    check_generative(model)
    prompts = [list(map(int, p)) for p in prompts]
    if not prompts:
        raise UserError("no prompts to generate from")
    for index, prompt in enumerate(prompts):
        if not prompt:
            raise UserError(f"prompt {index + 1} is empty")
    was_training = model.training
    model.eval()
    try:
        prompts = fit_context(prompts, model, settings.max_new_tokens, warn)
        if model.task == "causal_lm":
            step, histories = CausalLMStep(model, prompts, pad_id, settings.max_new_tokens), prompts
        else:
            start = decoder_start_token_id
            if start is None:  # the config's (BART </s>, T5 <pad>); a config without one: the pad token
                start = model.config.decoder_start_token_id
                start = model.config.pad_token_id if start is None else start
            step, histories = Seq2SeqStep(model, prompts, start, pad_id), [[start] for _ in prompts]
        stopping = Stopping(settings, decode)
        histories = [list(h) for h in histories]
        if settings.beam_search:
            return beam_search(step, histories, settings, stopping)
        return sample_or_greedy(step, histories, settings, stopping, on_token)
    finally:
        model.train(was_training)


def generate(model, tokenizer, prompts: str | Sequence[str], *, max_new_tokens: int = 20, do_sample: bool = False,
             temperature: float = 1.0, top_k: int = 50, top_p: float = 1.0, repetition_penalty: float = 1.0,
             no_repeat_ngram_size: int = 0, num_beams: int = 1, length_penalty: float = 1.0,
             early_stopping: bool | str = False, num_return_sequences: int = 1, stop: str | Sequence[str] = (),
             seed: int | None = None, eos_token_id: int | Sequence[int] | None = None,
             forced_eos_token_id: int | None = None, decoder_start_token_id: int | None = None,
             on_token: TokenCallback | None = None) -> Generated:
    """Continue each prompt (a string or a list of strings); see ``GenerationSettings`` for the
    options (transformers' ``generate`` names and defaults). ``eos_token_id`` defaults to the
    tokenizer's end token; ``stop`` strings end a sequence once its text contains one."""
    check_generative(model)
    if tokenizer is None:
        raise UserError("generation needs the model's tokenizer (the checkpoint has no tokenizer files)")
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            raise UserError(f"prompt {index + 1} is empty")
    eos = tokenizer.eos_id if eos_token_id is None else eos_token_id
    eos_ids = () if eos is None else ((eos,) if isinstance(eos, int) else tuple(eos))
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
                                  top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                                  no_repeat_ngram_size=no_repeat_ngram_size, num_beams=num_beams,
                                  length_penalty=length_penalty, early_stopping=early_stopping,
                                  num_return_sequences=num_return_sequences, eos_token_ids=eos_ids,
                                  forced_eos_token_id=forced_eos_token_id,
                                  stop_strings=stops, seed=seed)
    check_stop_strings(tokenizer, stops)
    encoded = tokenizer(texts, max_length=None, padding=False, return_tensors=None)["input_ids"]
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else (eos_ids[0] if eos_ids else 0)

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True)

    result = generate_ids(model, encoded, settings, pad_id=pad_id, decoder_start_token_id=decoder_start_token_id,
                          decode=decode, on_token=on_token)
    stopping = Stopping(settings, decode)
    per_prompt = len(result.sequences) // len(texts)
    return Generated([stopping.cut_at_stop(decode(ids)) for ids in result.sequences], result.sequences,
                     [i // per_prompt for i in range(len(result.sequences))], result.scores)


def check_stop_strings(tokenizer, stops: Sequence[str]) -> None:
    """A stop string the tokenizer cannot produce (it encodes to the unknown token) never matches."""
    unk = tokenizer.unk_id
    for stop in stops:
        if not stop:
            raise UserError("a stop string must not be empty")
        ids = tokenizer.encode(stop, add_special_tokens=False)["input_ids"]
        if unk is not None and unk in ids and tokenizer.decode(ids) != stop:
            raise UserError(f"stop string {stop!r} holds text this tokenizer cannot produce (it encodes to the "
                            "unknown token), so it could never stop generation")
