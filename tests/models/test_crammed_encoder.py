"""The encoder of the efficient-pretraining recipes (Cramming, Geiping & Goldstein 2022): BERT
with pre-norm residuals and a final norm, no linear biases, a gated-GELU feed-forward and no
dropout, as config switches of the shared core. Checked against a forward pass written out by
hand from the same weights (no transformers class has this encoder), padded and unpadded."""

import math

import torch
import torch.nn.functional as F

import lmforge
from lmforge.families import get_preset

CONFIG = get_preset("bert-test").replace(norm_placement="pre", final_norm=True, bias=False, feed_forward="gated",
                                         hidden_dropout=0.0, attention_dropout=0.0)


def reference_forward(model, ids, attention_mask):
    """x + attn(LN(x)), x + down(gelu(gate LN(x)) * up LN(x)) per layer, then the final LN."""
    weights = dict(model.named_parameters())
    c = model.config
    get = lambda name: weights[f"backbone.{name}"]  # noqa: E731
    positions = torch.arange(ids.shape[1])
    x = get("embeddings.word.weight")[ids] + get("embeddings.position.weight")[positions] \
        + get("embeddings.token_type.weight")[0]
    x = F.layer_norm(x, (c.hidden_size,), get("embeddings.norm.weight"), get("embeddings.norm.bias"), c.norm_eps)
    heads, width = c.num_heads, c.hidden_size // c.num_heads
    blocked = (attention_mask[:, None, None, :] == 0)
    for k in range(c.num_layers):
        layer = f"encoder.layers.{k}"
        h = F.layer_norm(x, (c.hidden_size,), get(f"{layer}.attention.norm.weight"), get(f"{layer}.attention.norm.bias"),
                         c.norm_eps)
        q, key, v = (h @ get(f"{layer}.attention.sublayer.qkv.weight").T).split(c.hidden_size, dim=-1)
        q, key, v = (t.reshape(*t.shape[:2], heads, width).transpose(1, 2) for t in (q, key, v))
        scores = (q @ key.transpose(-1, -2) / math.sqrt(width)).masked_fill(blocked, float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
        x = x + attended @ get(f"{layer}.attention.sublayer.output.weight").T
        h = F.layer_norm(x, (c.hidden_size,), get(f"{layer}.feed_forward.norm.weight"),
                         get(f"{layer}.feed_forward.norm.bias"), c.norm_eps)
        gated = F.gelu(h @ get(f"{layer}.feed_forward.sublayer.gate.weight").T) \
            * (h @ get(f"{layer}.feed_forward.sublayer.up.weight").T)
        x = x + gated @ get(f"{layer}.feed_forward.sublayer.down.weight").T
    return F.layer_norm(x, (c.hidden_size,), get("encoder.final_norm.weight"), get("encoder.final_norm.bias"), c.norm_eps)


def test_crammed_encoder_equals_the_written_out_forward():
    torch.manual_seed(0)
    model = lmforge.build(CONFIG.replace(vocab_size=100), task="masked_lm", seed=0).eval()
    with torch.no_grad():  # a random final norm, so a missing one would show
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    assert not any(name.endswith(".bias") for name, _ in model.named_parameters() if ".sublayer." in name)
    ids = torch.randint(5, 100, (3, 11))
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 7:] = 0
    attention_mask[2, 4:] = 0
    expected = reference_forward(model, ids, attention_mask)
    for unpad in (False, True):
        with torch.no_grad():
            hidden = model.backbone(ids, attention_mask, unpad=unpad).last_hidden_state
        real = attention_mask.bool()
        hidden = hidden if hidden.dim() == 2 else hidden[real]  # unpadded: real tokens only
        assert (hidden - expected[real]).abs().max() < 1e-5


def test_rotary_encoder_padded_unpadded_and_order():
    """Rotary positions in a bidirectional encoder (the budget recipe's choice): no position
    table, the unpadded layout gives the padded result, and word order matters (no bag of words)."""
    model = lmforge.build(get_preset("bert-test").replace(vocab_size=100, positions="rotary", hidden_dropout=0.0,
                                                          attention_dropout=0.0),
                          task="masked_lm", seed=0).eval()
    assert not any("position" in name for name, _ in model.named_parameters())
    with torch.no_grad():  # sharper attention than at initialisation, so positions show
        for name, param in model.named_parameters():
            if name.endswith("qkv.weight"):
                param.mul_(30)
    ids = torch.randint(5, 100, (2, 9))
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 6:] = 0
    with torch.no_grad():
        padded = model.backbone(ids, attention_mask, unpad=False).last_hidden_state
        unpadded = model.backbone(ids, attention_mask, unpad=True).last_hidden_state
        assert (unpadded - padded[attention_mask.bool()]).abs().max() < 1e-5
        swapped = ids[:1, [1, 0, *range(2, 9)]]
        moved = model.backbone(swapped, torch.ones_like(swapped)).last_hidden_state
    # The last token sees the same multiset of tokens, at other distances.
    assert (moved[0, -1] - padded[0, -1]).abs().max() > 1e-3
