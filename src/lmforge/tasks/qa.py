"""SQuAD v1.1 span extraction: sliding-window features and answer decoding.

Follows google-research/bert ``run_squad.py`` (BERT paper, section 4.2):

- The question is cut to ``max_query_length`` tokens. The input is
  ``[CLS] question [SEP] window [SEP]``; a long context is covered by windows of
  ``max_length - len(question) - specials`` tokens (3 specials for BERT, 4 for RoBERTa's
  ``<s> q </s></s> c </s>``) whose starts are ``doc_stride`` tokens apart
  (``doc_stride`` is the step, as in run_squad; Hugging Face's ``stride`` is the overlap).
- Training target: the first and last token of the answer when the whole answer lies in the
  window, else position 0 (``[CLS]``), as run_squad does for v1.1 training.
- Decoding: per window, the ``n_best`` highest start and end logits are paired; a pair is
  kept when both tokens are context tokens, end >= start and the span has at most
  ``max_answer_length`` tokens; its score is start_logit + end_logit. The best pair over all
  windows of an example wins and is mapped back to the context text through the token's
  character offsets (Hugging Face's ``run_qa.py`` postprocessing; run_squad instead
  re-aligns WordPiece text to whitespace words, which offsets make unnecessary).

Windows come from the tokenizers library's overflow truncation, whose windows start at
0, w - s, 2(w - s), ... for window size w and overlap s, and stop once a window reaches the
end of the context: exactly run_squad's loop with doc_stride = w - s.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmforge.errors import UserError
from lmforge.tasks import backend_of, truncating
from lmforge.tasks.readers import QAExample

Offsets = tuple[int, int] | None  # character span in the context; None off the context


def prepare_qa_features(
    examples: Sequence[QAExample],
    tokenizer: Any,
    max_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
) -> list[dict[str, Any]]:
    """One feature per window, in example order:
    ``{"input_ids", "token_type_ids", "example_index", "offsets", "start_position", "end_position"}``.

    ``offsets[i]`` is the (start, end) character span of token i in the context, or None for
    question and special tokens. ``start_position``/``end_position`` locate the first
    answer (token indices, 0 = [CLS] when it is not in the window); examples without answers
    get 0 as well.
    """
    if doc_stride < 1 or max_query_length < 1:
        raise UserError("doc_stride and max_query_length must be at least 1")
    backend = backend_of(tokenizer)
    specials = backend.num_special_tokens_to_add(True)
    questions = _cut_questions(backend, [e.question for e in examples], max_query_length)

    # The window size depends on the question length, and the tokenizer takes one stride for
    # a whole batch: encode the examples grouped by question length.
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, (_, length) in enumerate(questions):
        by_length[length].append(index)
    windows: list[list[Any]] = [[] for _ in examples]
    for length, indices in by_length.items():
        window = max_length - length - specials
        if window < 1:
            raise UserError(f"max_length {max_length} leaves no room for the context after a {length}-token question")
        overlap = window - min(window, doc_stride)
        with truncating(backend, max_length, strategy="only_second", stride=overlap):
            encodings = backend.encode_batch([(questions[i][0], examples[i].context) for i in indices])
        for index, encoding in zip(indices, encodings):
            windows[index] = [encoding, *encoding.overflowing]

    features = []
    for example_index, (example, encodings) in enumerate(zip(examples, windows)):
        for encoding in encodings:
            offsets: list[Offsets] = [
                tuple(span) if sequence == 1 else None
                for span, sequence in zip(encoding.offsets, encoding.sequence_ids)
            ]
            start, end = _answer_tokens(example, offsets)
            features.append(
                {
                    "input_ids": encoding.ids,
                    "token_type_ids": encoding.type_ids,
                    "example_index": example_index,
                    "offsets": offsets,
                    "start_position": start,
                    "end_position": end,
                }
            )
    return features


def _cut_questions(backend: Any, questions: Sequence[str], max_query_length: int) -> list[tuple[str, int]]:
    """Each question cut after its ``max_query_length``-th token, with its token count.

    Cutting the text at a token's end re-tokenizes to the same leading tokens (WordPiece is
    greedy longest-match from the left), so this equals run_squad's ``query_tokens[:64]``.
    Leading spaces are dropped first: they change nothing but the offsets, and a few SQuAD
    questions have many.
    """
    questions = [question.lstrip() for question in questions]
    with truncating(backend, None):
        encodings = backend.encode_batch(questions, add_special_tokens=False)
    cut = []
    for question, encoding in zip(questions, encodings):
        if len(encoding.ids) > max_query_length:
            question = question[: encoding.offsets[max_query_length - 1][1]]
        cut.append((question, min(len(encoding.ids), max_query_length)))
    return cut


def _answer_tokens(example: QAExample, offsets: Sequence[Offsets]) -> tuple[int, int]:
    """Token indices of the first answer's first and last token in this window, or (0, 0)."""
    if not example.answers:
        return 0, 0
    answer = example.answers[0]
    start_char = answer["answer_start"]
    end_char = start_char + len(answer["text"])
    # The window's context tokens are one contiguous run, [first, last].
    first = next(i for i, span in enumerate(offsets) if span is not None)
    last = len(offsets) - 1 - next(i for i, span in enumerate(reversed(offsets)) if span is not None)
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return 0, 0
    # The token holding the answer's first character (the last one starting at or before
    # it), and the first token reaching past its last character.
    start = first
    while start < last and offsets[start + 1][0] <= start_char:
        start += 1
    end = last
    while end > start and offsets[end - 1][1] >= end_char:
        end -= 1
    return start, end


def postprocess_qa(
    examples: Sequence[QAExample],
    features: Sequence[dict[str, Any]],
    start_logits: Sequence[Sequence[float]],
    end_logits: Sequence[Sequence[float]],
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """The predicted answer text of every example: ``{example.id: text}``.

    ``start_logits[i]`` and ``end_logits[i]`` belong to ``features[i]``: lists, numpy rows or
    CPU tensors; rows of a padded batch are fine (positions past the feature's length are
    ignored). An example with no valid span in any window gets "".
    """
    if len(start_logits) != len(features) or len(end_logits) != len(features):
        raise ValueError("one row of start and end logits is needed per feature")
    best: dict[int, tuple[float, str]] = {}
    for feature, starts, ends in zip(features, start_logits, end_logits):
        offsets = feature["offsets"]
        starts = np.asarray(starts, dtype=np.float64)[: len(offsets)]
        ends = np.asarray(ends, dtype=np.float64)[: len(offsets)]
        in_context = np.array([span is not None for span in offsets])
        # All pairs of the n_best start and n_best end candidates, as (n_best, n_best) grids.
        start_grid, end_grid = np.meshgrid(
            np.argsort(-starts, kind="stable")[:n_best], np.argsort(-ends, kind="stable")[:n_best], indexing="ij"
        )
        valid = (
            in_context[start_grid]
            & in_context[end_grid]
            & (end_grid >= start_grid)
            & (end_grid - start_grid + 1 <= max_answer_length)
        )
        if not valid.any():
            continue
        scores = np.where(valid, starts[start_grid] + ends[end_grid], -np.inf)
        pick = np.unravel_index(np.argmax(scores), scores.shape)
        score, start, end = float(scores[pick]), start_grid[pick], end_grid[pick]
        index = feature["example_index"]
        # Strictly greater: on a tie the earlier window wins.
        if index not in best or score > best[index][0]:
            context = examples[index].context
            best[index] = (score, context[offsets[start][0] : offsets[end][1]])
    return {example.id: best[i][1] if i in best else "" for i, example in enumerate(examples)}
