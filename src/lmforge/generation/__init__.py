"""Text generation (greedy, beam search, sampling) and sliding-window perplexity, following
transformers' ``generate`` and its "Perplexity of fixed-length models" guide; see the modules:
settings, processors, stopping, steps (the model side), search, generate, perplexity."""

from lmforge.generation.generate import Generated, generate, generate_ids
from lmforge.generation.settings import GenerationSettings

__all__ = ["Generated", "GenerationSettings", "generate", "generate_ids"]
