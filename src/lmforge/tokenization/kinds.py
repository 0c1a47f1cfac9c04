"""The table of tokenizer kinds: one frozen spec per kind, read by training, loading and encoding.

Each kind rebuilds the tokenizer of the paper that introduced it, with the same HF ``tokenizers``
components that transformers' converters (``convert_slow_tokenizer.py``) use, so ids match:

- ``wordpiece``: BERT (Devlin et al., 2019), google-research/bert ``tokenization.py``
  (BasicTokenizer + greedy longest-match WordpieceTokenizer, ``##`` continuations, words over
  100 characters become ``[UNK]``); ``[CLS] A [SEP] B [SEP]`` with B in segment 1.
- ``bpe``: character-level BPE (Sennrich et al., 2016) as in GPT (Radford et al., 2018), with
  HF's ``OpenAIGPTConverter`` normaliser; ``##`` marks continuations (GPT used a ``</w>``
  end-of-word suffix) so word starts can be read off the vocabulary.
- ``byte_bpe``: byte-level BPE of GPT-2 (Radford et al., 2019) in RoBERTa's (Liu et al., 2019)
  ``<s> A </s></s> B </s>`` layout (HF ``RobertaConverter``).
- ``gpt2_byte_bpe``: the same byte-level BPE in GPT-2's own layout: no tokens added around the
  text, ``<|endoftext|>`` as bos/eos/unk (HF ``GPT2Converter``).
- ``unigram``: SentencePiece unigram LM (Kudo, 2018) with ALBERT's (Lan et al., 2020)
  normalisation and ``[CLS] A [SEP] B [SEP]`` layout (HF ``AlbertConverter``).
- ``llama_bpe``: SentencePiece-style BPE with byte fallback of LLaMA (Touvron et al., 2023):
  ``▁`` marks word starts (Metaspace, prepended to the first word only), characters outside the
  vocabulary fall back to ``<0xNN>`` byte pieces when the vocabulary has them, ``<s> A`` layout,
  ``<unk> <s> </s>`` at ids 0-2 (transformers 5's ``LlamaTokenizer`` pipeline).
- ``t5_unigram``: the unigram LM in T5's (Raffel et al., 2020) layout: ``A </s> B </s>``,
  pad/eos/unk at ids 0/1/2 and 100 ``<extra_id_N>`` sentinels at the top of the vocabulary
  (HF ``T5Converter``).

A kind is data: which special tokens it has and where, how to build each pipeline stage, how
to lay out one or two texts, and how to tell that a sub-token starts a word (whole-word masking).
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import tokenizers
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers

from lmforge.errors import UserError

# Roles a special token can play; models look ids up by role.
ROLES = ("pad", "unk", "cls", "sep", "mask", "bos", "eos")

# Names tried, in order, for a role neither the directory nor the kind names (hub tokenizers
# of other families, e.g. T5 has no mask/cls, XLNet uses <cls>/<sep>).
FALLBACK_NAMES: Mapping[str, tuple[str, ...]] = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>", "<|endoftext|>"),
    "cls": ("[CLS]", "<s>", "<cls>", "<|endoftext|>"),
    "sep": ("[SEP]", "</s>", "<sep>", "<|endoftext|>"),
    "mask": ("[MASK]", "<mask>"),
    "bos": ("<s>", "<|endoftext|>"),
    "eos": ("</s>", "<|endoftext|>"),
}

MAX_INPUT_CHARS_PER_WORD = 100  # google-research/bert WordpieceTokenizer default
_LIMIT_ALPHABET = 1000  # HF tokenizers' BertWordPieceTokenizer.train default


@dataclass(frozen=True)
class PipelineOptions:
    """The switches a tokenizer directory may set on a kind's pipeline."""

    lowercase: bool = True
    strip_accents: bool | None = None  # BERT: unset follows lowercase, as in the original
    split_chinese: bool = True  # BERT: one token per CJK character
    add_prefix_space: bool = False  # byte-level: treat the first word as if a space preceded it
    precompiled_charsmap: bytes = b""  # SentencePiece: the .model file's normalisation map (nmt_nfkc)


