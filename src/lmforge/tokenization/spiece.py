"""Reading a SentencePiece ``spiece.model`` (ALBERT's vocabulary file) without the
``sentencepiece`` or ``protobuf`` packages, and the HF ``tokenizers`` pipeline around it.

The file is a serialized ``ModelProto`` (google/sentencepiece ``sentencepiece_model.proto``);
only the fields a tokenizer needs are read: ``pieces`` (1: piece 1, score 2, type 3) and
``normalizer_spec`` (3: precompiled_charsmap 2). The pipeline is the one transformers builds
for ``AlbertTokenizer`` from such a file (its ``AlbertConverter``/``AlbertTokenizer``): the
unigram model with the file's scores, ALBERT's normaliser followed by the file's precompiled
character map (SentencePiece's ``nmt_nfkc``), unknown pieces at the file's ``<unk>``, control
pieces ([CLS], [SEP], [MASK], <pad>) as special tokens and user-defined pieces (ALBERT: ``(``,
``)``, ``"``, ``-``, ``.``, ``–``, ``£``, ``€``) as tokens that are always kept whole.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import UserError

# sentencepiece_model.proto SentencePiece.Type
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class SentencePieceModel:
    pieces: list[tuple[str, float, int]]  # (piece, score, type) in id order
    precompiled_charsmap: bytes

    @property
    def unk_id(self) -> int:
        return next((i for i, (_, _, kind) in enumerate(self.pieces) if kind == UNKNOWN), 0)


def read_spiece(path: str | Path) -> SentencePieceModel:
    """The pieces and the normaliser's character map of a ``.model`` file."""
    data = Path(path).read_bytes()
    pieces: list[tuple[str, float, int]] = []
    charsmap = b""
    try:
        for field, value in _fields(data):
            if field == 1:
                pieces.append(_piece(value))
            elif field == 3:
                charsmap = next((v for f, v in _fields(value) if f == 2), b"")
    except (IndexError, ValueError, UnicodeDecodeError, struct.error) as error:
        raise UserError(f"cannot read {path}: not a SentencePiece model ({error})") from error
    if not pieces:
        raise UserError(f"cannot read {path}: no pieces (not a SentencePiece model)")
    return SentencePieceModel(pieces, bytes(charsmap))


def _piece(message: bytes) -> tuple[str, float, int]:
    piece, score, kind = "", 0.0, NORMAL
    for field, value in _fields(message):
        if field == 1:
            piece = bytes(value).decode("utf-8")
        elif field == 2:
            score = value
        elif field == 3:
            kind = value
    return piece, score, kind


def _fields(data: bytes):
    """(field number, value) of a protobuf message: varints as int, fixed32 as float, length-
    delimited as bytes (the wire types a ModelProto uses)."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 5:
            (value,) = struct.unpack_from("<f", data, position)
            position += 4
        elif wire == 1:
            (value,) = struct.unpack_from("<d", data, position)
            position += 8
        elif wire == 2:
            length, position = _varint(data, position)
            value = data[position : position + length]
            if len(value) != length:
                raise ValueError("truncated message")
            position += length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield field, value


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
