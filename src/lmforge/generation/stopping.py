"""When a sequence is finished: it produced an end-of-sequence id, it reached max_new_tokens,
or its generated text contains a stop string (transformers' EosTokenCriteria,
MaxLengthCriteria and StopStringCriteria). The end token stays in the output, as there; a stop
string stays in the token ids but ``cut_at_stop`` removes it and what follows from the text."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lmforge.generation.settings import GenerationSettings


class Stopping:
    def __init__(self, settings: GenerationSettings, decode: Callable[[list[int]], str] | None = None) -> None:
        self.eos = frozenset(settings.eos_token_ids)
        self.max_new_tokens = settings.max_new_tokens
        self.stop_strings = settings.stop_strings
        if self.stop_strings and decode is None:
            raise ValueError("stop strings need a tokenizer to decode the generated tokens")
        self.decode = decode

    def finished(self, generated: Sequence[int]) -> bool:
        """Whether a sequence whose generated tokens are ``generated`` (the newest last) is done."""
        if len(generated) >= self.max_new_tokens or (generated and generated[-1] in self.eos):
            return True
        if self.stop_strings and generated:
            text = self.decode(list(generated))
            return any(stop in text for stop in self.stop_strings)
        return False

    def cut_at_stop(self, text: str) -> str:
        """The text up to the first stop string it contains."""
        cut = min((text.find(stop) for stop in self.stop_strings if stop in text), default=-1)
        return text if cut < 0 else text[:cut]
