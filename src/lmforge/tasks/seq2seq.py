"""Sequence-to-sequence fine-tuning of an encoder-decoder (BART, Lewis et al. 2020, section 3.3
and 3.4; T5, Raffel et al. 2020, section 2.4): summarisation, translation, and classification
as text (T5's "sst2 sentence: ..." -> "positive").

Reading: JSONL objects (``source_column``/``target_column``, default "source"/"target") or TSV
lines ``source<TAB>target`` (no header). With ``label_words`` the file is a classification file
instead (``lmforge.tasks.classification`` reads it) and each label becomes its word, as T5 casts
GLUE (appendix D of the paper). ``source_prefix`` goes in front of every source (T5's task
prefixes, "summarize: ", "translate German to English: ").

Training is teacher forcing as in transformers' ``run_summarization.py`` / ``run_translation.py``:
the labels are the target as the tokenizer encodes it (BART ``<s> target </s>``, T5
``target </s>``), the decoder reads them shifted right behind the model's decoder start token
(``shift_tokens_right``). ``label_smoothing`` is transformers' ``LabelSmoother`` (= torch's
``cross_entropy(label_smoothing=eps)``: (1 - eps) NLL + eps x the mean NLL over the
vocabulary), averaged over target tokens.

Evaluation generates with beam search (``lmforge.generation``) and scores the text:
ROUGE-1/2/L/Lsum F-measures x 100 from Google's ``rouge-score`` (stemming on; Lsum over
newline-separated sentences, as the transformers summarisation example splits them), corpus
sacreBLEU, or (with label words) the share of exact matches.

Bad input: examples with an empty source or target are left out with a count (all empty is an
error); a target longer than the decoder takes is cut (its end token kept) with a count; a
JSONL line without a field or a TSV line without its tab is a one-line error naming the line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.objectives.base import IGNORE_INDEX
from lmforge.tasks.base import Rows, Task
from lmforge.tasks.encoding import backend_of, encode_in_chunks, one_line, truncating, warn
from lmforge.tasks.io import format_suffix, open_text, read_lines

METRICS = ("rouge", "bleu", "accuracy")
DEFAULT_MAX_TARGET_LENGTH = 128  # transformers' run_summarization max_target_length


@dataclass(frozen=True)
class Seq2SeqExample:
    source: str
    target: str
    line: int = 0  # where it came from (1-based), for messages


# ---------------------------------------------------------------------------------------
# Reading


def read_pairs(path: Path, source_column: str = "source", target_column: str = "target") -> list[Seq2SeqExample]:
    """(source, target) examples of a .jsonl or .tsv file (optionally .gz/.xz). Empty sources or
    targets are dropped with a warning; a file of nothing but those is an error."""
    suffix = format_suffix(path)
    if suffix not in (".jsonl", ".tsv"):
        raise UserError(f"{path}: --task seq2seq reads .jsonl or .tsv files, not '{suffix}'")
    examples, empty = [], 0
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if suffix == ".tsv":
                if not line.strip():
                    empty += 1
                    continue
                fields = line.split("\t")
                if len(fields) != 2:
                    raise UserError(f"{path}:{number}: expected 'source<TAB>target', found {len(fields)} "
                                    "tab-separated field(s)")
                source, target = fields
            else:
                if not line.strip():
                    continue  # blank lines between JSON objects carry no example
                source, target = _json_pair(path, number, line, source_column, target_column)
            if not source.strip() or not target.strip():
                empty += 1
                continue
            examples.append(Seq2SeqExample(source, target, number))
    if not examples:
        raise UserError(f"{path}: no examples with both a source and a target" + (f" ({empty} empty)" if empty else ""))
    if empty:
        warn(f"{path}: left out {empty} example(s) with an empty source or target")
    return examples


def _json_pair(path: Path, number: int, line: str, source_column: str, target_column: str) -> tuple[str, str]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{number}: invalid JSON ({error.msg})") from None
    if not isinstance(row, dict):
        raise UserError(f"{path}:{number}: expected a JSON object")
    values = []
    for column in (source_column, target_column):
        if column not in row:
            raise UserError(f"{path}:{number}: no field {column!r} (fields: {', '.join(map(repr, row)) or 'none'}); "
                            "choose the fields with --source-column/--target-column")
        value = row[column]
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise UserError(f"{path}:{number}: field {column!r} must be a string")
        values.append(value)
    return values[0], values[1]


def parse_label_words(text: str) -> dict[str, str]:
    """'negative,positive' (the words of labels 0, 1, ...) or '0=negative,1=positive' -> {label: word}."""
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise UserError(f"label_words {text!r} has an empty entry; give 'word0,word1' or 'label=word,...'")
    pairs = [item.split("=", 1) if "=" in item else (str(index), item) for index, item in enumerate(items)]
    words = {label.strip(): word.strip() for label, word in pairs}
    if len(words) != len(pairs) or len(set(words.values())) != len(words) or not all(words.values()):
        raise UserError(f"label_words {text!r}: every label needs one non-empty word of its own")
    return words


def read_labelled_as_text(path: Path, words: dict[str, str], text_column, pair_column, label_column
                          ) -> list[Seq2SeqExample]:
    """A classification file with each label replaced by its word (T5's text-to-text GLUE);
    a pair becomes 'column1: A column2: B' as T5 writes it."""
    from lmforge.tasks.classification import read_classification

    examples = []
    for index, example in enumerate(read_classification(path, text_column, pair_column, label_column), start=1):
        if example.label not in words:
            raise UserError(f"{path}: label {example.label!r} of example {index} has no word in label_words "
                            f"({', '.join(f'{k}={v}' for k, v in words.items())})")
        source = example.text if example.pair is None else \
            f"{text_column or 'sentence1'}: {example.text} {pair_column or 'sentence2'}: {example.pair}"
        examples.append(Seq2SeqExample(source, words[example.label], index))
    return examples


# ---------------------------------------------------------------------------------------
# Metrics


def split_sentences(text: str) -> str:
    """Sentences on lines of their own, for ROUGE-Lsum (transformers' example uses nltk's
    ``sent_tokenize``; a split after . ! ? followed by a space stands in for it)."""
    return "\n".join(part for part in re.split(r"(?<=[.!?])\s+", text.strip()) if part)


def rouge_scores(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F-measures x 100 (rouge-score, Porter stemming)."""
    from rouge_score import rouge_scorer

    kinds = ("rouge1", "rouge2", "rougeL", "rougeLsum")
    scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=True)
    totals = dict.fromkeys(kinds, 0.0)
    for reference, prediction in zip(references, predictions, strict=True):
        scores = scorer.score(split_sentences(reference), split_sentences(prediction))
        for kind in kinds:
            totals[kind] += scores[kind].fmeasure
    return {kind: 100 * total / max(len(references), 1) for kind, total in totals.items()}


