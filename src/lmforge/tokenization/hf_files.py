"""Tokenizer directories in the Hugging Face layout: reading every file set transformers writes,
and writing one that transformers' AutoTokenizer loads unchanged.

Read: ``tokenizer.json`` (any kind), a BERT ``vocab.txt`` (transformers' ``BertTokenizer``:
one token per line, ``do_lower_case``/``strip_accents``/``tokenize_chinese_chars`` from
``tokenizer_config.json``), and GPT-2/RoBERTa ``vocab.json`` + ``merges.txt`` (transformers'
``GPT2Tokenizer``/``RobertaTokenizer``: byte-level BPE, ``add_prefix_space`` from the config),
and ALBERT's SentencePiece ``spiece.model`` (``lmforge.tokenization.spiece``; ``do_lower_case`` and
``keep_accents`` from the config, as transformers' ``AlbertTokenizer``).
Special-token names come from ``tokenizer_config.json`` and ``special_tokens_map.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import models

from lmforge.errors import UserError
from lmforge.tokenization.kinds import (
    KINDS,
    MAX_INPUT_CHARS_PER_WORD,
    ROLES,
    PipelineOptions,
    TokenizerKind,
    detect_kind,
)

_UNKNOWN_LENGTH = 1_000_000  # HF writes a huge sentinel (int(1e30)) when the length is unknown
_DEFAULT_MAX_LENGTH = 512


@dataclass
class LoadedDirectory:
    backend: tokenizers.Tokenizer
    kind: TokenizerKind
    lowercase: bool
    declared: dict[str, str]  # role -> token name the directory declares
    model_max_length: int


# Any one of these makes a directory a tokenizer directory (merges.txt goes with vocab.json).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model")


def has_tokenizer(directory: Path) -> bool:
    return any((directory / name).is_file() for name in TOKENIZER_FILES)


def load_directory(path: str | Path) -> LoadedDirectory:
    directory = Path(path)
    if not directory.is_dir():
        raise UserError(f"tokenizer directory not found: {directory}")
    config = read_json(directory / "tokenizer_config.json")
    declared_tokens = {**read_json(directory / "special_tokens_map.json"), **config}
    names = {role: token_content(declared_tokens.get(f"{role}_token")) for role in ROLES}
    declared = {role: name for role, name in names.items() if name}
    max_length = config.get("model_max_length")
    model_max_length = (
        max_length if isinstance(max_length, int) and max_length < _UNKNOWN_LENGTH else _DEFAULT_MAX_LENGTH
    )
    json_path = directory / "tokenizer.json"
    vocab_txt = directory / "vocab.txt"
    vocab_json, merges_txt = directory / "vocab.json", directory / "merges.txt"
    if json_path.is_file():
        backend, kind, lowercase = _from_tokenizer_json(json_path, config)
    elif vocab_txt.is_file():
        kind = KINDS["wordpiece"]
        lowercase = bool(config.get("do_lower_case", True))  # BertTokenizer's default
        backend = _wordpiece_from_vocab(vocab_txt, kind, lowercase, config, declared)
    elif (directory / "spiece.model").is_file():
        if _is_t5_spiece(directory / "spiece.model", config):
            lowercase = False  # T5Tokenizer never lowercases
            backend, kind = _t5_unigram_from_spiece(directory / "spiece.model", config)
        else:
            lowercase = bool(config.get("do_lower_case", True))  # AlbertTokenizer's defaults
            backend, kind = _unigram_from_spiece(directory / "spiece.model", lowercase, config)
    elif vocab_json.is_file() and merges_txt.is_file():
        lowercase = bool(config.get("do_lower_case", False))  # GPT-2 and RoBERTa are cased
        backend, kind = _byte_bpe_from_vocab(vocab_json, merges_txt, lowercase, config, declared_tokens)
    else:
        raise UserError(
            f"{directory} holds neither tokenizer.json, vocab.txt, spiece.model nor vocab.json + merges.txt"
        )
    return LoadedDirectory(backend, kind, lowercase, declared, model_max_length)


def write_directory(
    directory: str | Path,
    backend: tokenizers.Tokenizer,
    kind: TokenizerKind,
    lowercase: bool,
    special_tokens: dict[str, str | None],
    model_max_length: int,
) -> None:
    """tokenizer.json, tokenizer_config.json, special_tokens_map.json (+ vocab.txt where the kind has one)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    backend.save(str(out / "tokenizer.json"), pretty=True)
    special_map = {f"{role}_token": token for role, token in special_tokens.items() if token}
    config: dict[str, Any] = {
        "tokenizer_class": kind.saved_class,
        "do_lower_case": lowercase,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        **special_map,
    }
    if kind.byte_level:  # RobertaTokenizer/GPT2Tokenizer rebuild the pre-tokeniser from this
        pre_tokenizer = json.dumps(json.loads(backend.to_str()).get("pre_tokenizer"))
        config["add_prefix_space"] = '"add_prefix_space": true' in pre_tokenizer
    if kind.name == "unigram":
        # transformers' AlbertTokenizer rebuilds its normaliser from these two switches
        config["keep_accents"] = not _has_step(json.loads(backend.to_str()).get("normalizer"), "StripAccents")
    if kind.saved_class == "BertTokenizer":
        # BertTokenizer (v5: the tokenizers-backed class) rebuilds the BERT pipeline from these
        config.update(_bert_normalizer_options(backend))
    write_json(out / "tokenizer_config.json", config)
    write_json(out / "special_tokens_map.json", special_map)
    if kind.writes_vocab_txt:
        vocab = backend.get_vocab(with_added_tokens=True)
        tokens = sorted(vocab, key=vocab.__getitem__)
        (out / "vocab.txt").write_text("".join(f"{token}\n" for token in tokens), encoding="utf-8")


