"""ELMo's configuration and presets, without torch (`lmforge presets` answers without it);
the model is ``lmforge.lstm.elmo``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from lmforge.errors import UserError

# AllenNLP's ELMoCharacterMapper: bytes 0-255 and five markers, every id shifted by one so 0 pads.
MAX_CHARS = 50
BOS_CHAR, EOS_CHAR, BOW_CHAR, EOW_CHAR, PAD_CHAR = 256, 257, 258, 259, 260
N_CHARACTERS = 262

ORIGINAL_FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]


@dataclass(frozen=True)
class ElmoConfig:
    token_encoder: str = "char_cnn"  # char_cnn | word
    char_embedding_dim: int = 16
    filters: list = field(default_factory=lambda: [list(f) for f in ORIGINAL_FILTERS])
    n_highway: int = 2
    activation: str = "relu"  # relu | tanh (AllenNLP reads both from options.json)
    n_characters: int = N_CHARACTERS
    max_characters_per_token: int = MAX_CHARS
    n_layers: int = 2
    cell_size: int = 4096
    projection_dim: int = 512
    cell_clip: float | None = 3.0
    proj_clip: float | None = 3.0
    use_skip_connections: bool = True
    vocab_size: int = 0  # the softmax vocabulary (and word embedding); 0: no softmax (features only)
    sampled_softmax: int = 0  # candidates per batch in training; 0: full softmax
    dropout: float = 0.1
    bos_id: int = -1  # the vocabulary's <S> / </S> tokens (the tokenizer's cls/bos and sep/eos)
    eos_id: int = -1
    pad_id: int = 0
    family: str = "elmo"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ElmoConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown ELMo config field(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> ElmoConfig:
        try:
            return replace(self, **changes)
        except TypeError as error:
            raise UserError(f"ELMo config: {error}") from None

    @property
    def n_filters(self) -> int:
        return sum(n for _, n in self.filters)


PRESETS = {
    # allennlp elmo_2x4096_512_2048cnn_2xhighway_options.json: 93.6M parameters without the softmax
    "elmo-original": ElmoConfig(),
    # allennlp elmo_2x1024_128_2048cnn_1xhighway_options.json ("small"): 13.6M
    "elmo-small": ElmoConfig(cell_size=1024, projection_dim=128, n_highway=1),
    # for tests and the bundled recipe
    "elmo-tiny": ElmoConfig(filters=[[1, 16], [2, 16], [3, 32], [4, 64]], n_highway=1, cell_size=256,
                            projection_dim=64),
}


def get_elmo_preset(name: str) -> ElmoConfig:
    if name not in PRESETS:
        raise UserError(f"unknown ELMo preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def parameter_count(config: ElmoConfig) -> int:
    """Parameters of ``ElmoBiLM(config)``, counted from the config alone (the softmax only with
    a vocab_size); tests/lstm/test_elmo_model.py checks it against the built model."""
    p, c = config.projection_dim, config.cell_size
    if config.token_encoder == "char_cnn":
        d, width = config.char_embedding_dim, config.n_filters
        tokens = (config.n_characters * d + sum(w * d * n + n for w, n in config.filters)
                  + config.n_highway * (2 * width * width + 2 * width) + width * p + p)
    else:
        tokens = config.vocab_size * p
    lstm = 2 * config.n_layers * (p * 4 * c + p * 4 * c + 4 * c + c * p)
    softmax = config.vocab_size * p + config.vocab_size if config.vocab_size else 0
    return tokens + lstm + softmax


def preset_rows() -> list[tuple]:
    """`lmforge presets` rows: (preset, family, layers, hidden, heads, parameters, note)."""
    return [(name, "elmo", c.n_layers, c.projection_dim, "-", f"{parameter_count(c):,}",
             f"biLM, cell {c.cell_size}, no softmax") for name, c in PRESETS.items()]
