"""Parity checks shared by the encoder families (RoBERTa, ALBERT): every task model against its
transformers class, each sequence's reference computed alone with no padding, ours on the same
sequences right-padded, left-padded and unpadded; strict HF round trips; preset sizes.

``check_task`` returns the largest difference seen, so the tests can report the figures."""

from __future__ import annotations

import torch
import transformers
from parity_helpers import assert_close, padded, real_rows, sequences

import lmforge
from lmforge.families import get_family, get_preset
from lmforge.interop.hf import load_hf, save_hf

LABELLED = dict(num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})


def _reference_outputs(reference, task: str, seq: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reference's outputs for one unpadded sequence, by name (per token: (T, ...))."""
    out = reference(input_ids=seq[None], output_hidden_states=task == "backbone")
    if task == "backbone":
        return {"hidden": out.last_hidden_state[0], "pooled": out.pooler_output[0],
                "all_hidden": torch.stack([h[0] for h in out.hidden_states], dim=1)}
    if task == "pretraining":
        pair = out.sop_logits if hasattr(out, "sop_logits") else out.seq_relationship_logits
        return {"mlm": out.prediction_logits[0], "pair": pair[0]}
    if task == "masked_lm":
        return {"mlm": out.logits[0]}
    if task == "sequence_classification":
        return {"logits": out.logits[0]}
    if task == "token_classification":
        return {"tokens": out.logits[0]}
    return {"start": out.start_logits[0], "end": out.end_logits[0]}


def _our_outputs(model, task: str, ids, mask, unpad: bool) -> dict[str, torch.Tensor]:
    """Ours for a batch: per-token outputs padded (B, T, ...), per-sequence ones (B, ...)."""
    if task == "backbone":
        out = model(ids, mask, output_hidden_states=True, unpad=unpad)
        return {"hidden": out.padded(), "pooled": out.pooled,
                "all_hidden": torch.stack([out.padded(h) for h in out.hidden_states], dim=2)}
    if task in ("pretraining", "masked_lm"):
        out = model(ids, mask, unpad=unpad)
        mlm = out.encoder.padded(out.mlm_logits)
        return {"mlm": mlm} if out.pair_logits is None else {"mlm": mlm, "pair": out.pair_logits}
    if task == "sequence_classification":
        return {"logits": model(ids, mask, unpad=unpad)}
    if task == "token_classification":
        return {"tokens": model(ids, mask, unpad=unpad)}
    start, end = model(ids, mask, unpad=unpad)
    return {"start": start, "end": end}


PER_SEQUENCE = ("pooled", "pair", "logits")


def check_task(reference, ours, task: str, vocab: int, what: str) -> float:
    """Largest |ours - reference| over every output, sequence and layout (asserts <= 1e-5)."""
    seqs = sequences(vocab)
    worst = 0.0
    with torch.no_grad():
        references = [_reference_outputs(reference, task, seq) for seq in seqs]
        for side in ("right", "left"):
            ids, mask = padded(seqs, side)
            for unpad in (False, True):
                ours_out = _our_outputs(ours, task, ids, mask, unpad)
                assert set(ours_out) == set(references[0]), f"{what}: outputs {sorted(ours_out)}"
                for name, batch in ours_out.items():
                    rows = list(batch) if name in PER_SEQUENCE else real_rows(batch, mask)
                    for row, (mine, theirs) in enumerate(zip(rows, references)):
                        worst = max(worst, assert_close(mine, theirs[name],
                                                        f"{what} {name}, {side}-padded, unpad={unpad}, sequence {row}"))
    return worst


def load_through_files(reference, directory) -> torch.nn.Module:
    """``reference`` saved by transformers, then loaded by lmforge (config and weights, strictly)."""
    reference.save_pretrained(directory)
    return lmforge.load_model(directory).eval()


def check_round_trip(reference, ours, directory) -> None:
    """Ours exported, then loaded by transformers: no missing, unexpected or mismatched key, and
    every tensor bit-identical to the reference's."""
    save_hf(ours, directory)
    again, info = type(reference).from_pretrained(directory, output_loading_info=True)
    assert not any(info.values()), info
    ref_state, new_state = reference.state_dict(), again.state_dict()
    assert ref_state.keys() == new_state.keys()
    for name in ref_state:
        assert torch.equal(ref_state[name], new_state[name]), name
    # ... and lmforge reads its own export back to the same tensors.
    back = load_hf(directory)
    for (name, a), b in zip(ours.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def hf_config_of(preset: str, task: str) -> transformers.PretrainedConfig:
    """The transformers config our export writes for a preset (so this checks config_to_hf too)."""
    config = get_preset(preset)
    return transformers.AutoConfig.for_model(**get_family(config.family).config_to_hf(config, task))
