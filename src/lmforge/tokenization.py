"""Sub-word tokenizers for every lmforge family, as a thin layer over HF ``tokenizers`` (Rust).

Four kinds, each rebuilt to match the tokenizer of the paper that introduced it:

- ``wordpiece``: BERT (Devlin et al., 2019). Pipeline of google-research/bert ``tokenization.py``
  (BasicTokenizer: clean text, split CJK characters, lowercase and strip accents together,
  split on whitespace and punctuation; WordpieceTokenizer: greedy longest match, ``##``
  continuations, words over 100 characters become ``[UNK]``), expressed with the same
  ``tokenizers`` components that HF ``BertTokenizerFast`` uses, so ids match it exactly.
- ``bpe``: character-level BPE (Sennrich et al., 2016) as in GPT (Radford et al., 2018); the
  normaliser follows HF's ``OpenAIGPTConverter`` (BertNormalizer).
- ``byte_bpe``: byte-level BPE of GPT-2 (Radford et al., 2019) and RoBERTa (Liu et al., 2019);
  pipeline and ``<s> A </s></s> B </s>`` layout as in HF's ``RobertaConverter``.
- ``unigram``: SentencePiece unigram LM (Kudo, 2018) with ALBERT's (Lan et al., 2020)
  normalisation and ``[CLS] A [SEP] B [SEP]`` layout, as in HF's ``AlbertConverter``.

Directories are written in the HF layout (tokenizer.json, tokenizer_config.json,
special_tokens_map.json, plus vocab.txt for WordPiece) so transformers loads them unchanged.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import lzma
import string
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import tokenizers
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers

from lmforge.errors import UserError

if TYPE_CHECKING:
    import torch

KINDS = ("wordpiece", "bpe", "byte_bpe", "unigram")
ROLES = ("pad", "unk", "cls", "sep", "mask")

# Special tokens of each kind, in vocabulary order (the trainers put them first, ids 0..4).
# WordPiece follows the bert vocab files, byte_bpe RoBERTa's dictionary (<mask> moved up from
# last), unigram ALBERT's spiece vocabulary.
_SPECIALS: dict[str, tuple[str, ...]] = {
    "wordpiece": ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
    "bpe": ("<s>", "<pad>", "</s>", "<unk>", "<mask>"),
    "byte_bpe": ("<s>", "<pad>", "</s>", "<unk>", "<mask>"),
    "unigram": ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"),
}
_BRACKETS = dict(zip(ROLES, ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), strict=True))
_ANGLES = dict(zip(ROLES, ("<pad>", "<unk>", "<s>", "</s>", "<mask>"), strict=True))
_ROLE_TOKENS: dict[str, dict[str, str]] = {
    "wordpiece": _BRACKETS,
    "bpe": _ANGLES,
    "byte_bpe": _ANGLES,
    "unigram": {**_BRACKETS, "pad": "<pad>", "unk": "<unk>"},
}
# Names tried, in order, for a role the directory does not declare (hub tokenizers of other
# families, e.g. T5 has no mask/cls, XLNet uses <cls>/<sep>).
_FALLBACK_NAMES = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>", "<|endoftext|>"),
    "cls": ("[CLS]", "<s>", "<cls>", "<|endoftext|>"),
    "sep": ("[SEP]", "</s>", "<sep>", "<|endoftext|>"),
    "mask": ("[MASK]", "<mask>"),
}

_MAX_INPUT_CHARS_PER_WORD = 100  # google-research/bert WordpieceTokenizer default
_LIMIT_ALPHABET = 1000  # HF tokenizers' BertWordPieceTokenizer.train default
_BATCH_LINES = 1000  # lines handed to the Rust trainer at a time while streaming
_BYTE_LEVEL_SPACES = ("Ġ", "Ċ", "ĉ", "č")  # GPT-2 byte-to-unicode images of " ", "\n", "\t", "\r"
# ALBERT create_pretraining_data.py `_is_start_piece`: these pieces, and any piece with a
# character outside a-z and these, start a word.
_ALBERT_SPECIAL_PIECES = frozenset('!"#$%&"()*+,-./:;?@[\\]^_`{|}~') | {"€", "£"}
_ALBERT_WORD_CHARS = frozenset(string.ascii_lowercase) | _ALBERT_SPECIAL_PIECES


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
        if kind not in KINDS:
            raise UserError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.backend = backend
        self.kind = kind
        self.lowercase = lowercase
        self.model_max_length = model_max_length
        # role -> token string (None when the vocabulary has no such token, e.g. GPT-2's mask)
        self.special_tokens = _resolve_roles(backend, kind, special_tokens or {})

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
        """Learn a vocabulary from text files (.txt or .jsonl with a "text" field, optionally .gz/.xz).

        Files are streamed line by line, so memory grows with the number of distinct words,
        not with the corpus. ``min_frequency`` does not apply to ``unigram`` (SentencePiece's
        trainer has no such option). WordPiece and ``bpe`` training may break count ties
        differently from run to run (hash order of "##" pieces, huggingface/tokenizers#1794);
        byte_bpe training is reproducible.
        """
        if kind not in KINDS:
            raise UserError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
        paths = [Path(f) for f in files]
        if not paths:
            raise UserError("no training files given")
        for path in paths:
            if not path.is_file():
                raise UserError(f"training file not found: {path}")
        specials = _SPECIALS[kind]
        if vocab_size <= len(specials):
            raise UserError(f"vocab size must exceed the {len(specials)} special tokens, got {vocab_size}")
        backend = _pipeline(kind, lowercase, _empty_model(kind))
        trainer = _trainer(kind, vocab_size, min_frequency, show_progress)
        backend.train_from_iterator(_stream_lines(paths), trainer=trainer)
        backend.post_processor = _post_processor(kind, backend)
        # Unigram scores reload a ULP off (serde_json's float parsing is not exact); one trip
        # through JSON makes the trained tokenizer equal to every later load of it.
        backend = tokenizers.Tokenizer.from_str(backend.to_str())
        return cls(backend, kind, lowercase)

    @classmethod
    def from_dir(cls, path: str | Path) -> Tokenizer:
        """Load a directory holding tokenizer.json, or a BERT vocab.txt (+ tokenizer_config.json)."""
        directory = Path(path)
        if not directory.is_dir():
            raise UserError(f"tokenizer directory not found: {directory}")
        config = _read_json(directory / "tokenizer_config.json")
        declared = {**_read_json(directory / "special_tokens_map.json"), **config}
        names = {role: _token_content(declared.get(f"{role}_token")) for role in ROLES}
        max_length = config.get("model_max_length")
        # HF writes a huge sentinel (int(1e30)) when the length is unknown
        model_max_length = max_length if isinstance(max_length, int) and max_length < 1_000_000 else 512
        json_path = directory / "tokenizer.json"
        vocab_path = directory / "vocab.txt"
        if json_path.is_file():
            try:
                backend = tokenizers.Tokenizer.from_file(str(json_path))
            except Exception as error:  # the Rust side raises a bare Exception on bad files
                raise UserError(f"cannot read {json_path}: {error}") from error
            # lmforge sets truncation and padding per call; a hub file may carry its own
            backend.no_truncation()
            backend.no_padding()
            spec = json.loads(backend.to_str())
            kind = _detect_kind(spec, json_path)
            lowercase = _detects_lowercase(spec.get("normalizer"))
        elif vocab_path.is_file():
            kind = "wordpiece"
            lowercase = bool(config.get("do_lower_case", True))  # BertTokenizer's default
            backend = _wordpiece_from_vocab(vocab_path, lowercase, config, names)
        else:
            raise UserError(f"{directory} holds neither tokenizer.json nor vocab.txt")
        return cls(backend, kind, lowercase, {r: n for r, n in names.items() if n}, model_max_length)

    def save(self, directory: str | Path) -> None:
        """Write the HF layout, loadable by transformers' AutoTokenizer (BertTokenizerFast for WordPiece)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        with self._settings(max_length=None, pad_to=False):
            self.backend.save(str(out / "tokenizer.json"), pretty=True)
        special_map = {f"{role}_token": token for role, token in self.special_tokens.items() if token}
        if self.kind in ("bpe", "byte_bpe"):
            # RoBERTa/GPT name the sequence delimiters bos/eos as well
            special_map.update(bos_token=self.special_tokens["cls"], eos_token=self.special_tokens["sep"])
        config: dict[str, Any] = {
            # BertTokenizer (v5: the tokenizers-backed class) rebuilds the BERT pipeline from
            # these options; the other kinds load tokenizer.json verbatim.
            "tokenizer_class": "BertTokenizer" if self.kind == "wordpiece" else "PreTrainedTokenizerFast",
            "do_lower_case": self.lowercase,
            "model_max_length": self.model_max_length,
            "clean_up_tokenization_spaces": False,
            **special_map,
        }
        if self.kind == "wordpiece":
            config.update(_bert_normalizer_options(self.backend))
        _write_json(out / "tokenizer_config.json", config)
        _write_json(out / "special_tokens_map.json", special_map)
        if self.kind == "wordpiece":
            vocab = self.backend.get_vocab(with_added_tokens=True)
            tokens = sorted(vocab, key=vocab.__getitem__)
            (out / "vocab.txt").write_text("".join(f"{token}\n" for token in tokens), encoding="utf-8")

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
    def special_ids(self) -> frozenset[int]:
        """Ids of the special added tokens and of the role tokens (pad, unk, cls, sep, mask)."""
        added = {i for i, token in self.backend.get_added_tokens_decoder().items() if token.special}
        roles = {self._role_id(role) for role in ROLES}
        return frozenset(added | {i for i in roles if i is not None})

    def word_start_mask(self) -> np.ndarray:
        """Bool [vocab_size]: True where a token begins a word (whole-word and n-gram masking)."""
        starts_word = _WORD_START_RULES[self.kind]
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


# -------------------------------------------------------------------- pipelines per kind
def _bert_normalizer(lowercase: bool, strip_accents: bool | None = None, chinese: bool = True) -> Any:
    # BertTokenizerFast: strip_accents unset follows lowercase, as in the original BERT
    return normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=chinese,
        strip_accents=lowercase if strip_accents is None else strip_accents,
        lowercase=lowercase,
    )


