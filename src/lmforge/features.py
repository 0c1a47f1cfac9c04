"""Contextual feature extraction with a frozen encoder (BERT paper §5.3, "Feature-based
Approach with BERT", Table 7; ELMo-style use of pretrained representations).

The six layer strategies the paper compares on CoNLL-2003 NER:

=====================  ==============================================================
strategy               vector per token
=====================  ==============================================================
``embeddings``         output of the embedding layer
``second_to_last``     second-to-last hidden layer
``last``               last hidden layer
``sum_last_four``      (weighted) sum of the last four hidden layers
``concat_last_four``   concatenation of the last four hidden layers (best: 96.1 F1)
``sum_all``            (weighted) sum of all transformer layers
=====================  ==============================================================

Then either pooled per sentence (``cls``: the first token; ``mean``: average over
non-padding tokens, as sentence-transformers' mean pooling) or kept per token with a map
from each word of the input to its sub-token vectors. Texts are encoded in batches sorted
by length, so little compute goes to padding, and written back in input order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lmforge.errors import UserError

STRATEGIES = ("embeddings", "second_to_last", "last", "sum_last_four", "concat_last_four", "sum_all")
POOLINGS = ("cls", "mean", "none")


def combine_layers(hidden_states: list[torch.Tensor], strategy: str, weights: list[float] | None = None) -> torch.Tensor:
    """One representation from [embeddings, layer 1, ..., layer L] (each (..., H))."""
    layers = hidden_states[1:]
    if strategy == "embeddings":
        return hidden_states[0]
    if strategy == "last":
        return layers[-1]
    if strategy == "second_to_last":
        if len(layers) < 2:
            raise UserError("second_to_last needs a model with at least 2 layers")
        return layers[-2]
    if strategy in ("sum_last_four", "concat_last_four"):
        if len(layers) < 4:
            raise UserError(f"{strategy} needs a model with at least 4 layers (this one has {len(layers)})")
        chosen = layers[-4:]
    elif strategy == "sum_all":
        chosen = layers
    else:
        raise UserError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if strategy == "concat_last_four":
        return torch.cat(chosen, dim=-1)
    weights = weights or [1.0] * len(chosen)
    if len(weights) != len(chosen):
        raise UserError(f"{strategy} takes {len(chosen)} layer weights, got {len(weights)}")
    return sum(w * h for w, h in zip(weights, chosen))


@dataclass
class Features:
    """Pooled: ``vectors`` (n, D). Per token: ``vectors`` (total tokens, D) with sequence
    ``offsets`` (n+1) and ``word_ids`` (total tokens; -1 for special tokens)."""

    vectors: np.ndarray
    offsets: np.ndarray | None = None
    word_ids: np.ndarray | None = None

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write ``.npy`` (pooled) or ``.safetensors``: into a temporary file beside ``path``,
        flushed and renamed over it, so an existing file is replaced only by a complete one
        (and only with ``overwrite``)."""
        from lmforge.files import fsync_dir

        path = Path(path)
        if path.suffix not in (".npy", ".safetensors"):
            raise UserError(f"output must end in .npy or .safetensors, got {path.name}")
        if path.suffix == ".npy" and self.offsets is not None:
            raise UserError("per-token features need a .safetensors output (vectors, offsets, word_ids)")
        if path.exists() and not overwrite:
            raise UserError(f"{path} already exists; choose another name or pass --overwrite to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            if path.suffix == ".npy":
                with open(temporary, "wb") as handle:  # a handle: np.save would append .npy to the name
                    np.save(handle, self.vectors)
            else:
                from safetensors.numpy import save_file

                arrays = {"vectors": self.vectors}
                if self.offsets is not None:
                    arrays.update(offsets=self.offsets, word_ids=self.word_ids)
                save_file(arrays, str(temporary))
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        fsync_dir(path.parent)
        return path


@torch.inference_mode()
def extract_features(model, tokenizer, texts: list[str], *, strategy: str = "last", pooling: str = "mean",
                     batch_size: int = 64, max_length: int = 512, layer_weights: list[float] | None = None,
                     show_progress: bool = False) -> Features:
    """Features for ``texts`` in input order; see the module docstring for the options."""
    if pooling not in POOLINGS:
        raise UserError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
    backbone = getattr(model, "backbone", model).eval()
    device = next(backbone.parameters()).device
    lengths = [len(ids) for ids in tokenizer.encode_plain(texts)]
    order = np.argsort(lengths, kind="stable")[::-1]  # longest first: memory peak shows at once
    pooled: list[np.ndarray | None] = [None] * len(texts)
    per_token: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(texts)
    batches = range(0, len(texts), batch_size)
    from lmforge.progress import progress_enabled

    if show_progress and progress_enabled():
        from tqdm import tqdm

        batches = tqdm(batches, unit="batch", desc="features")
    need_all = strategy != "last"
    for start in batches:
        index = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in index], max_length=max_length, padding="longest")
        mask = batch["attention_mask"].to(device)
        out = backbone(batch["input_ids"].to(device), mask, batch["token_type_ids"].to(device),
                       output_hidden_states=need_all)
        hidden = combine_layers(out.hidden_states, strategy, layer_weights) if need_all else out.last_hidden_state
        hidden = hidden.float()
        if pooling == "cls":
            vectors = hidden[:, 0]
        elif pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            vectors = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        for row, i in enumerate(index):
            if pooling == "none":
                n = int(mask[row].sum())
                words = np.array([-1 if w is None else w for w in batch["word_ids"][row][:n]], dtype=np.int64)
                per_token[i] = (hidden[row, :n].cpu().numpy(), words)
            else:
                pooled[i] = vectors[row].cpu().numpy()
    if pooling != "none":
        return Features(np.stack(pooled) if pooled else np.zeros((0, 0), np.float32))
    offsets = np.cumsum([0] + [len(words) for _, words in per_token]).astype(np.int64)
    return Features(np.concatenate([v for v, _ in per_token]), offsets, np.concatenate([w for _, w in per_token]))
