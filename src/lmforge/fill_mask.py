"""Fill-mask: the most likely tokens behind each mask token of a text, from a masked-LM model
(what transformers' ``fill-mask`` pipeline returns, for ``lmforge fill-mask`` and the demo)."""

from __future__ import annotations

import torch

from lmforge.errors import UserError


def fill_mask(model, tokenizer, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each mask token of ``text`` in order: the ``top_k`` (token, probability) pairs."""
    if not hasattr(model, "mlm_head"):
        raise UserError(f"the model is a {model.task} model, which has no MLM head")
    mask_token = tokenizer.special_tokens.get("mask")  # [MASK] (BERT, ALBERT), <mask> (RoBERTa)
    if mask_token is None:
        raise UserError("the tokenizer has no mask token")
    batch = tokenizer([text], return_tensors="pt")
    ids = batch["input_ids"]
    positions = (ids[0] == tokenizer.mask_id).nonzero().flatten().tolist()
    if not positions:
        raise UserError(f"the text has no {mask_token} token")
    if ids.shape[1] > model.config.max_positions:
        raise UserError(f"the text is {ids.shape[1]} tokens long; this model reads at most {model.config.max_positions}")
    with torch.inference_mode():
        logits = model.eval()(ids, batch["attention_mask"], batch["token_type_ids"]).mlm_logits[0]
    answers = []
    for position in positions:
        top = logits[position].float().softmax(-1).topk(min(top_k, logits.shape[-1]))
        answers.append([(tokenizer.convert_ids_to_tokens([i])[0], p) for p, i in zip(top.values.tolist(),
                                                                                    top.indices.tolist())])
    return answers
