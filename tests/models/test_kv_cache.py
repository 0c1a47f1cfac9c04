"""The key/value cache's buffers: appends of any size read back as the concatenation of what
was appended, growth keeps the old entries, and reordering keeps the chosen batch rows."""

import torch

from lmforge.models.kv_cache import KVCache, LayerCache


def test_appends_read_back_as_their_concatenation():
    cache = LayerCache()
    g = torch.Generator().manual_seed(0)
    keys, values = [], []
    for length in (4, 1, 1, 3, 1, 7):  # forces several doublings
        k, v = torch.randn(2, length, 6, generator=g), torch.randn(2, length, 6, generator=g)
        keys.append(k)
        values.append(v)
        all_k, all_v = cache.append(k, v)
        assert torch.equal(all_k, torch.cat(keys, 1)) and torch.equal(all_v, torch.cat(values, 1))
    assert cache.length == 17 and cache._keys.shape[1] >= 17


def test_reorder_keeps_the_chosen_rows():
    cache = KVCache.empty(2, cross_attention=True)
    k = torch.arange(3 * 2 * 4, dtype=torch.float).view(3, 2, 4)
    for layer in cache.self_attention + cache.cross_attention:
        layer.append(k, -k)
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.past_length == 2
    for layer in cache.self_attention + cache.cross_attention:
        assert torch.equal(layer.keys, k[[2, 2, 0]]) and torch.equal(layer.values, -k[[2, 2, 0]])