@dataclass(frozen=True)
class TrainerSettings:
    vocab_size: int  # learned pieces plus the leading special tokens (sentinels excluded)
    min_frequency: int
    show_progress: bool
    special_tokens: tuple[str, ...]


@dataclass(frozen=True)
class SentinelRange:
    """Tokens ``pattern.format(i)`` for i < count, added after the learned vocabulary with the
    first sentinel at the highest id, as T5's ``<extra_id_0>`` = vocab_size - 1."""

    pattern: str
    count: int

    def tokens(self) -> list[str]:
        return [self.pattern.format(i) for i in range(self.count)]


@dataclass(frozen=True)
class SpecialTokens:
    """The special tokens of a kind: ``leading`` take ids 0..n-1 in this order (the trainers put
    them first), ``roles`` says which token plays which role, ``sentinels`` go last."""

    leading: tuple[str, ...]
    roles: Mapping[str, str]  # role -> token; a role left out is absent from the kind
    sentinels: SentinelRange | None = None

    def all_tokens(self) -> list[str]:
        return [*self.leading, *(self.sentinels.tokens() if self.sentinels else ())]


@dataclass(frozen=True)
class Layout:
    """How one text or a pair becomes a model input (the post-processor)."""

    name: str
    # (role -> (token, id), options) -> post-processor
    build: Callable[[Mapping[str, tuple[str, int]], PipelineOptions], Any]
    # whether a serialized post-processor (a tokenizer.json "post_processor") has this layout
    recognizes: Callable[[Any], bool]


@dataclass(frozen=True)
class TokenizerKind:
    name: str
    model_type: str  # tokenizer.json "model"."type"
    byte_level: bool
    specials: SpecialTokens
    new_model: Callable[[], Any]  # an untrained model for the trainer
    normalizer: Callable[[PipelineOptions], Any]  # None: no normaliser
    pre_tokenizer: Callable[[PipelineOptions], Any]
    decoder: Callable[[], Any]
    trainer: Callable[[TrainerSettings], Any]
    layout: Layout
    starts_word: Callable[[str], bool]  # whether a (non-special) sub-token begins a word
    hf_classes: tuple[str, ...] = ()  # tokenizer_config "tokenizer_class" values meaning this kind
    saved_class: str = "PreTrainedTokenizerFast"  # what save() writes (loads tokenizer.json verbatim)
    writes_vocab_txt: bool = False  # save() adds vocab.txt, for BERT's vocabulary-file loaders
    reference: str = field(default="", compare=False)  # the model whose tokenizer this rebuilds (--help)
    after_training: Callable[[Any], Any] | None = None  # finishes a trained backend (LLaMA: byte pieces)

    def pipeline(self, model: Any, options: PipelineOptions) -> Any:
        """A backend around ``model`` with this kind's normaliser, pre-tokeniser and decoder."""
        backend = tokenizers.Tokenizer(model)
        normalizer = self.normalizer(options)
        if normalizer is not None:
            backend.normalizer = normalizer
        backend.pre_tokenizer = self.pre_tokenizer(options)
        backend.decoder = self.decoder()
        return backend


# -------------------------------------------------------------------- normalisers
def _bert_normalizer(options: PipelineOptions) -> Any:
    return normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=options.split_chinese,
        strip_accents=options.lowercase if options.strip_accents is None else options.strip_accents,
        lowercase=options.lowercase,
    )


def _lowercase_only(options: PipelineOptions) -> Any:
    return normalizers.Lowercase() if options.lowercase else None