# -------------------------------------------------------------------- readers per file set
def _from_tokenizer_json(path: Path, config: dict[str, Any]) -> tuple[tokenizers.Tokenizer, TokenizerKind, bool]:
    try:
        backend = tokenizers.Tokenizer.from_file(str(path))
    except Exception as error:  # the Rust side raises a bare Exception on bad files
        raise UserError(f"cannot read {path}: {error}") from error
    # lmforge sets truncation and padding per call; a hub file may carry its own
    backend.no_truncation()
    backend.no_padding()
    spec = json.loads(backend.to_str())
    kind = detect_kind(spec, config.get("tokenizer_class"), path)
    return backend, kind, _detects_lowercase(spec.get("normalizer"))


def _wordpiece_from_vocab(
    path: Path, kind: TokenizerKind, lowercase: bool, config: dict[str, Any], declared: dict[str, str]
) -> tokenizers.Tokenizer:
    """The BertTokenizer pipeline around a vocab.txt (one token per line, id = line number)."""
    with path.open(encoding="utf-8") as handle:
        # transformers' load_vocab: strip the newline only; a repeated token keeps its last id
        vocab = {line.rstrip("\n"): index for index, line in enumerate(handle)}
    specials = {role: declared.get(role) or kind.specials.roles[role] for role in kind.specials.roles}
    for role in ("unk", "cls", "sep"):
        if specials[role] not in vocab:
            raise UserError(f"{path} has no {role} token {specials[role]!r}")
    options = PipelineOptions(
        lowercase=lowercase,
        strip_accents=config.get("strip_accents"),
        split_chinese=bool(config.get("tokenize_chinese_chars", True)),
    )
    model = models.WordPiece(vocab, unk_token=specials["unk"], max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD)
    backend = kind.pipeline(model, options)
    # Special tokens in id order, as the trainer registers them, so fingerprints agree.
    present = sorted((vocab[token], token) for token in set(specials.values()) if token in vocab)
    backend.add_special_tokens([token for _, token in present])
    backend.post_processor = kind.layout.build({r: (specials[r], vocab[specials[r]]) for r in ("cls", "sep")}, options)
    return backend


def _byte_bpe_from_vocab(
    vocab_path: Path, merges_path: Path, lowercase: bool, config: dict[str, Any], declared_tokens: dict[str, Any]
) -> tuple[tokenizers.Tokenizer, TokenizerKind]:
    """transformers' GPT2Tokenizer / RobertaTokenizer pipeline around vocab.json and merges.txt."""
    try:
        vocab, merges = models.BPE.read_file(str(vocab_path), str(merges_path))
    except Exception as error:  # the Rust side raises a bare Exception on bad files
        raise UserError(f"cannot read {vocab_path} and {merges_path}: {error}") from error
    kind = _byte_level_kind(config.get("tokenizer_class"), vocab)
    options = PipelineOptions(lowercase=lowercase, add_prefix_space=bool(config.get("add_prefix_space", False)))
    model = models.BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    backend = kind.pipeline(model, options)
    # The declared tokens keep their HF attributes (RoBERTa's <mask> may strip the space before it).
    specials: dict[str, tokenizers.AddedToken] = {}
    for role, token in kind.specials.roles.items():
        value = declared_tokens.get(f"{role}_token", token)
        content = token_content(value)
        if content in vocab and content not in specials:
            specials[content] = _added_token(value)
    backend.add_special_tokens([specials[token] for token in sorted(specials, key=vocab.__getitem__)])
    roles = {role: (token, vocab[token]) for role, token in kind.specials.roles.items() if token in vocab}
    backend.post_processor = kind.layout.build(roles, options)
    return backend, kind