def bleu_score(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Corpus sacreBLEU (13a tokenisation, as sacrebleu's defaults)."""
    import sacrebleu

    return {"bleu": sacrebleu.corpus_bleu(list(predictions), [list(references)]).score}


def exact_match(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    hits = sum(r.strip() == p.strip() for r, p in zip(references, predictions, strict=True))
    return {"accuracy": hits / max(len(references), 1)}


# ---------------------------------------------------------------------------------------
# The settings a fine-tuned model is evaluated with again (evaluate/predict default to them)

SETTINGS_FILE = "seq2seq_settings.json"
SAVED_OPTIONS = ("source_prefix", "label_words", "metric", "max_target_length", "num_beams", "source_column",
                 "target_column")
DEFAULT_NUM_BEAMS = 4


def save_settings(options, directory: Path) -> None:
    """The reading and scoring settings of a run, beside its model: a T5 model fine-tuned with a
    prefix and label words must be evaluated with the same ones."""
    settings = {name: getattr(options, name) for name in SAVED_OPTIONS if getattr(options, name) is not None}
    (Path(directory) / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def with_saved_settings(options, directory: str | Path):
    """``options`` with the unset ones taken from the model directory's saved settings."""
    from dataclasses import replace

    path = Path(directory) / SETTINGS_FILE
    if not path.is_file():
        return options
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{path}: unreadable settings; delete it or write it again") from None
    return replace(options, **{name: saved[name] for name in SAVED_OPTIONS
                               if getattr(options, name) is None and name in saved})


# ---------------------------------------------------------------------------------------
# The task


def decoder_start_id(model) -> int:
    """The token the decoder starts from: the config's (BART: </s>), else the pad token (T5),
    the same choice ``lmforge.generation.generate_ids`` makes."""
    start = getattr(model.config, "decoder_start_token_id", None)
    start = model.config.pad_token_id if start is None else start
    if start is None:
        raise UserError("the checkpoint names no decoder start token (decoder_start_token_id or pad_token_id)")
    return int(start)


class Seq2SeqTask(Task):
    """Text in, text out on an encoder-decoder with a language-model head."""

    name = "seq2seq"
    model_task = "seq2seq_lm"
    has_labels = False
    predictions_file = "predictions.tsv"
    default_max_length = 512  # source tokens; at most the encoder's positions unless --max-length says more

    def __init__(self, options, labels=None, pad_id: int = 0) -> None:
        super().__init__(options, labels, pad_id)
        o = options
        self.words = parse_label_words(o.label_words) if o.label_words else None
        chosen = o.metric or ("accuracy" if self.words else "rouge")
        if chosen not in METRICS:
            raise UserError(f"unknown metric {chosen!r}; choose from {', '.join(METRICS)}")
        self.metric_kind = chosen
        self.metric = {"rouge": "rougeL", "bleu": "bleu", "accuracy": "accuracy"}[chosen]
        self.tokenizer = self.source_tokenizer = None
        self.start_id = 0
        self.eos_ids: tuple[int, ...] = ()
        self.target_limit = o.max_target_length or DEFAULT_MAX_TARGET_LENGTH

    def configure_for(self, model, tokenizer) -> None:
        """Takes the decoder start and end tokens and the decoder's length limit from the
        checkpoint; refuses a model that cannot generate text."""
        if model.config.architecture != "encoder_decoder":
            raise UserError(f"--task seq2seq needs an encoder-decoder checkpoint (BART, T5); this one is an "
                            f"{model.config.architecture}")
        self.tokenizer = tokenizer
        # BART's MT: sources in the new encoder's vocabulary (lmforge.tasks.source_encoder)
        self.source_tokenizer = getattr(model.backbone, "source_tokenizer", None)
        self.start_id = decoder_start_id(model)
        eos = tokenizer.eos_id if tokenizer.eos_id is not None else model.config.eos_token_id
        self.eos_ids = () if eos is None else (int(eos),)
        self.target_limit = self.options.max_target_length or DEFAULT_MAX_TARGET_LENGTH
        if model.config.positions == "learned":
            self.default_max_length = min(self.default_max_length, model.config.max_positions)
            # Labels and decoder inputs have the same length; the decoder reads at most max_positions.
            self.target_limit = min(self.target_limit, model.config.max_positions)
        if self.pad_id is None:
            self.pad_id = model.config.pad_token_id or 0

    # -- files ------------------------------------------------------------------------------
    def read(self, path: str | Path) -> list[Seq2SeqExample]:
        o = self.options
        path = self.check_file(path)
        if self.words is not None:
            return read_labelled_as_text(path, self.words, o.text_column, o.pair_column, o.label_column)
        return read_pairs(path, o.source_column or "source", o.target_column or "target")

    def read_inputs(self, path: str | Path, pair: bool) -> list[Seq2SeqExample]:
        """Prediction input: one source per line (the target is a placeholder)."""
        lines = read_lines(self.check_file(path))
        examples = [Seq2SeqExample(line, "-", number) for number, line in enumerate(lines, start=1) if line.strip()]
        if not examples:
            raise UserError(f"{path}: no input lines")
        return examples

    # -- encoding ---------------------------------------------------------------------------
    def _sources(self, examples: Sequence[Seq2SeqExample], tokenizer) -> list[list[int]]:
        prefix = self.options.source_prefix or ""
        backend = backend_of(self.source_tokenizer or tokenizer)
        with truncating(backend, self.max_length):
            encodings = encode_in_chunks(backend, [prefix + e.source for e in examples], "encoding sources")
        return [enc.ids for enc in encodings]

    def encode(self, examples: Sequence[Seq2SeqExample], tokenizer) -> list[dict]:
        """Features ``input_ids`` (source), ``labels`` (target) and ``decoder_input_ids`` (the
        labels shifted right behind the start token)."""
        sources = self._sources(examples, tokenizer)
        backend = backend_of(tokenizer)
        with truncating(backend, None):
            targets = [enc.ids for enc in encode_in_chunks(backend, [e.target for e in examples], "encoding targets")]
        limit, cut = self.target_limit, 0
        features = []
        for index, (source, labels) in enumerate(zip(sources, targets)):
            if len(labels) > limit:
                cut += 1
                # Keep the end token: a model trained on cut targets should still learn to stop.
                labels = labels[: limit - 1] + labels[-1:] if labels[-1] in self.eos_ids else labels[:limit]
            features.append({"input_ids": source, "labels": labels, "decoder_input_ids": [self.start_id, *labels[:-1]],
                             "example_index": index})
        if cut:
            warn(f"cut {cut} of {len(examples)} target(s) to {limit} tokens (the decoder's limit: "
                 "max_target_length or its positions)")
        return features

    def encode_inputs(self, examples: Sequence[Seq2SeqExample], tokenizer) -> list[dict]:
        return [{"input_ids": ids, "example_index": index}
                for index, ids in enumerate(self._sources(examples, tokenizer))]

    def collate(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        batch = super().collate([{"input_ids": f["input_ids"]} for f in features])
        if "labels" in features[0]:
            decoder = super().collate([{"input_ids": f["decoder_input_ids"], "labels": f["labels"]} for f in features])
            batch["decoder_input_ids"] = decoder["input_ids"]
            batch["decoder_attention_mask"] = decoder["attention_mask"]
            batch["labels"] = decoder["labels"]
        return batch

    # -- training -----------------------------------------------------------------------------
    def counts(self, batch: dict) -> dict[str, int]:
        return {self.name: int((batch["labels"] != IGNORE_INDEX).sum())}

    def _token_losses(self, model, batch: dict, unpad: bool, smoothing: float) -> torch.Tensor:
        chosen = batch["labels"] != IGNORE_INDEX  # the vocabulary head runs on these positions only
        logits = model(batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"],
                       batch["decoder_attention_mask"], unpad=unpad, predict_mask=chosen)  # (M, V)
        return F.cross_entropy(logits.float(), batch["labels"][chosen], reduction="sum", label_smoothing=smoothing)

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        return {self.name: self._token_losses(model, batch, unpad, self.options.label_smoothing)}

    # -- evaluation by generation ---------------------------------------------------------
    def generation_settings(self):
        from lmforge.generation.settings import GenerationSettings

        return GenerationSettings(max_new_tokens=max(self.target_limit - 1, 1),
                                  num_beams=self.options.num_beams or DEFAULT_NUM_BEAMS,
                                  eos_token_ids=self.eos_ids, early_stopping=True)

    def infer_batch(self, model, batch: dict, unpad: bool) -> tuple[Rows, float, int]:
        """Generated ids per row; the teacher-forced loss (no smoothing) when there are labels."""
        from lmforge.generation.api import generate_ids

        lengths = self._lengths(batch)
        sources = [row[:n].tolist() for row, n in zip(batch["input_ids"], lengths)]
        result = generate_ids(model, sources, self.generation_settings(), pad_id=self.pad_id,
                              decoder_start_token_id=self.start_id)
        if "labels" not in batch:
            return result.sequences, 0.0, 0
        with torch.no_grad():
            loss = float(self._token_losses(model, batch, unpad, 0.0))
        return result.sequences, loss, int((batch["labels"] != IGNORE_INDEX).sum())

    def decode(self, examples, features, rows: Rows) -> list[str]:
        if self.tokenizer is None:
            raise RuntimeError("configure_for(model, tokenizer) must run before decoding")
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in rows]

    def score(self, examples: Sequence[Seq2SeqExample], predictions: Sequence[str]) -> dict[str, float]:
        references = [e.target for e in examples]
        if self.metric_kind == "rouge":
            return rouge_scores(references, predictions)
        if self.metric_kind == "bleu":
            return bleu_score(references, predictions)
        return exact_match(references, predictions)

    def write_predictions(self, path: Path, examples, predictions) -> None:
        lines = ["source\ttarget\tpredicted"]
        lines += [f"{one_line(e.source)}\t{one_line(e.target)}\t{one_line(p)}" for e, p in zip(examples, predictions)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def format_predictions(self, examples, predictions) -> list[str]:
        return [one_line(p) for p in predictions]
