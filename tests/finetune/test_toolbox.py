"""ULMFiT toolbox: discriminative rates (with a schedule on top), gradual unfreezing, freezing."""

import pytest
import torch
from torch import nn

from lmforge.toolbox import GradualUnfreezer, discriminative_param_groups, freeze
from lmforge.training.schedules import slanted_triangular


def block(width: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width))


def test_discriminative_rates_and_weight_decay_split():
    groups = [block(), block(), block()]
    param_groups = discriminative_param_groups(groups, base_lr=1e-3, decay=2.6, weight_decay=0.01)
    # per layer group: matrices (Linear.weight) then vectors (Linear.bias, LayerNorm weight+bias)
    assert [(g["layer_group"], g["weight_decay"], len(g["params"])) for g in param_groups] == [
        (0, 0.01, 1),
        (0, 0.0, 3),
        (1, 0.01, 1),
        (1, 0.0, 3),
        (2, 0.01, 1),
        (2, 0.0, 3),
    ]
    lrs = [g["lr"] for g in param_groups[::2]]
    assert lrs == pytest.approx([1e-3 / 2.6**2, 1e-3 / 2.6, 1e-3])
    assert param_groups[0]["params"][0] is groups[0][0].weight
    assert param_groups[5]["params"][0] is groups[2][0].bias


def test_shared_parameters_appear_once_in_the_lowest_group():
    embedding = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = embedding.weight  # tied
    param_groups = discriminative_param_groups([embedding, head], base_lr=1.0)
    assert [(g["layer_group"], len(g["params"])) for g in param_groups] == [(0, 1)]
    torch.optim.AdamW(param_groups)  # raises if a parameter is in two groups


def test_discriminative_rates_drive_the_optimizer_with_a_schedule():
    groups = [nn.Linear(2, 2), nn.Linear(2, 2)]
    optimizer = torch.optim.SGD(discriminative_param_groups(groups, base_lr=0.26, decay=2.6), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, slanted_triangular(100, cut_frac=0.1, ratio=32))
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1 / 32, 0.1 / 32, 0.26 / 32, 0.26 / 32])
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    # step 10 is the peak (cut = 10): the groups' own rates
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.1, 0.26, 0.26])


def trainable(groups):
    return [all(p.requires_grad for p in g.parameters()) for g in groups]


def test_gradual_unfreezing_one_group_per_epoch_from_the_top():
    groups = [block(), block(), block(), block()]
    unfreezer = GradualUnfreezer(groups)
    unfreezer.start()
    assert trainable(groups) == [False, False, False, True]
    unfreezer.on_epoch(1)
    assert trainable(groups) == [False, False, True, True]
    unfreezer.on_epoch(3)
    assert trainable(groups) == [True, True, True, True]
    unfreezer.on_epoch(9)
    assert trainable(groups) == [True, True, True, True]
    unfreezer.on_epoch(0)  # the state depends on the epoch alone (resume)
    assert trainable(groups) == [False, False, False, True]


def test_frozen_groups_do_not_move_under_adamw():
    groups = [nn.Linear(3, 3), nn.Linear(3, 3)]
    model = nn.Sequential(*groups)
    optimizer = torch.optim.AdamW(discriminative_param_groups(groups, base_lr=0.1, weight_decay=0.1))
    GradualUnfreezer(groups).start()
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    after = list(model.parameters())
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])  # bottom: frozen
    assert not torch.equal(before[2], after[2])  # top: trained


def test_freeze_for_a_linear_probe():
    encoder, probe = block(), nn.Linear(4, 2)
    assert freeze(encoder) is encoder
    assert not any(p.requires_grad for p in encoder.parameters())
    probe(encoder(torch.randn(3, 4))).sum().backward()
    assert all(p.grad is None for p in encoder.parameters())
    assert probe.weight.grad is not None