def _sentencepiece_normalizer(latex_quotes: bool) -> Callable[[PipelineOptions], Any]:
    def build(options: PipelineOptions) -> Any:
        if latex_quotes:
            # ALBERT's preprocess_text, as transformers' AlbertTokenizer rebuilds it: LaTeX quotes
            # become '"', accents go unless keep_accents (here: strip_accents, by default with
            # lowercase), then the lowercasing and the .model file's own map when there is one
            strip_accents = options.lowercase if options.strip_accents is None else options.strip_accents
            steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
            steps += [normalizers.NFKD(), normalizers.StripAccents()] if strip_accents else []
            steps += [normalizers.Lowercase()] if options.lowercase else []
        elif options.lowercase:
            steps = [normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()]
        else:
            steps = [normalizers.NFKC()]  # SentencePiece's default nmt_nfkc
        if options.precompiled_charsmap:
            steps.append(normalizers.Precompiled(options.precompiled_charsmap))
        # SentencePiece collapses whitespace runs and trims the ends
        steps += [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
        return normalizers.Sequence(steps)

    return build


# -------------------------------------------------------------------- pre-tokenisers and decoders
def _byte_level(options: PipelineOptions) -> Any:
    return pre_tokenizers.ByteLevel(add_prefix_space=options.add_prefix_space, trim_offsets=True)


def _metaspace(options: PipelineOptions) -> Any:
    return pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")


def _llama_metaspace(options: PipelineOptions) -> Any:
    # Training learns word by word (SentencePiece's split_by_whitespace); _llama_after_training
    # then switches to LLaMA's encode-time split=False, which gives a per-word vocabulary the same ids.
    return pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)


_BYTE_PIECES = tuple(f"<0x{byte:02X}>" for byte in range(256))


def _llama_after_training(backend: Any) -> Any:
    """LLaMA's vocabulary order: the specials, the 256 byte pieces (the targets of byte
    fallback, so no character is unknown), then the learned pieces; LLaMA's Metaspace."""
    spec = json.loads(backend.to_str())
    vocab = spec["model"]["vocab"]
    specials = [token["content"] for token in sorted(spec["added_tokens"], key=lambda token: token["id"])]
    learned = [token for token in sorted(vocab, key=vocab.__getitem__) if token not in specials]
    order = [*specials, *(piece for piece in _BYTE_PIECES if piece not in vocab), *learned]
    spec["model"]["vocab"] = {token: index for index, token in enumerate(order)}
    spec["pre_tokenizer"] = json.loads(tokenizers.Tokenizer(models.BPE()).to_str())["pre_tokenizer"]
    rebuilt = tokenizers.Tokenizer.from_str(json.dumps(spec))
    rebuilt.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    return rebuilt


def _llama_decoder() -> Any:
    return decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                              decoders.Strip(content=" ", left=1)])


def _wordpiece_decoder() -> Any:
    return decoders.WordPiece(prefix="##")


def _metaspace_decoder() -> Any:
    return decoders.Metaspace(replacement="▁", prepend_scheme="always")


# -------------------------------------------------------------------- trainers
def _wordpiece_trainer(settings: TrainerSettings) -> Any:
    return trainers.WordPieceTrainer(
        vocab_size=settings.vocab_size, min_frequency=settings.min_frequency, show_progress=settings.show_progress,
        special_tokens=list(settings.special_tokens), limit_alphabet=_LIMIT_ALPHABET, continuing_subword_prefix="##",
    )


def _char_bpe_trainer(settings: TrainerSettings) -> Any:
    return trainers.BpeTrainer(
        vocab_size=settings.vocab_size, min_frequency=settings.min_frequency, show_progress=settings.show_progress,
        special_tokens=list(settings.special_tokens), limit_alphabet=_LIMIT_ALPHABET, continuing_subword_prefix="##",
    )


def _byte_bpe_trainer(settings: TrainerSettings) -> Any:
    # all 256 bytes as the initial alphabet, as GPT-2
    return trainers.BpeTrainer(
        vocab_size=settings.vocab_size, min_frequency=settings.min_frequency, show_progress=settings.show_progress,
        special_tokens=list(settings.special_tokens), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )


def _llama_bpe_trainer(settings: TrainerSettings) -> Any:
    learned = settings.vocab_size - len(_BYTE_PIECES)  # the byte pieces are added after training
    if learned <= len(settings.special_tokens):
        raise UserError(f"vocab size must exceed the {len(settings.special_tokens) + len(_BYTE_PIECES)} special and "
                        f"byte tokens of llama_bpe, got {settings.vocab_size}")
    return trainers.BpeTrainer(
        vocab_size=learned, min_frequency=settings.min_frequency, show_progress=settings.show_progress,
        special_tokens=list(settings.special_tokens), limit_alphabet=_LIMIT_ALPHABET,
    )


