"""Moving models to and from other ecosystems (Hugging Face checkpoints)."""
