"""SQuAD v1.1 span extraction (Rajpurkar et al. 2016): the reader, sliding-window features,
answer decoding, the official scores and the ``QaTask``.

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

Scores: exact match and token F1 after the official ``evaluate-v1.1.py`` normalisation
(lowercase, drop punctuation, drop the articles a/an/the, squeeze whitespace), the best over
the gold answers, 0 for a question with no prediction.

The task trains (CE(start) + CE(end)) / 2 per window, as run_squad.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.progress import progress
from lmforge.tasks.base import Rows, Task
from lmforge.tasks.encoding import (
    ENCODE_CHUNK,
    backend_of,
    one_line,
    truncating,
    warn,
    without_keys,
)
from lmforge.tasks.io import format_suffix, read_json
from lmforge.tasks.metrics import f1_from_counts

Offsets = tuple[int, int] | None  # character span in the context; None off the context


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    context: str
    # [{"text": str, "answer_start": int (char offset), or None when the text is not in the context}]
    answers: list[dict[str, Any]]


# ---------------------------------------------------------------------------------------
# Reading


NEAR = 3  # characters an answer_start may be off and still be repaired (SQuAD has off-by-one offsets)
MAX_MISMATCH = 0.01  # share of answers not found at their offset that is refused as a broken file


def read_squad(path: str | Path, with_answers: bool = True) -> list[QAExample]:
    """Read SQuAD v1.1 JSON (``{"data": [{"paragraphs": [{"context", "qas"}]}]}``).

    Every answer is checked against its context (``check_answers``): one off by up to
    ``NEAR`` characters is moved onto its text, one not found there keeps its text (for
    scoring) with ``answer_start`` None, and is left out of training. More than
    ``MAX_MISMATCH`` of the answers not found is an error; fewer is one warning line.
    ``with_answers`` False reads prediction input, whose answers are ignored.
    """
    path = Path(path)
    document = read_json(path)
    examples = list(_questions(document, path, with_answers))
    if not examples:
        raise UserError(f"{path}: no questions")
    return check_answers(examples, path) if with_answers else examples


def _questions(document: Any, path: Path, with_answers: bool):
    def field(obj: Any, key: str, kind: type, where: str = ""):
        value = obj.get(key) if isinstance(obj, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UserError(f"{path}: not SQuAD v1.1 JSON (missing or malformed {key!r}){where}")
        return value

    for article in field(document, "data", list):
        for paragraph in field(article, "paragraphs", list):
            qas = field(paragraph, "qas", list)
            for qa in qas:
                qid = str(field(qa, "id", (str, int)))
                where = f" in question {qid}"
                context = field(paragraph, "context", str, where)
                if not context.strip():
                    raise UserError(f"{path}: question {qid} has an empty context")
                question = field(qa, "question", str, where)
                answers = []
                if with_answers:
                    for answer in field(qa, "answers", list, where):
                        text = field(answer, "text", str, where)
                        answers.append({"text": text, "answer_start": _offset(answer, path, qid)})
                yield QAExample(id=qid, question=question, context=context, answers=answers)


def _offset(answer: dict, path: Path, qid: str) -> int:
    """answer_start as an int: SQuAD's ints, or digit strings as some converted copies have."""
    value = answer.get("answer_start")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UserError(f"{path}: question {qid}: answer_start {value!r} is not a character offset")
    return value


def locate_answer(context: str, text: str, start: int) -> int | None:
    """Where ``text`` is in ``context``: at ``start``, else the nearest occurrence at most
    ``NEAR`` characters away; None when neither (or the text is empty)."""
    if not text:
        return None
    if context.startswith(text, start):
        return start
    found = [at for at in range(max(0, start - NEAR), start + NEAR + 1) if context.startswith(text, at)]
    return min(found, key=lambda at: abs(at - start)) if found else None


def check_answers(examples: list[QAExample], path: Path) -> list[QAExample]:
    """Answers checked against their contexts (see ``read_squad``); an answer off by a few
    characters is repaired, the examples are otherwise returned as read."""
    total, repaired, missing = 0, [], []
    checked = []
    for example in examples:
        answers = []
        for answer in example.answers:
            total += 1
            start = locate_answer(example.context, answer["text"], answer["answer_start"])
            if start is None:
                missing.append((example, answer))
            elif start != answer["answer_start"]:
                repaired.append(example.id)
            answers.append({"text": answer["text"], "answer_start": start})
        checked.append(QAExample(example.id, example.question, example.context, answers))
    if missing:
        example, answer = missing[0]
        where = answer["answer_start"]
        found = (f"offset {where} is past the context's {len(example.context)} characters"
                 if where >= len(example.context) else f"{answer['text'][:40]!r} is not at offset {where}")
        summary = (f"{path}: {len(missing)} of {total} answers are not in the context at their answer_start "
                   f"(e.g. question {example.id}: {found})")
        if len(missing) == total or len(missing) > MAX_MISMATCH * total:
            raise UserError(f"{summary}; answer_start must be the answer's character offset in the context")
        warn(f"{summary}; their questions train without them"
             + (f"; {len(repaired)} offset(s) off by up to {NEAR} characters repaired" if repaired else ""))
    elif repaired:
        warn(f"{path}: repaired {len(repaired)} of {total} answer_start offsets off by up to {NEAR} characters "
             f"(e.g. question {repaired[0]})")
    return checked


