"""The one training loop shared by pretraining and fine-tuning, with its pieces."""
