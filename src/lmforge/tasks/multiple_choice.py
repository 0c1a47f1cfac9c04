"""Multiple choice: one sequence per answer, a score each, softmax over an example's answers.

GPT (Radford et al. 2018, section 3.3): ``start context delimiter answer_k extract`` per answer
on a decoder, its last state -> one linear score (``lmforge.tasks.gpt_inputs``); BERT
(Devlin et al. 2019, section 4.4, SWAG): ``[CLS] context [SEP] answer_k [SEP]`` per answer on
an encoder, the pooled [CLS] vector -> one score. Either way the loss is the cross-entropy of
the softmax over each example's answers, and the metric is accuracy. Examples may have
different numbers of answers; missing ones score -inf.

Input: JSONL (optionally .gz/.xz), one example per line::

    {"context": "...", "question": "...", "choices": ["...", "..."], "label": 1}

``question`` is optional (appended to the context, as RACE's passage + question); ``endings``
is accepted for ``choices`` (SWAG, HellaSwag); ``label`` is the 0-based index of the right
answer (an integer or a string of one). For prediction the label may be left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.objectives.base import collate
from lmforge.tasks import gpt_inputs
from lmforge.tasks.base import Rows, Task
from lmforge.tasks.encoding import backend_of, encode_in_chunks, one_line, truncating
from lmforge.tasks.io import format_suffix, numbered_lines, open_text


@dataclass(frozen=True)
class MultipleChoiceExample:
    context: str
    choices: tuple[str, ...]
    label: int | None  # index of the right answer; None for prediction input

    @property
    def num_choices(self) -> int:
        return len(self.choices)


def read_multiple_choice(path: str | Path, labelled: bool = True) -> list[MultipleChoiceExample]:
    """The examples of a JSONL file; every mistake is a one-line UserError naming the line."""
    path = Path(path)
    if format_suffix(path) != ".jsonl":
        raise UserError(f"{path}: --task multiple_choice reads .jsonl files, not '{format_suffix(path)}'")
    examples = []
    with open_text(path) as handle:
        for number, line in numbered_lines(handle, path):
            examples.append(_example(f"{path}:{number}", line, labelled))
    if not examples:
        raise UserError(f"{path}: no examples")
    return examples


def _example(where: str, line: str, labelled: bool) -> MultipleChoiceExample:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise UserError(f"{where}: invalid JSON ({error.msg})") from None
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object")
    context = row.get("context")
    if not isinstance(context, str) or not context.strip():
        raise UserError(f"{where}: 'context' must be a non-empty string")
    question = row.get("question")
    if question is not None:
        if not isinstance(question, str):
            raise UserError(f"{where}: 'question' must be a string")
        context = f"{context} {question}".strip()
    choices = row.get("choices", row.get("endings"))
    if not isinstance(choices, list) or len(choices) < 2:
        raise UserError(f"{where}: 'choices' must be a list of at least two answers")
    for k, choice in enumerate(choices):
        if not isinstance(choice, str) or not choice.strip():
            raise UserError(f"{where}: choice {k} must be a non-empty string")
    label = row.get("label")
    if label is None:
        if labelled:
            raise UserError(f"{where}: no 'label' (the index of the right answer)")
        return MultipleChoiceExample(context, tuple(choices), None)
    if isinstance(label, str) and label.strip().isdigit():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(choices):
        raise UserError(f"{where}: 'label' must be an answer index from 0 to {len(choices) - 1}, got {label!r}")
    return MultipleChoiceExample(context, tuple(choices), label)


class MultipleChoiceTask(Task):
    name = "multiple_choice"
    model_task = "multiple_choice"
    metric = "accuracy"
    has_labels = False  # the head scores answers; the label is a position, not a class
    predictions_file = "predictions.tsv"

    def read(self, path: str | Path) -> list[MultipleChoiceExample]:
        return read_multiple_choice(self.check_file(path))

    def read_inputs(self, path: str | Path, pair: bool) -> list[MultipleChoiceExample]:
        return read_multiple_choice(self.check_file(path), labelled=False)

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, examples: Sequence[MultipleChoiceExample], tokenizer) -> list[dict]:
        """One feature per example: ``input_ids`` (and ``token_type_ids``) hold one sequence per answer."""
        contexts = [e.context for e in examples for _ in e.choices]
        answers = [c for e in examples for c in e.choices]
        if self.gpt is not None:
            sequences = [gpt_inputs.transform(c, a, self.gpt, self.max_length) for c, a in
                         zip(gpt_inputs.plain_ids(tokenizer, contexts), gpt_inputs.plain_ids(tokenizer, answers))]
            types = None
        else:
            backend = backend_of(tokenizer)
            with truncating(backend, self.max_length, strategy="longest_first"):
                encodings = encode_in_chunks(backend, list(zip(contexts, answers)), "encoding")
            sequences, types = [enc.ids for enc in encodings], [enc.type_ids for enc in encodings]
        features, at = [], 0
        for example in examples:
            k = example.num_choices
            feature: dict[str, Any] = {"input_ids": sequences[at:at + k]}
            if types is not None:
                feature["token_type_ids"] = types[at:at + k]
            if example.label is not None:
                feature["label"] = example.label
            features.append(feature)
            at += k
        return features

    def encode_inputs(self, examples: Sequence[MultipleChoiceExample], tokenizer) -> list[dict]:
        return [{k: v for k, v in f.items() if k != "label"} for f in self.encode(examples, tokenizer)]

    def collate(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        rows = []
        for feature in features:
            for k, ids in enumerate(feature["input_ids"]):
                row = {"input_ids": ids}
                if "token_type_ids" in feature:
                    row["token_type_ids"] = feature["token_type_ids"][k]
                rows.append(row)
        batch = collate(rows, self.pad_id)
        batch["choice_counts"] = torch.tensor([len(f["input_ids"]) for f in features], dtype=torch.long)
        if "label" in features[0]:
            batch["label"] = torch.tensor([int(f["label"]) for f in features], dtype=torch.long)
        return batch

    # -- the loss ---------------------------------------------------------------------------
    def counts(self, batch: dict) -> dict[str, int]:
        counts = {self.name: int(batch["choice_counts"].numel())}
        if self.gpt is not None and self.options.lm_loss_weight:
            counts["lm"] = gpt_inputs.lm_target_count(batch)
        return counts

    def _scores(self, model, batch: dict, unpad: bool, lm_loss: bool = False):
        """(B, most answers) scores, -inf where an example has fewer answers; and the LM sum."""
        lm = None
        if self.gpt is not None:
            pooled, lm = gpt_inputs.final_states(model, batch, unpad, lm_loss)
            flat = model.classifier(pooled).squeeze(-1)
        else:
            flat = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), unpad=unpad)
        counts = batch["choice_counts"]
        width = int(counts.max())
        example = torch.repeat_interleave(torch.arange(counts.numel(), device=flat.device), counts)
        position = torch.arange(flat.numel(), device=flat.device) - torch.repeat_interleave(
            counts.cumsum(0) - counts, counts)
        scores = flat.new_full((counts.numel(), width), float("-inf"))
        scores[example, position] = flat
        return scores.float(), lm

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        weight = self.options.lm_loss_weight if self.gpt is not None else 0.0
        scores, lm = self._scores(model, batch, unpad, lm_loss=bool(weight))
        sums = {self.name: F.cross_entropy(scores, batch["label"], reduction="sum")}
        if lm is not None:
            sums["lm"] = weight * lm
        return sums

    def infer_batch(self, model, batch: dict, unpad: bool) -> tuple[Rows, float, int]:
        scores, _ = self._scores(model, batch, unpad)
        probabilities = scores.softmax(-1).cpu().numpy()
        rows = [p[:int(k)] for p, k in zip(probabilities, batch["choice_counts"].tolist())]
        if "label" not in batch:
            return rows, 0.0, 0
        return rows, float(F.cross_entropy(scores, batch["label"], reduction="sum")), len(rows)

    # -- decoding and scoring ---------------------------------------------------------------
    def decode(self, examples, features, rows: Rows) -> list[tuple[int, float]]:
        """(answer index, probability) per example."""
        return [(int(p.argmax()), float(p.max())) for p in rows]

    def score(self, examples: Sequence[MultipleChoiceExample], predictions) -> dict[str, float]:
        right = sum(e.label == index for e, (index, _) in zip(examples, predictions, strict=True))
        return {"accuracy": right / len(examples)}

    def write_predictions(self, path: Path, examples, predictions) -> None:
        lines = ["context\tgold\tpredicted\tpredicted_answer\tprobability"]
        for example, (index, probability) in zip(examples, predictions):
            gold = "" if example.label is None else str(example.label)
            lines.append("\t".join([one_line(example.context), gold, str(index), one_line(example.choices[index]),
                                    f"{probability:.6f}"]))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def format_predictions(self, examples, predictions) -> list[str]:
        return [f"{index}\t{probability:.6f}" for index, probability in predictions]
