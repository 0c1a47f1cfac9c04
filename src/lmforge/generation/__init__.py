"""Text generation (greedy, beam search, sampling) and sliding-window perplexity, following
transformers' ``generate`` and its "Perplexity of fixed-length models" guide; see the modules:
settings, processors, stopping, steps (the model side), search, api (generate), sliding_perplexity."""

from lmforge.generation.api import Generated, generate, generate_ids
from lmforge.generation.settings import GenerationSettings
from lmforge.generation.sliding_perplexity import PerplexityResult, perplexity

__all__ = ["Generated", "GenerationSettings", "PerplexityResult", "generate", "generate_ids", "perplexity"]