def _unigram_trainer(unk_token: str) -> Callable[[TrainerSettings], Any]:
    def build(settings: TrainerSettings) -> Any:
        # SentencePiece's trainer has no minimum frequency
        return trainers.UnigramTrainer(
            vocab_size=settings.vocab_size, show_progress=settings.show_progress,
            special_tokens=list(settings.special_tokens), unk_token=unk_token,
        )

    return build


# -------------------------------------------------------------------- layouts
def _template_starts_with_special(spec: Any) -> bool | None:
    """For a serialized TemplateProcessing: whether the single template opens with a special token."""
    if not isinstance(spec, dict) or spec.get("type") != "TemplateProcessing" or not spec.get("single"):
        return None
    return "SpecialToken" in spec["single"][0]


def _cls_sep_template(pair_segment: int) -> Callable[[Mapping[str, tuple[str, int]], PipelineOptions], Any]:
    def build(roles: Mapping[str, tuple[str, int]], options: PipelineOptions) -> Any:
        cls, sep = roles["cls"][0], roles["sep"][0]
        single = f"{cls}:0 $A:0 {sep}:0"
        # BERT/ALBERT: B and its [SEP] in segment 1; GPT: A </s></s> B </s> in one segment
        pair = f"{single} $B:1 {sep}:1" if pair_segment else f"{single} {sep}:0 $B:0 {sep}:0"
        return processors.TemplateProcessing(single=single, pair=pair, special_tokens=[roles["cls"], roles["sep"]])

    return build


def _opens_with_special(post_processor: Any) -> bool:
    return _template_starts_with_special(post_processor) is True


BERT_LAYOUT = Layout("[CLS] A [SEP] B [SEP]", _cls_sep_template(1), _opens_with_special)
def _template_items(spec: Any) -> list[str] | None:
    """The single template of a serialized TemplateProcessing as "special"/"sequence" items."""
    if not isinstance(spec, dict) or spec.get("type") != "TemplateProcessing" or not spec.get("single"):
        return None
    return ["special" if "SpecialToken" in item else "sequence" for item in spec["single"]]


def _opens_and_closes_with_special(post_processor: Any) -> bool:
    items = _template_items(post_processor)
    return bool(items) and items[0] == items[-1] == "special"


# GPT's template closes with </s>; LLaMA's "<s> A" does not (BOS_LAYOUT).
GPT_LAYOUT = Layout("<s> A </s></s> B </s> (template)", _cls_sep_template(0), _opens_and_closes_with_special)


def _bos_template(roles: Mapping[str, tuple[str, int]], options: PipelineOptions) -> Any:
    bos = roles["bos"][0]  # transformers' update_post_processor with add_bos_token only
    return processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                         special_tokens=[roles["bos"]])


BOS_LAYOUT = Layout("<s> A <s> B", _bos_template, lambda pp: _template_items(pp) == ["special", "sequence"])
ROBERTA_LAYOUT = Layout(
    "<s> A </s></s> B </s>",
    # offsets trimmed of the leading space, all segment ids 0
    lambda roles, options: processors.RobertaProcessing(
        roles["sep"], roles["cls"], trim_offsets=True, add_prefix_space=options.add_prefix_space
    ),
    lambda pp: isinstance(pp, dict) and pp.get("type") == "RobertaProcessing",
)
BARE_LAYOUT = Layout(
    "A (nothing added)",
    lambda roles, options: processors.ByteLevel(trim_offsets=False),  # GPT2Converter: offsets only
    lambda pp: pp is None or (isinstance(pp, dict) and pp.get("type") == "ByteLevel"),
)


def _eos_template(roles: Mapping[str, tuple[str, int]], options: PipelineOptions) -> Any:
    eos = roles["eos"][0]
    return processors.TemplateProcessing(
        single=f"$A:0 {eos}:0", pair=f"$A:0 {eos}:0 $B:0 {eos}:0", special_tokens=[roles["eos"]]
    )


EOS_LAYOUT = Layout("A </s> B </s>", _eos_template, lambda pp: _template_starts_with_special(pp) is False)


