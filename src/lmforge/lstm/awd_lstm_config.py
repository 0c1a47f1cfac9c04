"""AWD-LSTM settings and presets, without torch (so ``lmforge presets`` answers at once).

The sizes and dropouts follow fastai's ``awd_lstm_lm_config`` / ``awd_lstm_clas_config``
(fastai/text/models/awdlstm.py), the configuration ULMFiT (Howard & Ruder 2018) was published
with: 3 layers, embedding 400, hidden 1152, the last layer's output as wide as the embedding so
the decoder can be tied to it (Merity et al. 2017, "Regularizing and Optimizing LSTM Language
Models", section 4.5; Press & Wolf 2017). AR alpha=2 and TAR beta=1 are fastai's
``language_model_learner`` defaults (Merity et al. section 4.6).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from lmforge.errors import UserError

# fastai awd_lstm_clas_config: the classifier runs with heavier dropout than the language model.
CLASSIFIER_DROPOUTS = {"input_dropout": 0.4, "hidden_dropout": 0.3, "embedding_dropout": 0.05,
                       "weight_dropout": 0.5, "output_dropout": 0.4}


@dataclass(frozen=True)
class AWDLSTMConfig:
    vocab_size: int = 60000  # ULMFiT's WikiText-103 vocabulary cap (fastai max_vocab)
    embedding_size: int = 400
    hidden_size: int = 1152
    num_layers: int = 3
    pad_id: int = 1
    input_dropout: float = 0.25  # locked dropout on the embedded input
    hidden_dropout: float = 0.15  # locked dropout between LSTM layers
    embedding_dropout: float = 0.02  # whole words of the embedding matrix
    weight_dropout: float = 0.2  # DropConnect on the hidden-to-hidden matrices
    output_dropout: float = 0.1  # locked dropout on the last layer's output (before decoder/head)
    ar_alpha: float = 2.0  # activation regularisation (AR)
    tar_beta: float = 1.0  # temporal activation regularisation (TAR)
    classifier_hidden: int = 50  # ULMFiT's hidden linear block (fastai lin_ftrs=[50])
    classifier_dropout: float = 0.1  # dropout of the second linear block (fastai ps=[0.1])
    labels: tuple[str, ...] = ()  # class names of a classifier, in id order

    def __post_init__(self) -> None:
        if min(self.vocab_size, self.embedding_size, self.hidden_size, self.num_layers, self.classifier_hidden) < 1:
            raise UserError("AWD-LSTM sizes must be at least 1")
        for name in ("input_dropout", "hidden_dropout", "embedding_dropout", "weight_dropout",
                     "output_dropout", "classifier_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def layer_sizes(self) -> list[tuple[int, int]]:
        """(input, output) width of each LSTM layer; the last one returns to the embedding width."""
        return [(self.embedding_size if layer == 0 else self.hidden_size,
                 self.embedding_size if layer == self.num_layers - 1 else self.hidden_size)
                for layer in range(self.num_layers)]

    def for_classifier(self, labels: tuple[str, ...]) -> AWDLSTMConfig:
        """The classifier's config: the same sizes with fastai's classifier dropouts."""
        return replace(self, labels=tuple(labels), **CLASSIFIER_DROPOUTS)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["labels"] = list(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> AWDLSTMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown AWD-LSTM config keys: {', '.join(unknown)}")
        return cls(**{**data, "labels": tuple(data.get("labels", ()))})


PRESETS: dict[str, AWDLSTMConfig] = {
    "awd-lstm": AWDLSTMConfig(),
    # Same shape scaled down for tests and the CPU recipe; fastai's dropouts kept.
    "awd-lstm-tiny": AWDLSTMConfig(vocab_size=2000, embedding_size=64, hidden_size=128),
}


def preset(name: str, **changes) -> AWDLSTMConfig:
    if name not in PRESETS:
        raise UserError(f"unknown AWD-LSTM preset {name!r}; known: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **changes)


def language_model_parameters(config: AWDLSTMConfig) -> int:
    """Parameters of the language model: embedding, LSTMs (two bias vectors each, as torch and
    fastai keep them), the tied decoder's bias."""
    lstm = sum(4 * out * (inp + out) + 8 * out for inp, out in config.layer_sizes())
    return config.vocab_size * config.embedding_size + lstm + config.vocab_size
