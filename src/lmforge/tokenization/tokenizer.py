"""The lmforge tokenizer: one class over HF ``tokenizers`` (Rust) for every kind in
``lmforge.tokenization.kinds``, which it reads instead of branching on the kind's name.

Encoding follows transformers' fast tokenizers (``truncation=True`` is longest-first with the
special tokens counted; an empty second text gives the single-text layout, as BERT's
run_classifier ``if text_b``), so ids match BertTokenizerFast, RobertaTokenizerFast,
GPT2TokenizerFast and the rest on the same files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tokenizers

from lmforge.errors import UserError
from lmforge.tokenization.hf_files import load_directory, write_directory
from lmforge.tokenization.kinds import FALLBACK_NAMES, ROLES, PipelineOptions, TokenizerKind, get_kind

if TYPE_CHECKING:
    import torch


class Tokenizer:
    """One trained sub-word tokenizer: encoding for models, decoding, and saving in HF layout."""

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        kind: str,
        lowercase: bool,
        special_tokens: dict[str, str] | None = None,
        model_max_length: int = 512,
    ) -> None:
        self.spec: TokenizerKind = get_kind(kind)
        self.backend = backend
        self.kind = kind
        self.lowercase = lowercase
        self.model_max_length = model_max_length
        # role -> token string (None when the vocabulary has no such token, e.g. GPT-2's mask)
        self.special_tokens = _resolve_roles(backend, self.spec, special_tokens or {})

    # ---------------------------------------------------------------- construction
    @classmethod
    def train(
        cls,
        files: Sequence[str | Path],
        kind: str = "wordpiece",
        vocab_size: int = 30522,
        lowercase: bool = True,
        min_frequency: int = 2,
        show_progress: bool = True,
    ) -> Tokenizer:
        """Learn a vocabulary from corpus files (.txt lines or .jsonl "text" fields, optionally compressed).

        Files are streamed, so memory grows with the number of distinct words, not with the
        corpus. ``vocab_size`` counts every id (special tokens and sentinels included).
        ``min_frequency`` does not apply to unigram kinds (SentencePiece's trainer has no such
        option). WordPiece and ``bpe`` training may break count ties differently from run to
        run (hash order of "##" pieces, huggingface/tokenizers#1794); byte-level BPE training is
        reproducible. A corpus without any text is a UserError.
        """
        # lmforge.data (the corpus reader's package) imports this one, so training is imported late
        from lmforge.tokenization.train import train_backend

        spec = get_kind(kind)
        backend = train_backend(files, spec, vocab_size, lowercase, min_frequency, show_progress)
        return cls(backend, spec.name, lowercase)

    @classmethod
    def from_dir(cls, path: str | Path) -> Tokenizer:
        """Load an HF tokenizer directory: tokenizer.json, a BERT vocab.txt, or GPT-2/RoBERTa
        vocab.json + merges.txt, each with its tokenizer_config.json when present."""
        loaded = load_directory(path)
        return cls(loaded.backend, loaded.kind.name, loaded.lowercase, loaded.declared, loaded.model_max_length)

    def with_prefix_space(self, enabled: bool = True) -> Tokenizer:
        """A byte-level copy that encodes the first word as if a space preceded it
        (``add_prefix_space``, as RoBERTa needs for pre-split words: NER, ``is_pretokenized``)."""
        from lmforge.tokenization.train import role_ids  # late, as in train()

        if not self.spec.byte_level:
            raise UserError(f"add_prefix_space applies to byte-level tokenizers, not {self.kind}")
        backend = tokenizers.Tokenizer.from_str(self.backend.to_str())
        options = PipelineOptions(lowercase=self.lowercase, add_prefix_space=enabled)
        backend.pre_tokenizer = self.spec.pre_tokenizer(options)
        backend.post_processor = self.spec.layout.build(role_ids(backend, self.spec), options)
        return Tokenizer(backend, self.kind, self.lowercase, dict(self.special_tokens), self.model_max_length)

    @property
    def add_prefix_space(self) -> bool:
        """Whether the byte-level pre-tokeniser treats the first word as following a space."""
        return '"add_prefix_space": true' in json.dumps(json.loads(self.backend.to_str()).get("pre_tokenizer"))

    def save(self, directory: str | Path) -> None:
        """Write the HF layout, loadable by transformers' AutoTokenizer (BertTokenizerFast for WordPiece)."""
        with self._settings(max_length=None, pad_to=False):
            write_directory(
                directory, self.backend, self.spec, self.lowercase, self.special_tokens, self.model_max_length
            )

    # ---------------------------------------------------------------- encoding
    def encode(
        self,
        text: str,
        pair: str | None = None,
        max_length: int | None = None,
        add_special_tokens: bool = True,
    ) -> dict[str, list[int]]:
        """One text (or pair) to ids, truncated longest-first to ``max_length`` like HF.

        An empty ``pair`` gives the single-text layout, as BERT's run_classifier (``if text_b``).
        """
        with self._settings(max_length=max_length, pad_to=False):
            enc = self.backend.encode(text, pair or None, add_special_tokens=add_special_tokens)
        return {"input_ids": enc.ids, "token_type_ids": enc.type_ids, "attention_mask": enc.attention_mask}

    def __call__(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        max_length: int | None = 512,
        padding: str | bool = "longest",
        return_tensors: str | None = "pt",
    ) -> dict[str, Any]:
        """Batch encode for a model: input_ids, token_type_ids, attention_mask (+ word_ids lists).

        ``padding``: "longest" (or True) pads to the longest row, "max_length" to ``max_length``,
        False leaves rows ragged (then only ``return_tensors=None`` is possible).
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings; use encode() for one text")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
        if padding is True or padding == "longest":
            pad_to: int | None | bool = None
        elif padding == "max_length":
            if max_length is None:
                raise ValueError('padding="max_length" needs max_length')
            pad_to = max_length
        elif padding is False or padding is None:
            pad_to = False
        else:
            raise ValueError(f'padding must be "longest", "max_length" or False, got {padding!r}')
        # an empty second text gives the single-text layout, as in encode()
        inputs = list(texts) if pairs is None else [(a, b) if b else a for a, b in zip(texts, pairs, strict=True)]
        with self._settings(max_length=max_length, pad_to=pad_to):
            encodings = self.backend.encode_batch(inputs, add_special_tokens=True)
        batch: dict[str, Any] = {
            "input_ids": [e.ids for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }
        if return_tensors == "pt":
            batch = {key: _to_long_tensor(rows) for key, rows in batch.items()}
        elif return_tensors is not None:
            raise ValueError(f'return_tensors must be "pt" or None, got {return_tensors!r}')
        batch["word_ids"] = [e.word_ids for e in encodings]
        return batch

    def encode_plain(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids without special tokens, for corpus preparation (parallel, skips offset tracking)."""
        with self._settings(max_length=None, pad_to=False):
            encodings = self.backend.encode_batch_fast(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        """Ids (list, numpy array or tensor) back to text."""
        return self.backend.decode(_id_list(ids), skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids: Any) -> list[str]:
        return [self.backend.id_to_token(i) for i in _id_list(ids)]

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    # ---------------------------------------------------------------- vocabulary facts
    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (HF's ``len(tokenizer)``)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int | None:
        return self._role_id("pad")

    @property
    def unk_id(self) -> int | None:
        return self._role_id("unk")

    @property
    def cls_id(self) -> int | None:
        return self._role_id("cls")

    @property
    def sep_id(self) -> int | None:
        return self._role_id("sep")

    @property
    def mask_id(self) -> int | None:
        return self._role_id("mask")

    @property
    def bos_id(self) -> int | None:
        return self._role_id("bos")

    @property
    def eos_id(self) -> int | None:
        return self._role_id("eos")

    @property
    def sentinel_ids(self) -> list[int]:
        """Ids of the kind's sentinel range in order (T5: <extra_id_0>, <extra_id_1>, ...), those present."""
        sentinels = self.spec.specials.sentinels
        ids = (self.backend.token_to_id(token) for token in (sentinels.tokens() if sentinels else ()))
        return [i for i in ids if i is not None]

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids of the special added tokens and of the role tokens (pad, unk, cls, sep, mask, bos, eos)."""
        added = {i for i, token in self.backend.get_added_tokens_decoder().items() if token.special}
        roles = {self._role_id(role) for role in ROLES}
        return frozenset(added | {i for i in roles if i is not None})

    def word_start_mask(self) -> np.ndarray:
        """Bool [vocab_size]: True where a token begins a word (whole-word and n-gram masking)."""
        starts_word = self.spec.starts_word
        mask = np.zeros(self.vocab_size, dtype=bool)
        for token, index in self.backend.get_vocab(with_added_tokens=True).items():
            mask[index] = starts_word(token)
        mask[list(self.special_ids)] = True
        return mask

    def fingerprint(self) -> str:
        """sha256 of the serialized pipeline and vocabulary (truncation/padding state excluded)."""
        spec = json.loads(self.backend.to_str())
        spec["truncation"] = spec["padding"] = None
        canonical = json.dumps(spec, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, lowercase={self.lowercase})"

    # ---------------------------------------------------------------- internals
    def _role_id(self, role: str) -> int | None:
        token = self.special_tokens.get(role)
        return None if token is None else self.backend.token_to_id(token)

    @contextlib.contextmanager
    def _settings(self, max_length: int | None, pad_to: int | None | bool) -> Iterator[None]:
        """Apply truncation/padding for one call, then restore whatever others set on ``backend``.

        ``pad_to``: False = no padding, None = pad to the longest row, an int = pad to that length.
        """
        saved_truncation, saved_padding = self.backend.truncation, self.backend.padding
        if max_length is None:
            self.backend.no_truncation()
        else:
            # HF's truncation=True: longest-first over the pair, special tokens counted
            self.backend.enable_truncation(max_length, stride=0, strategy="longest_first", direction="right")
        if pad_to is False:
            self.backend.no_padding()
        else:
            pad_token = self.special_tokens["pad"]
            if pad_token is None:
                raise ValueError("this tokenizer has no padding token; use padding=False")
            self.backend.enable_padding(
                pad_id=self.backend.token_to_id(pad_token), pad_type_id=0, pad_token=pad_token, length=pad_to
            )
        try:
            yield
        finally:
            if saved_truncation is None:
                self.backend.no_truncation()
            else:
                self.backend.enable_truncation(**saved_truncation)
            if saved_padding is None:
                self.backend.no_padding()
            else:
                self.backend.enable_padding(**saved_padding)


def _resolve_roles(
    backend: tokenizers.Tokenizer, kind: TokenizerKind, declared: dict[str, str]
) -> dict[str, str | None]:
    """Token string for each role: as declared, else the kind's name, else a known alias, if in the vocab."""
    vocab = backend.get_vocab(with_added_tokens=True)
    resolved: dict[str, str | None] = {}
    for role in ROLES:
        candidates = (declared.get(role), kind.specials.roles.get(role), *FALLBACK_NAMES[role])
        resolved[role] = next((name for name in candidates if name and name in vocab), None)
    return resolved


def _id_list(ids: Any) -> list[int]:
    if hasattr(ids, "tolist"):  # torch tensors and numpy arrays
        ids = ids.tolist()
    return [int(i) for i in ids]


def _to_long_tensor(rows: list[list[int]]) -> torch.Tensor:
    import torch  # imported here so corpus preparation and the CLI do not pay for torch

    if len({len(row) for row in rows}) > 1:
        raise ValueError("rows differ in length; pass padding or return_tensors=None")
    return torch.tensor(rows, dtype=torch.long)