# -------------------------------------------------------------------- word-start rules
_BYTE_LEVEL_SPACES = ("Ġ", "Ċ", "ĉ", "č")  # GPT-2 byte-to-unicode images of " ", "\n", "\t", "\r"
# ALBERT create_pretraining_data.py `_is_start_piece`: these pieces, and any piece with a
# character outside a-z and these, start a word.
_ALBERT_SPECIAL_PIECES = frozenset('!"#$%&"()*+,-./:;?@[\\]^_`{|}~') | {"€", "£"}
_ALBERT_WORD_CHARS = frozenset(string.ascii_lowercase) | _ALBERT_SPECIAL_PIECES


def continuation_prefix_rule(token: str) -> bool:
    """google-research/bert create_pretraining_data.py: "##" pieces continue the previous word."""
    return not token.startswith("##")


def byte_level_rule(token: str) -> bool:
    """A byte-level piece starts a word when it carries the encoded space ("Ġ") or is ASCII
    punctuation. Only ASCII counts: the images of UTF-8 continuation bytes include "§", "«",
    "¶", "·", "¿" (Unicode punctuation), and a piece made of them is the middle of a character."""
    return token.startswith(_BYTE_LEVEL_SPACES) or all(c in string.punctuation for c in token)


def sentencepiece_rule(piece: str) -> bool:
    """ALBERT's ``_is_start_piece``: the "▁" word marker, punctuation, or any non a-z character."""
    return (
        piece.startswith(("▁", "<"))
        or piece in _ALBERT_SPECIAL_PIECES
        or not all(c.lower() in _ALBERT_WORD_CHARS for c in piece)
    )


# -------------------------------------------------------------------- the table
_BRACKETS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
# RoBERTa's dictionary order, <mask> moved up from last; GPT and RoBERTa name <s>/</s> bos/eos too
_ROBERTA = SpecialTokens(
    leading=("<s>", "<pad>", "</s>", "<unk>", "<mask>"),
    roles={"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>", "bos": "<s>", "eos": "</s>"},
)