# ---------------------------------------------------------------------------------------
# Windows and answers


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
    with progress(len(examples), "windowing", "ex") as bar:
        for length, indices in by_length.items():
            window = max_length - length - specials
            if window < 1:
                raise UserError(f"max_length {max_length} leaves no room for the context after a "
                                f"{length}-token question")
            overlap = window - min(window, doc_stride)
            for start in range(0, len(indices), ENCODE_CHUNK):
                chunk = indices[start:start + ENCODE_CHUNK]
                with truncating(backend, max_length, strategy="only_second", stride=overlap):
                    encodings = backend.encode_batch([(questions[i][0], examples[i].context) for i in chunk])
                for index, encoding in zip(chunk, encodings):
                    windows[index] = [encoding, *encoding.overflowing]
                bar.update(len(chunk))

    features = []
    for example_index, (example, encodings) in enumerate(zip(examples, windows)):
        for encoding in encodings:
            offsets: list[Offsets] = [
                _without_spaces(span, example.context) if sequence == 1 else None
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


def _without_spaces(span: Sequence[int], context: str) -> Offsets:
    """A token's character span without the whitespace at its ends: SentencePiece pieces
    (ALBERT's "▁1842") cover the space before their word, which is no part of an answer
    (WordPiece and trimmed byte-level offsets never include it)."""
    start, end = span
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return start, end


def _answer_tokens(example: QAExample, offsets: Sequence[Offsets]) -> tuple[int, int]:
    """Token indices of the first located answer's first and last token in this window, or (0, 0)."""
    answer = next((a for a in example.answers if a["answer_start"] is not None), None)
    if answer is None:
        return 0, 0
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


# ---------------------------------------------------------------------------------------
# Scores (evaluate-v1.1.py)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """evaluate-v1.1.py: lowercase, remove punctuation, remove articles, squeeze whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised answers (0 when either is empty, as in v1.1)."""
    predicted_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    same = sum((Counter(predicted_tokens) & Counter(gold_tokens)).values())
    return f1_from_counts(same, len(gold_tokens), len(predicted_tokens)) if same else 0.0


def squad_scores(examples: Sequence[QAExample], predictions: Mapping[str, str]) -> dict[str, float]:
    """Mean exact match and F1 over all examples, each the max over its gold answers."""
    if not examples:
        raise ValueError("no examples to score")
    exact = f1 = 0.0
    for example in examples:
        if example.id not in predictions:
            continue  # an unanswered question scores 0, as in the official script
        golds = [answer["text"] for answer in example.answers]
        prediction = predictions[example.id]
        exact += max((squad_exact_match(prediction, g) for g in golds), default=0.0)
        f1 += max((squad_f1(prediction, g) for g in golds), default=0.0)
    return {"exact_match": exact / len(examples), "f1": f1 / len(examples)}


# ---------------------------------------------------------------------------------------
# The task


class QaTask(Task):
    """SQuAD v1.1 span extraction over sliding windows (run_squad)."""

    name = "qa"
    has_labels = False
    model_task = "question_answering"
    metric = "f1"
    default_max_length = 384
    predictions_file = "predictions.json"

    def check_file(self, path: str | Path) -> Path:
        path = super().check_file(path)
        if format_suffix(path) != ".json":
            raise UserError(f"{path}: --task qa reads SQuAD v1.1 .json files, not '{format_suffix(path)}'")
        return path

    def read(self, path: str | Path) -> list[QAExample]:
        return read_squad(self.check_file(path))

    def encode(self, examples: Sequence[QAExample], tokenizer) -> list[dict]:
        o = self.options
        return prepare_qa_features(examples, tokenizer, self.max_length, o.doc_stride, o.max_query_length)

    def read_inputs(self, path: str | Path, pair: bool) -> list[QAExample]:
        """Prediction input: SQuAD-format JSON whose questions may have no answers."""
        return read_squad(self.check_file(path), with_answers=False)

    def trainable(self, examples: list[QAExample]) -> list[QAExample]:
        # A question whose every answer is missing from its context would train as "no answer".
        return [e for e in examples if not e.answers or any(a["answer_start"] is not None for a in e.answers)]

    def encode_inputs(self, examples: Sequence[QAExample], tokenizer) -> list[dict]:
        return [without_keys(f, "start_position", "end_position") for f in self.encode(examples, tokenizer)]

    def _loss(self, start: torch.Tensor, end: torch.Tensor, batch: dict) -> torch.Tensor:
        # run_squad: the mean of the start and end cross-entropies.
        return (F.cross_entropy(start.float(), batch["start_position"], reduction="sum")
                + F.cross_entropy(end.float(), batch["end_position"], reduction="sum")) / 2

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        return {self.name: self._loss(*self._forward(model, batch, unpad), batch)}

    def infer_batch(self, model, batch: dict, unpad: bool) -> tuple[Rows, float, int]:
        start, end = self._forward(model, batch, unpad)  # (B, T) each
        starts, ends = start.float().cpu().numpy(), end.float().cpu().numpy()
        rows = [(starts[i, :n], ends[i, :n]) for i, n in enumerate(self._lengths(batch))]
        if "start_position" not in batch:
            return rows, 0.0, 0
        return rows, float(self._loss(start, end, batch)), len(rows)

    def decode(self, examples: Sequence[QAExample], features, rows: Rows) -> dict[str, str]:
        """Answer text per question id."""
        return postprocess_qa(examples, features, [r[0] for r in rows], [r[1] for r in rows],
                              n_best=self.options.n_best, max_answer_length=self.options.max_answer_length)

    def score(self, examples: Sequence[QAExample], predictions) -> dict[str, float]:
        return squad_scores(examples, predictions)

    def write_predictions(self, path: Path, examples, predictions) -> None:
        path.write_text(json.dumps(predictions, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def format_predictions(self, examples, predictions) -> list[str]:
        return [f"{e.id}\t{one_line(predictions[e.id])}" for e in examples]
