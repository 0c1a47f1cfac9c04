"""Frozen backbones seen as layers of vectors, for the feature-based approach (BERT paper
§5.3, Table 7; ELMo, Peters et al. 2018): the ``FeatureSource`` interface, the transformer
encoder source, and extraction with a cache so the backbone runs once per example.

A source turns a batch of sentences (lists of words) into its representation layers, bottom
first: ``[token layer, layer 1, ..., layer L]``, each ``(B, T, D)`` over the *words* of the
batch, with a ``(B, T)`` mask. For a WordPiece encoder the vector of a word is that of its
first sub-token, as the paper tags it (§5.3); a sentence longer than ``max_length`` is cut
into overlapping word windows by ``lmforge.tasks.ner.encode_ner`` and each word read where it
has the most context. Sentence-level features (classification) are the mean over the
sequence's tokens of each layer (sentence-transformers' mean pooling), the same per-layer
vectors a layer strategy or scalar mix then combines.

An ELMo checkpoint is another ``WordSource`` (``ElmoSource``): the character-CNN token layer
and the biLSTM layers of ``lmforge.lstm.elmo.elmo_layer_outputs`` for the words.

Extraction reduces the layers right away (``combine_layers`` of a fixed strategy) or keeps them
all (``ALL_LAYERS``, for a learned scalar mix), batches sentences by length, and keeps the
result in a ``FeatureCache`` keyed by (backbone, layers kept, data): a frozen backbone's
features do not change between epochs, so training reads them from memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmforge.errors import UserError
from lmforge.features import combine_layers

ALL_LAYERS = "all_layers"  # keep every layer: the scalar mix learns its weights during training


class WordSource:
    """A frozen backbone over words: subclasses give ``word_layers``; ``text_layers`` (for
    sentence-level tasks) runs it on the whitespace-split words of each text."""

    identity = ""  # what the cache key names (e.g. the checkpoint directory)
    num_layers = 0  # representation layers, the token layer included
    width = 0  # vector size of one layer

    def word_layers(self, sentences: Sequence[Sequence[str]]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per layer (B, T, D) float vectors of each word, bottom first, and the (B, T) mask."""
        raise NotImplementedError

    def text_layers(self, texts: Sequence[tuple[str, str | None]]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per layer (B, T, D) vectors of each text (a pair's two texts one after the other) and the mask."""
        return self.word_layers([(text + " " + (pair or "")).split() for text, pair in texts])


class EncoderSource(WordSource):
    """A transformer encoder (BERT family) with its tokenizer: [embeddings, layer 1..L]."""

    def __init__(self, model, tokenizer, identity: str = "", max_length: int = 128,
                 device: torch.device | str = "cpu") -> None:
        self.backbone = getattr(model, "backbone", model).eval()
        config = self.backbone.config
        if config.architecture != "encoder":
            raise UserError(f"the feature-based approach takes an encoder (BERT family) or ELMo checkpoint; "
                            f"this one is a {config.architecture}")
        if tokenizer.pad_id is None:
            raise UserError("the checkpoint's tokenizer has no padding token")
        self.tokenizer, self.max_length, self.device = tokenizer, max_length, torch.device(device)
        # Windows and truncation depend on max_length, so the cache tells them apart.
        self.identity = f"{identity or f'{config.family}-{id(model)}'}|max_length={max_length}"
        self.num_layers = config.num_layers + 1
        self.width = config.hidden_size
        self.backbone.to(self.device)

    @torch.inference_mode()
    def _hidden_states(self, features: list[dict]) -> tuple[list[torch.Tensor], torch.Tensor]:
        from lmforge.objectives.base import collate

        batch = {k: v.to(self.device) for k, v in collate(features, self.tokenizer.pad_id).items()}
        out = self.backbone(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"),
                            output_hidden_states=True)
        return [h.float() for h in out.hidden_states], batch["attention_mask"].bool()

    def word_layers(self, sentences: Sequence[Sequence[str]]) -> tuple[list[torch.Tensor], torch.Tensor]:
        from lmforge.tasks.base import LabelMap
        from lmforge.tasks.ner import TaggedSentence, encode_ner, word_owners

        tagged = [TaggedSentence(list(words), ["O"] * len(words)) for words in sentences]
        windows = encode_ner(tagged, self.tokenizer, self.max_length, LabelMap(["O"]))
        layers, _ = self._hidden_states(windows)
        longest = max((len(words) for words in sentences), default=0)
        words_out = [layers[0].new_zeros(len(sentences), longest, self.width) for _ in layers]
        mask = torch.zeros(len(sentences), longest, dtype=torch.bool, device=self.device)
        by_sentence: dict[int, list[int]] = {}
        for row, window in enumerate(windows):
            by_sentence.setdefault(window["example_index"], []).append(row)
        for sentence, rows in by_sentence.items():
            owners = word_owners([windows[row]["word_ids"] for row in rows])
            if not owners:
                continue
            words = torch.tensor(sorted(owners), device=self.device)
            picked_rows = torch.tensor([rows[owners[w][0]] for w in sorted(owners)], device=self.device)
            positions = torch.tensor([owners[w][1] for w in sorted(owners)], device=self.device)
            for layer, out in zip(layers, words_out):
                out[sentence, words] = layer[picked_rows, positions]
            mask[sentence, words] = True
        return words_out, mask

    def text_layers(self, texts: Sequence[tuple[str, str | None]]) -> tuple[list[torch.Tensor], torch.Tensor]:
        from lmforge.tasks.base import LabelMap
        from lmforge.tasks.classification import ClassificationExample, encode_classification

        examples = [ClassificationExample(text, pair, "_") for text, pair in texts]
        return self._hidden_states(encode_classification(examples, self.tokenizer, self.max_length,
                                                         LabelMap(["_"])))


class ElmoSource(WordSource):
    """An ELMo biLM (``lmforge.lstm.elmo``): Peters et al.'s L + 1 layers [token layer, LSTM
    1..L], each 2 x projection_dim wide (``elmo_layer_outputs``). The character CNN reads each
    word whole; a model trained on a sub-word tokenizer gives a word its first sub-token's vector."""

    def __init__(self, model, tokenizer=None, identity: str = "", device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model, self.tokenizer = model.eval().to(self.device), tokenizer
        self.identity = identity or f"elmo-{id(model)}"
        self.num_layers = model.config.n_layers + 1
        self.width = 2 * model.config.projection_dim

    @torch.inference_mode()
    def word_layers(self, sentences: Sequence[Sequence[str]]) -> tuple[list[torch.Tensor], torch.Tensor]:
        from lmforge.lstm.elmo import elmo_layer_outputs

        result = elmo_layer_outputs(self.model, [list(words) for words in sentences], self.tokenizer)
        first = torch.full((len(sentences), max(len(words) for words in sentences)), -1, dtype=torch.long)
        for row, ids in enumerate(result.word_ids.tolist()):
            for position, word in reversed(list(enumerate(ids))):  # reversed: the first position wins
                if word >= 0:
                    first[row, word] = position
        first = first.to(self.device)
        mask = first >= 0
        index = first.clamp(min=0).unsqueeze(-1).expand(-1, -1, self.width)
        return [layer.float().gather(1, index) * mask.unsqueeze(-1) for layer in result.layers], mask


def load_feature_source(model_dir: str | Path, max_length: int, device: torch.device | str = "cpu") -> WordSource:
    """The source of a checkpoint directory: an lmforge or HF-format encoder with its tokenizer,
    or an ELMo checkpoint (``lmforge.lstm``; its tokenizer, if it has one)."""
    from lmforge.lstm.checkpoint import is_lstm_checkpoint, read_lstm_config

    identity = str(Path(model_dir).resolve())
    if is_lstm_checkpoint(model_dir):
        model_type = read_lstm_config(model_dir)[0]
        if model_type != "elmo":
            raise UserError(f"{model_dir} holds a {model_type} model; feature-based runs read an encoder "
                            "(BERT family) or an ELMo checkpoint")
        from lmforge.lstm.elmo import load_elmo
        from lmforge.tokenization import Tokenizer
        from lmforge.tokenization.hf_files import has_tokenizer

        model = load_elmo(model_dir)
        tokenizer = Tokenizer.from_dir(model_dir) if has_tokenizer(Path(model_dir)) else None
        if tokenizer is None and model.config.token_encoder != "char_cnn":
            raise UserError(f"{model_dir} has no tokenizer files, which its word embeddings need")
        return ElmoSource(model, tokenizer, identity, device)
    from lmforge.api import load

    model, tokenizer = load(str(model_dir))
    if tokenizer is None:
        raise UserError(f"{model_dir} has no tokenizer files (tokenizer.json or vocab.txt)")
    return EncoderSource(model.float(), tokenizer, identity=identity, max_length=max_length, device=device)


# ---------------------------------------------------------------------------------------
# Extraction and the cache


def layer_reducer(strategy: str) -> Callable[[list[torch.Tensor]], torch.Tensor]:
    """What extraction keeps of the layers: one strategy's combination (``combine_layers``:
    (..., D) or (..., 4D) for concat_last_four), or every layer stacked on a new dimension 1
    for ``ALL_LAYERS``."""
    if strategy == ALL_LAYERS:
        return lambda layers: torch.stack(layers, dim=1)
    return lambda layers: combine_layers(layers, strategy)


def reduce_stacked(stacked: np.ndarray, strategy: str) -> np.ndarray:
    """A strategy's combination of one example's vectors kept with ``ALL_LAYERS`` (layers
    first): the same numbers as extracting with that strategy, without running the backbone again."""
    layers = [torch.from_numpy(layer) for layer in stacked]
    return combine_layers(layers, strategy).numpy()


class FeatureCache:
    """Extracted features in memory, keyed by (backbone, layers kept, data)."""

    def __init__(self) -> None:
        self._store: dict[str, list[np.ndarray]] = {}
        self.hits = 0

    @staticmethod
    def key(source: WordSource, strategy: str, kind: str, items: Sequence[Any]) -> str:
        digest = hashlib.sha256(repr(list(items)).encode("utf-8")).hexdigest()[:16]
        return f"{source.identity}|{strategy}|{kind}|{digest}"

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def __getitem__(self, key: str) -> list[np.ndarray]:
        return self._store[key]

    def get_or_compute(self, key: str, compute: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
        if key in self._store:
            self.hits += 1
        else:
            self._store[key] = compute()
        return self._store[key]


def word_features(source: WordSource, sentences: Sequence[Sequence[str]], strategy: str, batch_size: int = 64,
                  cache: FeatureCache | None = None) -> list[np.ndarray]:
    """Per sentence, its words' vectors: (words, D') for a strategy, (layers, words, D) for
    ``ALL_LAYERS``; float32, in input order."""
    def compute() -> list[np.ndarray]:
        reduce = layer_reducer(strategy)
        return _batched(sentences, [len(words) for words in sentences], batch_size,
                        lambda batch: _split_words(reduce(source.word_layers(batch)[0]), batch, strategy))

    if cache is None:
        return compute()
    return cache.get_or_compute(FeatureCache.key(source, strategy, "words", sentences), compute)


def pooled_features(source: WordSource, texts: Sequence[tuple[str, str | None]], strategy: str,
                    batch_size: int = 64, cache: FeatureCache | None = None) -> list[np.ndarray]:
    """Per text, the mean over its tokens: (D',) for a strategy, (layers, D) for ``ALL_LAYERS``."""
    def compute() -> list[np.ndarray]:
        reduce = layer_reducer(strategy)

        def run(batch):
            layers, mask = source.text_layers(batch)
            weights = mask.unsqueeze(-1).float()
            pooled = [(h * weights).sum(1) / weights.sum(1).clamp(min=1) for h in layers]  # (B, D) each
            return list(reduce(pooled).cpu().numpy())

        return _batched(texts, [len(t) + len(p or "") for t, p in texts], batch_size, run)

    if cache is None:
        return compute()
    return cache.get_or_compute(FeatureCache.key(source, strategy, "pooled", texts), compute)


def _split_words(reduced: torch.Tensor, batch: Sequence[Sequence[str]], strategy: str) -> list[np.ndarray]:
    array = reduced.cpu().numpy()
    if strategy == ALL_LAYERS:  # (B, layers, T, D)
        return [np.ascontiguousarray(array[row, :, :len(words)]) for row, words in enumerate(batch)]
    return [np.ascontiguousarray(array[row, :len(words)]) for row, words in enumerate(batch)]


def _batched(items: Sequence, lengths: Sequence[int], batch_size: int, run) -> list:
    """``run`` over batches of ``items`` sorted by length (longest first: little padding, and
    a memory peak shows at once), results written back in input order."""
    from lmforge.progress import progress

    order = np.argsort([-n for n in lengths], kind="stable")
    results: list = [None] * len(items)
    with progress(len(items), "features", "seq") as bar:
        for start in range(0, len(items), batch_size):
            index = order[start:start + batch_size]
            for i, value in zip(index, run([items[i] for i in index])):
                results[i] = value
            bar.update(len(index))
    return results
