"""lmforge: pretrain and fine-tune the BERT family of language models, exact to the
reference implementations and fast."""

from lmforge.api import build, load, load_model, load_tokenizer, save
from lmforge.config import ModelConfig
from lmforge.errors import UserError

__all__ = ["build", "load", "load_model", "load_tokenizer", "save", "ModelConfig", "UserError"]
__version__ = "0.1.0"
