"""What a generation run is asked to do, checked once before any model work.

Field names and defaults follow transformers' ``GenerationConfig`` (``generate`` semantics:
sampling applies temperature, top-k 50 and top-p only with ``do_sample``; beam search keeps
``num_beams`` hypotheses and scores finished ones by sum log-probs / length ** length_penalty;
``early_stopping`` True / False / "never"). Mistakes are one-line ``UserError``s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lmforge.errors import UserError


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 20
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50  # transformers' default; 0 keeps every token (only with do_sample)
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    eos_token_ids: tuple[int, ...] = ()
    # transformers' ForcedEOSTokenLogitsProcessor: the last of max_new_tokens is always this
    # token (BART's config.json sets forced_eos_token_id to </s>). None: off.
    forced_eos_token_id: int | None = None
    stop_strings: tuple[str, ...] = field(default=())
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "eos_token_ids", tuple(int(i) for i in self.eos_token_ids))
        object.__setattr__(self, "stop_strings", tuple(self.stop_strings))
        _check_int(self.max_new_tokens, "max_new_tokens", 1)
        _check_int(self.num_beams, "num_beams", 1)
        _check_int(self.num_return_sequences, "num_return_sequences", 1)
        _check_int(self.no_repeat_ngram_size, "no_repeat_ngram_size", 0)
        _check_int(self.top_k, "top_k", 0)
        if self.forced_eos_token_id is not None:
            _check_int(self.forced_eos_token_id, "forced_eos_token_id", 0)
        if not 0.0 < float(self.top_p) <= 1.0:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.do_sample and not float(self.temperature) > 0.0:
            raise UserError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not float(self.repetition_penalty) > 0.0:
            raise UserError(f"repetition_penalty must be > 0 (1 = none), got {self.repetition_penalty}")
        if self.early_stopping not in (True, False, "never"):
            raise UserError(f'early_stopping must be True, False or "never", got {self.early_stopping!r}')
        if self.num_return_sequences > 1 and self.num_beams == 1 and not self.do_sample:
            raise UserError("num_return_sequences > 1 needs beam search (num_beams > 1) or sampling: "
                            "greedy decoding returns one sequence per prompt")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise UserError(f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams "
                            f"({self.num_beams})")
        for stop in self.stop_strings:
            if not isinstance(stop, str) or not stop:
                raise UserError(f"stop strings must be non-empty text, got {stop!r}")

    @property
    def beam_search(self) -> bool:
        return self.num_beams > 1


def _check_int(value, name: str, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UserError(f"{name} must be an integer >= {least}, got {value!r}")
