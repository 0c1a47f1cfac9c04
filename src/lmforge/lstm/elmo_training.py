"""ELMo biLM pretraining (``objective.kind: bilm``), as bilm-tf trains it (Peters et al. 2018):
the prepared sentences, each framed as ``<S> tokens </S>``, are concatenated into one stream
and cut into fixed blocks; both LMs read the block with their states crossing sentence joins
(bilm-tf carries states across its 20-step windows; here a block starts from zero states). The
loss is the mean of the forward LM's next-token and the backward LM's previous-token
cross-entropies (bilm-tf: ``0.5 * (forward + backward)``), over one shared softmax: full, or
sampled (``model.config.sampled_softmax`` candidates, ``lmforge.lstm.sampled_softmax``) in
training with a large vocabulary. Predictions stay inside a sentence: the forward LM is not
asked for the next sentence's ``<S>`` after ``</S>``, nor the backward LM for the previous
``</S>``. Held-out perplexity is always computed with the full softmax:
``exp(mean of both directions' losses)``, bilm-tf's reported number, with each direction's too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.lstm.elmo import (
    ElmoBiLM,
    boundary_ids,
    get_elmo_preset,
    load_elmo,
    save_elmo,
    vocabulary_char_ids,
)
from lmforge.lstm.sampled_softmax import sampled_softmax_loss
from lmforge.objectives.base import Objective, collate


class BiLMDataset(torch.utils.data.Dataset):
    """Blocks of ``block_length`` ids of the stream ``<S> s0 </S> <S> s1 </S> ...`` of one split;
    the incomplete tail is dropped. Example ``index`` is the same block in every epoch."""

    def __init__(self, data_dir: str | os.PathLike, split: str, *, block_length: int, bos_id: int,
                 eos_id: int) -> None:
        from lmforge.data.shards import TokenShards
        from lmforge.objectives.dataset import _split_dir

        split_dir = _split_dir(Path(data_dir), split)
        self.shards = TokenShards(split_dir)
        self.block_length, self.bos_id, self.eos_id = block_length, bos_id, eos_id
        offsets = np.asarray(self.shards.sentence_offsets, dtype=np.int64)
        # stream position of sentence s's <S>: its token offset plus two markers per earlier sentence
        self.sentence_starts = offsets[:-1] + 2 * np.arange(len(offsets) - 1, dtype=np.int64)
        stream_length = self.shards.num_tokens + 2 * self.shards.num_sentences
        self.num_blocks = stream_length // block_length
        if self.num_blocks == 0:
            raise UserError(f"{split_dir} holds {stream_length} tokens (sentence markers included), "
                            f"fewer than one block of {block_length}")

    def __len__(self) -> int:
        return self.num_blocks

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < self.num_blocks:
            raise IndexError(index)
        start = index * self.block_length
        stop = start + self.block_length
        first = int(np.searchsorted(self.sentence_starts, start, side="right")) - 1
        sentence, pieces, position = first, [], int(self.sentence_starts[first])
        while position < stop:
            framed = np.concatenate(([self.bos_id], self.shards.sentence(sentence).astype(np.int64), [self.eos_id]))
            pieces.append(framed)
            position += len(framed)
            sentence += 1
        stream = np.concatenate(pieces)
        offset = start - int(self.sentence_starts[first])
        return {"input_ids": stream[offset:offset + self.block_length]}


class BiLMObjective(Objective):
    """Both directions' LM losses over one term (``bilm``), each prediction counted once."""

    def __init__(self, pad_id: int, bos_id: int, eos_id: int) -> None:
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

    def collate(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate(examples, self.pad_id)

    def _chosen(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Which outputs predict: forward at t (target t + 1), backward at t + 1 (target t)."""
        ids, mask = batch["input_ids"], batch["attention_mask"].bool()
        both = mask[:, :-1] & mask[:, 1:]
        return both & (ids[:, :-1] != self.eos_id), both & (ids[:, 1:] != self.bos_id)

    def counts(self, batch: dict) -> dict[str, int]:
        forward, backward = self._chosen(batch)
        return {"bilm": int(forward.sum() + backward.sum())}

    def _hidden(self, model, batch: dict):
        core = getattr(model, "module", model)
        if core.softmax is None:
            raise UserError("this ELMo has no softmax (vocab_size 0): it cannot be trained as a language model")
        ids = batch["input_ids"]
        output = model(ids, batch["attention_mask"])
        forward, backward = self._chosen(batch)
        forward_hidden = core.dropout(output.forward_layers[-1])[:, :-1][forward]
        backward_hidden = core.dropout(output.backward_layers[-1])[:, 1:][backward]
        return core, (forward_hidden, ids[:, 1:][forward]), (backward_hidden, ids[:, :-1][backward])

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        core, forward, backward = self._hidden(model, batch)
        hidden = torch.cat([forward[0], backward[0]])
        targets = torch.cat([forward[1], backward[1]])
        samples = core.config.sampled_softmax
        if core.training and 0 < samples < core.config.vocab_size:
            losses = sampled_softmax_loss(hidden, targets, core.softmax.weight, core.softmax.bias, samples)
            return {"bilm": losses.sum()}
        return {"bilm": F.cross_entropy(core.softmax(hidden).float(), targets, reduction="sum")}

    def eval_sums(self, model, batch: dict, unpad: bool) -> dict[str, tuple[float, float]]:
        core, forward, backward = self._hidden(model, batch)
        sums = {}
        for name, (hidden, targets) in (("forward", forward), ("backward", backward)):
            sums[f"{name}_loss"] = (float(F.cross_entropy(core.softmax(hidden).float(), targets, reduction="sum")),
                                    targets.numel())
        sums["lm_loss"] = (sums["forward_loss"][0] + sums["backward_loss"][0],
                           sums["forward_loss"][1] + sums["backward_loss"][1])
        return sums

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        derived = {}
        for name in ("lm", "forward", "backward"):
            key = f"eval_{name}_loss"
            if key in metrics:
                label = "eval_perplexity" if name == "lm" else f"eval_{name}_perplexity"
                derived[label] = math.exp(min(metrics[key], 700.0))
        return derived


def build_pretraining_model(recipe, tokenizer) -> ElmoBiLM:
    """A random biLM of the recipe's preset on this tokenizer's vocabulary."""
    bos, eos = boundary_ids(tokenizer)
    config = get_elmo_preset(recipe.model.preset).replace(**recipe.model.config)
    config = config.replace(vocab_size=tokenizer.vocab_size, bos_id=bos, eos_id=eos, pad_id=tokenizer.pad_id or 0)
    torch.manual_seed(recipe.train.seed)
    model = ElmoBiLM(config)
    if config.token_encoder == "char_cnn":
        model.vocab_char_ids.copy_(vocabulary_char_ids(tokenizer, config.max_characters_per_token))
    return model


def run_bilm_pretraining(recipe, out: Path, ctx, data_dir: Path, tokenizer, resume: bool = False) -> dict[str, Any]:
    """``lmforge.pretraining.run_pretraining`` for ``objective.kind: bilm``, on the run it opened
    (``open_run``: output directory, processes, prepared data, tokenizer): writes metrics.jsonl,
    checkpoints/, model/ (an LSTM checkpoint, ``lmforge.lstm.checkpoint``), curves.png, summary.json."""
    from lmforge.training import distributed
    from lmforge.training.loop import Trainer
    from lmforge.training.report import plot_curves, summarize

    bos, eos = boundary_ids(tokenizer)
    args = dict(block_length=recipe.objective.max_seq_length, bos_id=bos, eos_id=eos)
    train_data, eval_data = BiLMDataset(data_dir, "train", **args), BiLMDataset(data_dir, "heldout", **args)
    objective = BiLMObjective(tokenizer.pad_id or 0, bos, eos)
    if recipe.model.init_from:
        model = load_elmo(recipe.model.init_from)
        if model.config.vocab_size != tokenizer.vocab_size:
            raise UserError(f"model.init_from has a vocabulary of {model.config.vocab_size}, "
                            f"the data's tokenizer {tokenizer.vocab_size}")
    else:
        model = build_pretraining_model(recipe, tokenizer)
    if ctx.is_main:
        params = sum(p.numel() for p in model.parameters())
        print(f"model {recipe.model.preset}: {params:,} parameters; {len(train_data):,} training blocks "
              f"of {recipe.objective.max_seq_length} tokens; {ctx.world_size} process(es) on {ctx.device}")
    trainer = Trainer(model, objective, train_data, recipe.train, out, ctx, eval_data=eval_data)
    result = trainer.fit(resume=resume)
    if ctx.is_main:
        save_elmo(model, out / "model", tokenizer)
        plot_curves(out / "metrics.jsonl", out / "curves.png", title=f"{recipe.model.preset} biLM pretraining")
        result["summary"] = summarize(out / "metrics.jsonl", out / "summary.json", seconds=result["seconds"])
    distributed.teardown()
    return result
