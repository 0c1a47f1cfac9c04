"""lmforge: pretrain and fine-tune the BERT family of language models, exact to the
reference implementations and fast."""

from lmforge.config import ModelConfig
from lmforge.errors import UserError

__all__ = ["build", "load", "load_model", "load_tokenizer", "save", "ModelConfig", "UserError"]
__version__ = "0.1.0"

_API = {"build", "load", "load_model", "load_tokenizer", "save"}


def __getattr__(name: str):
    # The API imports torch (seconds); importing it on first use keeps `lmforge --help`,
    # `lmforge presets` and argument errors fast (PEP 562 module __getattr__).
    if name in _API:
        from lmforge import api

        return getattr(api, name)
    raise AttributeError(f"module 'lmforge' has no attribute {name!r}")
