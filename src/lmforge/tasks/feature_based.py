"""NER and classification on frozen features (BERT paper §5.3, "Feature-based Approach with
BERT"): the tasks the training loop runs when ``lmforge finetune --features STRATEGY`` trains
a head (``lmforge.tasks.feature_heads``) instead of the whole model.

The backbone never runs inside the loop: its features are extracted once
(``lmforge.tasks.feature_sources``) and each example carries them, one vector per word
(NER: the word's first sub-token, as the paper tags) or one pooled vector per text
(classification). Reading, decoding, scoring and writing predictions are those of
``NerTask`` and ``ClassificationTask``; only batching, the loss and inference differ.

Strategies: the six of the paper's Table 7 (``lmforge.features.STRATEGIES``: embeddings,
second_to_last, last, sum_last_four, concat_last_four, sum_all) and ``scalar_mix``, ELMo's
learned softmax-weighted sum of every layer (token layer included) times gamma. The paper
does not say how its "weighted sum" weights were set; here sum_last_four and sum_all are
the fixed equal-weight sums of ``combine_layers`` (so they are extracted once, like the other
fixed strategies), and scalar_mix is the learned weighting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.features import STRATEGIES
from lmforge.objectives.base import IGNORE_INDEX
from lmforge.tasks.base import Rows
from lmforge.tasks.classification import ClassificationExample, ClassificationTask
from lmforge.tasks.feature_sources import ALL_LAYERS
from lmforge.tasks.ner import NerTask, TaggedSentence

SCALAR_MIX = "scalar_mix"
FEATURE_STRATEGIES = (*STRATEGIES, SCALAR_MIX)


def normalise_strategy(name: str) -> str:
    """``scalar-mix`` -> ``scalar_mix``; an unknown name is a UserError listing the known ones."""
    strategy = name.replace("-", "_")
    if strategy not in FEATURE_STRATEGIES:
        raise UserError(f"unknown feature strategy {name!r}; choose from {', '.join(FEATURE_STRATEGIES)}")
    return strategy


def extraction_strategy(strategy: str) -> str:
    """What extraction keeps: every layer for the learned mix, else the strategy's combination."""
    return ALL_LAYERS if strategy == SCALAR_MIX else strategy


def feature_width(strategy: str, width: int) -> int:
    """Vector size the head reads: 4 x the layer width for concat_last_four, else the width."""
    return 4 * width if strategy == "concat_last_four" else width


def _pad(vectors: Sequence[np.ndarray], axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack arrays that differ in length along ``axis`` (the words), zero-filled, with the (B, T) mask."""
    lengths = [v.shape[axis] for v in vectors]
    shape = list(vectors[0].shape)
    shape[axis] = max(lengths)
    out = np.zeros((len(vectors), *shape), dtype=np.float32)
    for row, v in enumerate(vectors):
        index = [row] + [slice(None)] * v.ndim
        index[axis + 1] = slice(0, v.shape[axis])
        out[tuple(index)] = v
    mask = np.arange(max(lengths))[None, :] < np.asarray(lengths)[:, None]
    return torch.from_numpy(out), torch.from_numpy(mask)


class FeatureNerTask(NerTask):
    """Tagging words from their frozen vectors: (words, D) per sentence, or (layers, words, D)
    for the scalar mix; the label of every word is scored."""

    def features_from(self, examples: Sequence[TaggedSentence], vectors: Sequence[np.ndarray],
                      labelled: bool = True) -> list[dict]:
        features = []
        for index, (example, v) in enumerate(zip(examples, vectors)):
            feature = {"vectors": v, "example_index": index}
            if labelled:
                feature["labels"] = [self.labels.id_of(tag) for tag in example.tags]
            features.append(feature)
        return features

    def collate(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        vectors, mask = _pad([f["vectors"] for f in features], axis=features[0]["vectors"].ndim - 2)
        batch = {"vectors": vectors, "attention_mask": mask}
        if "labels" in features[0]:
            labels = torch.full(mask.shape, IGNORE_INDEX, dtype=torch.long)
            for row, f in enumerate(features):
                labels[row, :len(f["labels"])] = torch.tensor(f["labels"], dtype=torch.long)
            batch["labels"] = labels
        return batch

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        return {self.name: self._loss(model(batch["vectors"], batch["attention_mask"]), batch["labels"])}

    def infer_batch(self, model, batch: dict, unpad: bool) -> tuple[Rows, float, int]:
        logits = model(batch["vectors"], batch["attention_mask"])
        predicted = logits.argmax(-1).cpu().numpy()
        rows = [predicted[i, :n] for i, n in enumerate(batch["attention_mask"].sum(1).tolist())]
        if "labels" not in batch:
            return rows, 0.0, 0
        return rows, float(self._loss(logits, batch["labels"])), int((batch["labels"] != IGNORE_INDEX).sum())

    def decode(self, examples: Sequence[TaggedSentence], features, rows: Rows) -> list[list[str]]:
        tags: list[list[str]] = [[] for _ in examples]
        for feature, row in zip(features, rows):
            tags[feature["example_index"]] = [self.labels.label_of(int(i)) for i in row]
        return tags


class FeatureClassificationTask(ClassificationTask):
    """Classifying a text from its pooled frozen vector: (D,), or (layers, D) for the scalar mix."""

    def features_from(self, examples: Sequence[ClassificationExample], vectors: Sequence[np.ndarray],
                      labelled: bool = True) -> list[dict]:
        features = [{"vectors": v, "example_index": i} for i, v in enumerate(vectors)]
        if labelled:
            for feature, example in zip(features, examples):
                feature["label"] = self.labels.id_of(example.label)
        return features

    def collate(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        vectors = torch.from_numpy(np.stack([f["vectors"] for f in features]).astype(np.float32))
        # One "token" per text: what the loop's throughput counter sums.
        batch = {"vectors": vectors, "attention_mask": torch.ones(len(features), 1, dtype=torch.long)}
        if "label" in features[0]:
            batch["label"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
        return batch

    def counts(self, batch: dict) -> dict[str, int]:
        return {self.name: int(batch["vectors"].shape[0])}

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        return {self.name: F.cross_entropy(model(batch["vectors"]).float(), batch["label"], reduction="sum")}

    def infer_batch(self, model, batch: dict, unpad: bool) -> tuple[Rows, float, int]:
        logits = model(batch["vectors"]).float()
        rows = list(logits.softmax(-1).cpu().numpy())
        if "label" not in batch:
            return rows, 0.0, 0
        return rows, float(F.cross_entropy(logits, batch["label"], reduction="sum")), len(rows)


FEATURE_TASKS = {"ner": FeatureNerTask, "classification": FeatureClassificationTask}
DEFAULT_HEADS = {"ner": "bilstm", "classification": "linear"}