def _albert_normalizer(lowercase: bool) -> Any:
    steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
    if lowercase:  # ALBERT: keep_accents=False and do_lower_case=True go together
        steps += [normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()]
    else:
        steps.append(normalizers.NFKC())  # SentencePiece's default nmt_nfkc
    # SentencePiece collapses whitespace runs and trims the ends
    steps += [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    return normalizers.Sequence(steps)


def _empty_model(kind: str) -> Any:
    if kind == "wordpiece":
        return models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=_MAX_INPUT_CHARS_PER_WORD)
    if kind == "bpe":
        return models.BPE(unk_token="<unk>", continuing_subword_prefix="##")
    if kind == "byte_bpe":
        return models.BPE()  # every byte is in the alphabet, so no unknown token is needed
    return models.Unigram()


def _pipeline(kind: str, lowercase: bool, model: Any) -> tokenizers.Tokenizer:
    """A tokenizer with the kind's normaliser, pre-tokeniser and decoder (post-processor set later)."""
    backend = tokenizers.Tokenizer(model)
    if kind == "wordpiece":
        backend.normalizer = _bert_normalizer(lowercase)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
    elif kind == "bpe":
        # Continuations carry "##" (GPT used a "</w>" end-of-word suffix instead): marking the
        # start of each word lets word_start_mask work from the vocabulary alone.
        backend.normalizer = _bert_normalizer(lowercase)
        backend.pre_tokenizer = pre_tokenizers.Whitespace()
        backend.decoder = decoders.WordPiece(prefix="##")
    elif kind == "byte_bpe":
        if lowercase:
            backend.normalizer = normalizers.Lowercase()
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
        backend.decoder = decoders.ByteLevel()
    else:
        backend.normalizer = _albert_normalizer(lowercase)
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return backend