def _unigram_from_spiece(
    path: Path, lowercase: bool, config: dict[str, Any]
) -> tuple[tokenizers.Tokenizer, TokenizerKind]:
    """transformers' AlbertTokenizer pipeline around a SentencePiece model file."""
    from lmforge.tokenization.spiece import CONTROL, UNKNOWN, USER_DEFINED, read_spiece

    spiece = read_spiece(path)
    kind = KINDS["unigram"]
    options = PipelineOptions(lowercase=lowercase, strip_accents=not config.get("keep_accents", False),
                              precompiled_charsmap=spiece.precompiled_charsmap)
    model = models.Unigram([(piece, score) for piece, score, _ in spiece.pieces], unk_id=spiece.unk_id,
                           byte_fallback=False)
    backend = kind.pipeline(model, options)
    backend.add_special_tokens([piece for piece, _, type_ in spiece.pieces if type_ in (CONTROL, UNKNOWN)])
    # user-defined pieces (ALBERT's punctuation) are matched whole before the model runs
    backend.add_tokens([tokenizers.AddedToken(piece, normalized=False)
                        for piece, _, type_ in spiece.pieces if type_ == USER_DEFINED])
    vocab = backend.get_vocab(with_added_tokens=True)
    roles = {role: (token, vocab[token]) for role, token in kind.specials.roles.items() if token in vocab}
    if "cls" not in roles or "sep" not in roles:
        raise UserError(f"{path} has no [CLS]/[SEP] pieces (not an ALBERT vocabulary)")
    backend.post_processor = kind.layout.build(roles, options)
    return backend, kind


def _is_t5_spiece(path: Path, config: dict[str, Any]) -> bool:
    """T5's vocabulary (named by tokenizer_config.json, or recognised by its pieces: <pad>,
    </s>, <unk> at ids 0, 1, 2 and no ALBERT [CLS])."""
    from lmforge.tokenization.spiece import read_spiece

    if config.get("tokenizer_class") in KINDS["t5_unigram"].hf_classes:
        return True
    if config.get("tokenizer_class") in KINDS["unigram"].hf_classes:
        return False
    pieces = [piece for piece, _, _ in read_spiece(path).pieces]
    return pieces[:3] == ["<pad>", "</s>", "<unk>"] and "[CLS]" not in pieces


def _t5_unigram_from_spiece(path: Path, config: dict[str, Any]) -> tuple[tokenizers.Tokenizer, TokenizerKind]:
    """transformers' T5Tokenizer pipeline around a SentencePiece model file: the file's pieces
    and scores, then ``extra_ids`` (default 100) sentinels with <extra_id_0> at the highest id;
    the file's character map as the only normaliser; whitespace split, then Metaspace; ``A </s>``
    and ``A </s> B </s>`` layouts."""
    from tokenizers import decoders, normalizers, pre_tokenizers

    from lmforge.tokenization.spiece import CONTROL, UNKNOWN, read_spiece

    spiece = read_spiece(path)
    kind = KINDS["t5_unigram"]
    extra_ids = int(config.get("extra_ids", 100))
    sentinels = [f"<extra_id_{i}>" for i in range(extra_ids - 1, -1, -1)]
    model = models.Unigram([(piece, score) for piece, score, _ in spiece.pieces] + [(t, 0.0) for t in sentinels],
                           unk_id=spiece.unk_id, byte_fallback=False)
    backend = tokenizers.Tokenizer(model)
    if spiece.precompiled_charsmap:
        backend.normalizer = normalizers.Precompiled(spiece.precompiled_charsmap)
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.add_special_tokens([piece for piece, _, type_ in spiece.pieces if type_ in (CONTROL, UNKNOWN)]
                               + sentinels)
    vocab = backend.get_vocab(with_added_tokens=True)
    roles = {role: (token, vocab[token]) for role, token in kind.specials.roles.items() if token in vocab}
    if "eos" not in roles:
        raise UserError(f"{path} has no </s> piece (not a T5 vocabulary)")
    backend.post_processor = kind.layout.build(roles, PipelineOptions(lowercase=False))
    return backend, kind


def _has_step(normalizer: Any, step: str) -> bool:
    if isinstance(normalizer, list):
        return any(_has_step(item, step) for item in normalizer)
    if not isinstance(normalizer, dict):
        return False
    return normalizer.get("type") == step or _has_step(normalizer.get("normalizers"), step)


def _byte_level_kind(tokenizer_class: Any, vocab: dict[str, int]) -> TokenizerKind:
    """RoBERTa or GPT-2 layout: as the config names the class, else RoBERTa when <s> and </s> exist."""
    byte_kinds = [kind for kind in KINDS.values() if kind.model_type == "BPE" and kind.byte_level]
    for kind in byte_kinds:
        if tokenizer_class in kind.hf_classes:
            return kind
    has_all_roles = [k for k in byte_kinds if all(t in vocab for t in k.specials.roles.values())]
    return has_all_roles[0] if has_all_roles else KINDS["gpt2_byte_bpe"]


def _added_token(value: Any) -> tokenizers.AddedToken:
    if not isinstance(value, dict):
        return tokenizers.AddedToken(value, special=True)
    keys = ("single_word", "lstrip", "rstrip", "normalized")
    return tokenizers.AddedToken(value["content"], special=True, **{k: bool(value[k]) for k in keys if k in value})


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


# -------------------------------------------------------------------- JSON
def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def token_content(value: Any) -> str | None:
    """A special token as HF stores it: a string, or an AddedToken dict with "content"."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None
