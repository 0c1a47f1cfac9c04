"""T5's sentinel tokens (Raffel et al. 2020 §3.1.4): ``<extra_id_0>``, ``<extra_id_1>``, ...
each replace one corrupted span in the input and introduce it in the target. T5 vocabularies
put them at the top of the id range, ``<extra_id_0>`` highest (transformers' T5Tokenizer
``extra_ids``); objectives and text-to-text tasks look them up here by name, so any tokenizer
that has them works and one without them fails early with one clear line."""

from __future__ import annotations

from lmforge.errors import UserError

SENTINEL_PATTERN = "<extra_id_{}>"


def sentinel_ids(tokenizer, count: int) -> list[int]:
    """Ids of ``<extra_id_0>`` ... ``<extra_id_{count-1}>`` in that order (an lmforge
    ``Tokenizer``, or anything with ``backend.token_to_id``)."""
    if count < 0:
        raise UserError(f"sentinel count must be >= 0, got {count}")
    ids = [tokenizer.backend.token_to_id(SENTINEL_PATTERN.format(i)) for i in range(count)]
    if None in ids:
        found = ids.index(None)
        where = "no sentinel tokens" if found == 0 else f"only {found} sentinel tokens"
        raise UserError(f"the tokenizer's vocabulary has {where} (<extra_id_0> ... <extra_id_{count - 1}> needed); "
                        "use a T5 vocabulary (tokenizer kind t5_unigram, or a T5 checkpoint's spiece.model)")
    return ids