def _trainer(kind: str, vocab_size: int, min_frequency: int, show_progress: bool) -> Any:
    common = dict(vocab_size=vocab_size, show_progress=show_progress, special_tokens=list(_SPECIALS[kind]))
    if kind == "wordpiece":
        return trainers.WordPieceTrainer(min_frequency=min_frequency, limit_alphabet=_LIMIT_ALPHABET,
                                         continuing_subword_prefix="##", **common)
    if kind == "bpe":
        return trainers.BpeTrainer(min_frequency=min_frequency, limit_alphabet=_LIMIT_ALPHABET,
                                   continuing_subword_prefix="##", **common)
    if kind == "byte_bpe":
        # all 256 bytes as the initial alphabet, as GPT-2
        return trainers.BpeTrainer(min_frequency=min_frequency, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                   **common)
    return trainers.UnigramTrainer(unk_token="<unk>", **common)


def _post_processor(kind: str, backend: tokenizers.Tokenizer) -> Any:
    roles = {role: (token, backend.token_to_id(token)) for role, token in _ROLE_TOKENS[kind].items()}
    cls_token, sep_token = roles["cls"][0], roles["sep"][0]
    if kind == "byte_bpe":
        # RoBERTa: <s> A </s></s> B </s>, all segment ids 0, offsets trimmed of the leading space
        return processors.RobertaProcessing(roles["sep"], roles["cls"], trim_offsets=True, add_prefix_space=False)
    if kind == "bpe":
        single = f"{cls_token}:0 $A:0 {sep_token}:0"
        pair = f"{single} {sep_token}:0 $B:0 {sep_token}:0"
    else:  # BERT and ALBERT
        single = f"{cls_token}:0 $A:0 {sep_token}:0"
        pair = f"{single} $B:1 {sep_token}:1"
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=[roles["cls"], roles["sep"]])