KINDS: Mapping[str, TokenizerKind] = {
    kind.name: kind
    for kind in (
        TokenizerKind(
            name="wordpiece",
            model_type="WordPiece",
            byte_level=False,
            specials=SpecialTokens(leading=tuple(_BRACKETS.values()), roles=_BRACKETS),  # bert vocab files
            new_model=lambda: models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD),
            normalizer=_bert_normalizer,
            pre_tokenizer=lambda options: pre_tokenizers.BertPreTokenizer(),
            decoder=_wordpiece_decoder,
            trainer=_wordpiece_trainer,
            layout=BERT_LAYOUT,
            starts_word=continuation_prefix_rule,
            hf_classes=("BertTokenizer", "BertTokenizerFast", "DistilBertTokenizer", "DistilBertTokenizerFast"),
            # transformers 5's BertTokenizer rebuilds the BERT pipeline from the config options
            saved_class="BertTokenizer",
            writes_vocab_txt=True,
            reference="BERT",
        ),
        TokenizerKind(
            name="bpe",
            model_type="BPE",
            byte_level=False,
            specials=_ROBERTA,
            new_model=lambda: models.BPE(unk_token="<unk>", continuing_subword_prefix="##"),
            normalizer=_bert_normalizer,
            pre_tokenizer=lambda options: pre_tokenizers.Whitespace(),
            decoder=_wordpiece_decoder,
            trainer=_char_bpe_trainer,
            layout=GPT_LAYOUT,
            starts_word=continuation_prefix_rule,
            hf_classes=("OpenAIGPTTokenizer", "OpenAIGPTTokenizerFast"),
            reference="GPT",
        ),
        TokenizerKind(
            name="byte_bpe",
            model_type="BPE",
            byte_level=True,
            specials=_ROBERTA,
            new_model=models.BPE,  # every byte is in the alphabet, so no unknown token is needed
            normalizer=_lowercase_only,
            pre_tokenizer=_byte_level,
            decoder=decoders.ByteLevel,
            trainer=_byte_bpe_trainer,
            layout=ROBERTA_LAYOUT,
            starts_word=byte_level_rule,
            hf_classes=("RobertaTokenizer", "RobertaTokenizerFast", "BartTokenizer", "BartTokenizerFast"),
            reference="RoBERTa",
        ),
        TokenizerKind(
            name="gpt2_byte_bpe",
            model_type="BPE",
            byte_level=True,
            specials=SpecialTokens(
                leading=("<|endoftext|>",),
                roles={"unk": "<|endoftext|>", "bos": "<|endoftext|>", "eos": "<|endoftext|>"},
            ),
            new_model=models.BPE,
            normalizer=_lowercase_only,
            pre_tokenizer=_byte_level,
            decoder=decoders.ByteLevel,
            trainer=_byte_bpe_trainer,
            layout=BARE_LAYOUT,
            starts_word=byte_level_rule,
            hf_classes=("GPT2Tokenizer", "GPT2TokenizerFast"),
            reference="GPT-2",
        ),
        TokenizerKind(
            name="llama_bpe",
            model_type="BPE",
            byte_level=False,
            specials=SpecialTokens(
                leading=("<unk>", "<s>", "</s>"), roles={"unk": "<unk>", "bos": "<s>", "eos": "</s>"}
            ),
            new_model=lambda: models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True),
            normalizer=_lowercase_only,
            pre_tokenizer=_llama_metaspace,
            decoder=_llama_decoder,
            trainer=_llama_bpe_trainer,
            layout=BOS_LAYOUT,
            starts_word=sentencepiece_rule,
            hf_classes=("LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast"),
            reference="LLaMA",
            after_training=_llama_after_training,
        ),
        TokenizerKind(
            name="unigram",
            model_type="Unigram",
            byte_level=False,
            # ALBERT's spiece vocabulary
            specials=SpecialTokens(
                leading=("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"),
                roles={**_BRACKETS, "pad": "<pad>", "unk": "<unk>"},
            ),
            new_model=models.Unigram,
            normalizer=_sentencepiece_normalizer(latex_quotes=True),
            pre_tokenizer=_metaspace,
            decoder=_metaspace_decoder,
            trainer=_unigram_trainer("<unk>"),
            layout=BERT_LAYOUT,
            starts_word=sentencepiece_rule,
            hf_classes=("AlbertTokenizer", "AlbertTokenizerFast"),
            reference="ALBERT",
        ),
        TokenizerKind(
            name="t5_unigram",
            model_type="Unigram",
            byte_level=False,
            specials=SpecialTokens(
                leading=("<pad>", "</s>", "<unk>"),
                roles={"pad": "<pad>", "eos": "</s>", "unk": "<unk>"},
                sentinels=SentinelRange("<extra_id_{}>", 100),
            ),
            new_model=models.Unigram,
            normalizer=_sentencepiece_normalizer(latex_quotes=False),
            pre_tokenizer=_metaspace,
            decoder=_metaspace_decoder,
            trainer=_unigram_trainer("<unk>"),
            layout=EOS_LAYOUT,
            starts_word=sentencepiece_rule,
            hf_classes=("T5Tokenizer", "T5TokenizerFast"),
            reference="T5",
        ),
    )
}


def get_kind(name: str) -> TokenizerKind:
    if name not in KINDS:
        raise UserError(f"unknown tokenizer kind {name!r}; choose one of {', '.join(KINDS)}")
    return KINDS[name]


def detect_kind(spec: Mapping[str, Any], tokenizer_class: str | None, where: object) -> TokenizerKind:
    """The kind of a serialized tokenizer (tokenizer.json): by model type and byte-level
    pre-tokenisation, then by the class tokenizer_config.json names, then by layout; a layout no
    kind recognizes falls back to the first kind of that model, as before kinds had layouts."""
    model_type = (spec.get("model") or {}).get("type")
    byte_level = '"ByteLevel"' in json.dumps(spec.get("pre_tokenizer"))
    candidates = [k for k in KINDS.values() if k.model_type == model_type and k.byte_level == byte_level]
    if not candidates:
        raise UserError(f"{where}: unsupported tokenizer model {model_type!r} (need WordPiece, BPE or Unigram)")
    for kind in candidates:
        if tokenizer_class and tokenizer_class in kind.hf_classes:
            return kind
    post_processor = spec.get("post_processor")
    return next((k for k in candidates if k.layout.recognizes(post_processor)), candidates[0])
