"""The weight-map rules (families/weights.py) and the checkpoint defects they fixed: fused and
split q/k/v, per-part transforms inverted on export, strictness about unmapped and partial
groups; the tie rule read from config.json (D1), an untied decoder's own initialisation (D2)
and a new label set getting a new classifier (D3)."""

import pytest
import torch

import lmforge
from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.families.weights import IDENTITY, TRANSPOSE, RotaryInterleave, Rule, WeightMap, qkv_sizes

CONFIG = ModelConfig(family="test", vocab_size=10, hidden_size=8, num_layers=1, num_heads=4, num_kv_heads=2,
                     intermediate_size=16)
MAP = WeightMap([
    Rule("layers.{i}.qkv", ("h.{i}.q", "h.{i}.k", "h.{i}.v"), (RotaryInterleave("num_heads"),
                                                                RotaryInterleave("num_kv_heads"), IDENTITY),
         split=qkv_sizes),
    Rule("layers.{i}.up", "h.{i}.c_fc", TRANSPOSE),
    ("norm", "ln_f"),
])


def hf_tensors():
    g = torch.Generator().manual_seed(0)
    return {"h.3.q.weight": torch.randn(8, 8, generator=g), "h.3.k.weight": torch.randn(4, 8, generator=g),
            "h.3.v.weight": torch.randn(4, 8, generator=g), "h.3.q.bias": torch.randn(8, generator=g),
            "h.3.k.bias": torch.randn(4, generator=g), "h.3.v.bias": torch.randn(4, generator=g),
            "h.3.c_fc.weight": torch.randn(8, 16, generator=g), "h.3.c_fc.bias": torch.randn(16, generator=g),
            "ln_f.weight": torch.randn(8, generator=g)}


def test_fuse_transform_and_back():
    theirs = hf_tensors()
    ours, sources, unmatched = MAP.import_tensors(theirs, CONFIG)
    assert not unmatched and set(ours) == {"layers.3.qkv.weight", "layers.3.qkv.bias", "layers.3.up.weight",
                                           "layers.3.up.bias", "norm.weight"}
    assert ours["layers.3.qkv.weight"].shape == (16, 8) and ours["layers.3.up.weight"].shape == (16, 8)
    assert torch.equal(ours["layers.3.up.weight"], theirs["h.3.c_fc.weight"].t())
    # Values: v is untouched, q's rows are a per-head permutation (pairs (0,1) -> (0, d/2)).
    assert torch.equal(ours["layers.3.qkv.weight"][12:], theirs["h.3.v.weight"])
    assert torch.equal(ours["layers.3.qkv.weight"][:8], RotaryInterleave().to_ours(theirs["h.3.q.weight"], CONFIG))
    assert sources["layers.3.qkv.weight"].startswith("h.3.")
    back = MAP.export_tensors(ours, CONFIG)
    assert back.keys() == theirs.keys()
    assert all(torch.equal(back[name], tensor) for name, tensor in theirs.items())


def test_rotary_interleave_pairs_dimensions():
    """Head dim 2 per half: Meta rows [a0, a1, b0, b1] (pairs interleaved) -> ours [a0, b0, a1, b1]."""
    rows = torch.arange(8.0)[:, None]  # 4 heads of d=2 -> 1 pair each: identity per head
    assert torch.equal(RotaryInterleave().to_ours(rows, CONFIG), rows)
    wide = ModelConfig(family="test", vocab_size=10, hidden_size=8, num_layers=1, num_heads=1, intermediate_size=8)
    meta = torch.arange(8.0)[:, None]  # one head, d=8: pairs (0,1), (2,3), (4,5), (6,7)
    ours = RotaryInterleave().to_ours(meta, wide)[:, 0].tolist()
    assert ours == [0, 2, 4, 6, 1, 3, 5, 7]  # first halves, then second halves
    assert torch.equal(RotaryInterleave().to_theirs(RotaryInterleave().to_ours(meta, wide), wide), meta)


def test_partial_group_and_unmapped_names():
    theirs = hf_tensors()
    del theirs["h.3.k.weight"]
    with pytest.raises(UserError, match="not the rest of its group"):
        MAP.import_tensors(theirs, CONFIG)
    _, _, unmatched = MAP.import_tensors({"h.3.attn.bias": torch.zeros(1)}, CONFIG)
    assert unmatched == ["h.3.attn.bias"]
    with pytest.raises(UserError, match="no Hugging Face name"):
        MAP.export_tensors({"elsewhere.weight": torch.zeros(1)}, CONFIG)


def test_untied_bert_exports_and_reloads(tmp_path):
    """D1: config_from_hf kept the tie on, so an untied export did not reload."""
    model = lmforge.build("bert-test", task="masked_lm", seed=1, tie_word_embeddings=False)
    lmforge.save(model, tmp_path, format="hf")
    again = lmforge.load_model(tmp_path)
    assert not again.config.tie_word_embeddings
    assert torch.equal(again.mlm_head.decoder.weight, model.mlm_head.decoder.weight)
    assert not torch.equal(again.mlm_head.decoder.weight, again.backbone.embeddings.word.weight)


def test_untied_decoder_gets_its_own_initialisation():
    """D2: the untied decoder was a clone of the embeddings, never re-initialised."""
    model = lmforge.build("bert-test", task="masked_lm", seed=2, tie_word_embeddings=False)
    decoder, embeddings = model.mlm_head.decoder.weight.detach(), model.backbone.embeddings.word.weight.detach()
    assert abs(float(decoder.std()) - 0.02) < 0.002
    assert float((decoder - embeddings).abs().max()) > 0.01
    tied = lmforge.build("bert-test", task="masked_lm", seed=2)
    assert tied.mlm_head.decoder.weight is tied.backbone.embeddings.word.weight
    assert float(tied.backbone.embeddings.word.weight[0].detach().abs().max()) == 0.0  # the padding row


@pytest.mark.parametrize("fmt", ["hf", "lmforge"])
def test_new_labels_mean_a_new_classifier(tmp_path, fmt):
    """D3: a new label set with as many labels as the old kept the old classifier weights."""
    model = lmforge.build("bert-test", task="sequence_classification", seed=3, labels=("neg", "pos"))
    lmforge.save(model, tmp_path, format=fmt)
    same = lmforge.load_model(tmp_path)
    assert torch.equal(same.classifier.classifier.weight, model.classifier.classifier.weight)
    relabelled = lmforge.load_model(tmp_path, labels=["yes", "no"])
    assert relabelled.config.labels == ("yes", "no")
    assert not torch.equal(relabelled.classifier.classifier.weight, model.classifier.classifier.weight)
    assert torch.equal(relabelled.backbone.embeddings.word.weight, model.backbone.embeddings.word.weight)