def _wordpiece_from_vocab(
    path: Path, lowercase: bool, config: dict[str, Any], names: dict[str, str | None]
) -> tokenizers.Tokenizer:
    """The BertTokenizer pipeline around a vocab.txt (one token per line, id = line number)."""
    with path.open(encoding="utf-8") as handle:
        # transformers' load_vocab: strip the newline only; a repeated token keeps its last id
        vocab = {line.rstrip("\n"): index for index, line in enumerate(handle)}
    specials = {role: names.get(role) or _BRACKETS[role] for role in ROLES}
    for role in ("unk", "cls", "sep"):
        if specials[role] not in vocab:
            raise UserError(f"{path} has no {role} token {specials[role]!r}")
    model = models.WordPiece(vocab, unk_token=specials["unk"], max_input_chars_per_word=_MAX_INPUT_CHARS_PER_WORD)
    backend = tokenizers.Tokenizer(model)
    backend.normalizer = _bert_normalizer(
        lowercase, config.get("strip_accents"), bool(config.get("tokenize_chinese_chars", True))
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    # Special tokens in id order, as the trainer registers them, so fingerprints agree.
    present = sorted((vocab[token], token) for token in set(specials.values()) if token in vocab)
    backend.add_special_tokens([token for _, token in present])
    single = f"{specials['cls']}:0 $A:0 {specials['sep']}:0"
    backend.post_processor = processors.TemplateProcessing(
        single=single,
        pair=f"{single} $B:1 {specials['sep']}:1",
        special_tokens=[(specials[r], vocab[specials[r]]) for r in ("cls", "sep")],
    )
    return backend


def _detect_kind(spec: dict[str, Any], path: Path) -> str:
    model_type = spec.get("model", {}).get("type")
    if model_type == "WordPiece":
        return "wordpiece"
    if model_type == "Unigram":
        return "unigram"
    if model_type == "BPE":
        return "byte_bpe" if '"ByteLevel"' in json.dumps(spec.get("pre_tokenizer")) else "bpe"
    raise UserError(f"{path}: unsupported tokenizer model {model_type!r} (need WordPiece, BPE or Unigram)")


def _detects_lowercase(normalizer: Any) -> bool:
    """Whether a serialized normaliser lowercases (BertNormalizer(lowercase) or a Lowercase step)."""
    if isinstance(normalizer, list):
        return any(_detects_lowercase(step) for step in normalizer)
    if not isinstance(normalizer, dict):
        return False
    if normalizer.get("type") == "Lowercase" or (
        normalizer.get("type") == "BertNormalizer" and normalizer.get("lowercase")
    ):
        return True
    return _detects_lowercase(normalizer.get("normalizers"))


def _bert_normalizer_options(backend: tokenizers.Tokenizer) -> dict[str, Any]:
    """tokenizer_config.json options that make HF's BertTokenizer rebuild our normaliser."""
    spec = json.loads(backend.to_str()).get("normalizer") or {}
    if spec.get("type") != "BertNormalizer":
        return {}
    return {"strip_accents": spec.get("strip_accents"), "tokenize_chinese_chars": spec.get("handle_chinese_chars")}


def _resolve_roles(backend: tokenizers.Tokenizer, kind: str, declared: dict[str, str]) -> dict[str, str | None]:
    """Token string for each role: as declared, else the kind's name, else a known alias, if in the vocab."""
    vocab = backend.get_vocab(with_added_tokens=True)
    resolved: dict[str, str | None] = {}
    for role in ROLES:
        candidates = (declared.get(role), _ROLE_TOKENS[kind][role], *_FALLBACK_NAMES[role])
        resolved[role] = next((name for name in candidates if name and name in vocab), None)
    return resolved


# -------------------------------------------------------------------- word starts per kind
def _is_punctuation(token: str) -> bool:
    return all(c in string.punctuation or unicodedata.category(c).startswith("P") for c in token)


def _albert_starts_word(piece: str) -> bool:
    return (
        piece.startswith(("▁", "<"))
        or piece in _ALBERT_SPECIAL_PIECES
        or not all(c.lower() in _ALBERT_WORD_CHARS for c in piece)
    )


_WORD_START_RULES: dict[str, Callable[[str], bool]] = {
    # google-research/bert create_pretraining_data.py: "##" pieces continue the previous word
    "wordpiece": lambda token: not token.startswith("##"),
    "bpe": lambda token: not token.startswith("##"),
    "byte_bpe": lambda token: token.startswith(_BYTE_LEVEL_SPACES) or _is_punctuation(token),
    "unigram": _albert_starts_word,
}


# -------------------------------------------------------------------- files
def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    if path.name.endswith(".xz"):
        return lzma.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _stream_lines(paths: Sequence[Path]) -> Iterator[list[str]]:
    """Batches of text lines from .txt / .jsonl ("text" field) files, compressed or not."""
    batch: list[str] = []
    for path in paths:
        is_jsonl = path.name.removesuffix(".gz").removesuffix(".xz").endswith(".jsonl")
        try:
            with _open_text(path) as handle:
                for number, line in enumerate(handle, start=1):
                    if is_jsonl:
                        line = _jsonl_text(line, path, number)
                    if line.strip():
                        batch.append(line)
                    if len(batch) >= _BATCH_LINES:
                        yield batch
                        batch = []
        except (UnicodeDecodeError, OSError, EOFError, lzma.LZMAError) as error:
            raise UserError(f"cannot read {path}: {error}") from error
    if batch:
        yield batch


def _jsonl_text(line: str, path: Path, number: int) -> str:
    if not line.strip():
        return ""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{number}: invalid JSON ({error.msg})") from error
    text = record.get("text") if isinstance(record, dict) else None
    if not isinstance(text, str):
        raise UserError(f'{path}:{number}: no "text" string field')
    return text


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _token_content(value: Any) -> str | None:
    """A special token as HF stores it: a string, or an AddedToken dict with "content"."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _id_list(ids: Any) -> list[int]:
    if hasattr(ids, "tolist"):  # torch tensors and numpy arrays
        ids = ids.tolist()
    return [int(i) for i in ids]


def _to_long_tensor(rows: list[list[int]]) -> torch.Tensor:
    import torch  # imported here so corpus preparation and the CLI do not pay for torch

    if len({len(row) for row in rows}) > 1:
        raise ValueError("rows differ in length; pass padding or return_tensors=None")
    return torch.tensor(rows, dtype=torch.long)
