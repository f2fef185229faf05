# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""pad_by_group / group_slots / scatter_to_slots: layout checked item by item."""

import pytest
import torch

from mmrefvlm.models.matchers import group_slots, pad_by_group, scatter_rows, scatter_to_slots


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_pad_by_group_round_trip_and_order(seed):
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randint(0, 6, (17,), generator=gen) * 1024 + 5  # sparse, unsorted keys
    x = torch.randn(17, 3, generator=gen)
    padded, sizes, slots = pad_by_group(x, keys)
    unique_keys = sorted(set(keys.tolist()))
    assert padded.shape == (len(unique_keys), int(sizes.max()), 3)
    assert torch.equal(padded.flatten(0, 1)[slots], x)
    for g, key in enumerate(unique_keys):
        members = [i for i, k in enumerate(keys.tolist()) if k == key]  # input order
        assert int(sizes[g]) == len(members)
        assert torch.equal(padded[g, : len(members)], x[members])
        assert not padded[g, len(members) :].any()  # zero padding


def test_pad_by_group_with_fixed_number_of_groups():
    x = torch.tensor([1.0, 2.0, 3.0])
    padded, sizes, slots = pad_by_group(x, torch.tensor([2, 0, 2]), num_groups=4, pad_value=-1.0)
    assert sizes.tolist() == [1, 0, 2, 0]
    assert padded.tolist() == [[2.0, -1.0], [-1.0, -1.0], [1.0, 3.0], [-1.0, -1.0]]
    assert slots.tolist() == [4, 0, 5]
    with pytest.raises(ValueError, match='num_groups'):
        pad_by_group(x, torch.tensor([0, 1, 4]), num_groups=4)


def test_empty_and_bad_inputs():
    padded, sizes, slots = pad_by_group(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert padded.shape == (0, 0, 4) and sizes.numel() == 0 and slots.numel() == 0
    with pytest.raises(TypeError, match='integer'):
        pad_by_group(torch.zeros(2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match='shape'):
        pad_by_group(torch.zeros(2), torch.tensor([0, 1, 1]))


def test_group_slots_reused_for_several_tensors():
    keys = torch.tensor([3, 1, 3])
    slots = group_slots(keys)
    assert slots.num_slots == 2 and slots.sizes.tolist() == [1, 2]
    a = scatter_to_slots(torch.tensor([10, 11, 12]), slots)
    b = scatter_to_slots(torch.ones(3, 2, dtype=torch.bool), slots)
    assert a.tolist() == [[11, 0], [10, 12]]
    assert b.dtype == torch.bool and b.sum() == 6
    with pytest.raises(ValueError, match='items'):
        scatter_to_slots(torch.zeros(2), slots)


def test_scatter_rows_equals_stacked_scatters():
    gen = torch.Generator().manual_seed(4)
    keys = torch.tensor([5, 2, 5, 9, 5, 2])
    parts = [torch.randn(6, 3, generator=gen) for _ in range(3)]
    slots = group_slots(keys)
    rows = scatter_rows(parts, slots, pad_value=-7.0)
    expected = torch.stack([scatter_to_slots(p, slots, pad_value=-7.0) for p in parts], dim=1)
    assert rows.shape == (3, 3, 3, 3) and torch.equal(rows, expected)
    assert slots.keys.tolist() == [2, 5, 9]
