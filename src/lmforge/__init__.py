"""lmforge: pretrain and fine-tune the BERT family of language models, exact to the
reference implementations and fast."""

from lmforge.config import ModelConfig
from lmforge.errors import UserError

__all__ = ["build", "generate", "load", "load_model", "load_tokenizer", "perplexity", "save", "ModelConfig",
           "UserError"]
__version__ = "0.1.0"

_API = {"build", "load", "load_model", "load_tokenizer", "save"}
_GENERATION = {"generate", "perplexity"}


def __getattr__(name: str):
    # The API imports torch (seconds); importing it on first use keeps `lmforge --help`,
    # `lmforge presets` and argument errors fast (PEP 562 module __getattr__).
    if name in _API:
        from lmforge import api

        return getattr(api, name)
    if name in _GENERATION:
        from lmforge.generation import generate, perplexity

        return {"generate": generate, "perplexity": perplexity}[name]
    raise AttributeError(f"module 'lmforge' has no attribute {name!r}")
