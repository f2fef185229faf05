# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""grouped_assignment / assign_in_groups / match_in_groups against brute force over permutations."""

import itertools

import pytest
import torch

from mmrefvlm.models.matchers import (
    GroupedHungarianMatcher,
    assign_in_groups,
    box_group_costs,
    flat_group_keys,
    grouped_assignment,
    match_in_groups,
    pad_by_group,
)
from mmrefvlm.models.matchers import assignment as assignment_module
from mmrefvlm.registry import TASK_UTILS


def brute_force_min(block: torch.Tensor) -> float:
    """Minimal total cost of a square block over all permutations (itertools)."""
    n = block.shape[0]
    if n == 0:
        return 0.0
    return min(
        sum(float(block[i, p[i]]) for i in range(n)) for p in itertools.permutations(range(n))
    )


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_grouped_assignment_is_optimal_per_group(seed):
    gen = torch.Generator().manual_seed(seed)
    num_groups, n_max = 7, 6
    sizes = torch.randint(0, n_max + 1, (num_groups,), generator=gen)
    sizes[0] = n_max  # always exercise the largest size
    costs = torch.rand(num_groups, n_max, n_max, generator=gen) * 10 - 3
    # Entries outside the valid blocks must be ignored, whatever they hold.
    for g, n in enumerate(sizes.tolist()):
        costs[g, n:, :] = float('nan')
        costs[g, :, n:] = -1e9
    result = grouped_assignment(costs, sizes)
    assert len(result) == num_groups
    for g, (rows, cols) in enumerate(result):
        n = int(sizes[g])
        assert rows.dtype == torch.long and cols.dtype == torch.long
        assert rows.tolist() == list(range(n))
        assert sorted(cols.tolist()) == list(range(n))
        total = float(costs[g, rows, cols].sum()) if n else 0.0
        assert total == pytest.approx(brute_force_min(costs[g, :n, :n]), abs=1e-4)


def test_size_one_and_zero_groups_skip_the_solver(monkeypatch):
    calls = []

    def counting_solver(block):
        calls.append(block.shape)
        return real_solver(block)

    real_solver = assignment_module.linear_sum_assignment
    monkeypatch.setattr(assignment_module, 'linear_sum_assignment', counting_solver)
    costs = torch.rand(5, 3, 3)
    result = grouped_assignment(costs, torch.tensor([1, 3, 0, 1, 2]))
    assert calls == [(3, 3), (2, 2)]
    assert [r.tolist() for r, _ in result] == [[0], [0, 1, 2], [], [0], [0, 1]]
    assert result[0][1].tolist() == [0] and result[2][1].numel() == 0

    def failing_solver(block):
        raise AssertionError('solver called for a trivial group')

    monkeypatch.setattr(assignment_module, 'linear_sum_assignment', failing_solver)
    result = grouped_assignment(torch.rand(3, 1, 1), torch.tensor([1, 0, 1]))
    assert [(r.tolist(), c.tolist()) for r, c in result] == [([0], [0]), ([], []), ([0], [0])]


def test_grouped_assignment_rejects_bad_input():
    with pytest.raises(ValueError, match='sizes must be in'):
        grouped_assignment(torch.rand(2, 3, 3), torch.tensor([1, 4]))
    with pytest.raises(ValueError, match=r'\(G, N, N\)'):
        grouped_assignment(torch.rand(2, 3, 4), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match='sizes must be'):
        grouped_assignment(torch.rand(2, 3, 3), torch.tensor([1, 2, 3]))
    bad = torch.rand(1, 2, 2)
    bad[0, 0, 1] = float('inf')
    with pytest.raises(ValueError, match='non-finite'):
        grouped_assignment(bad, torch.tensor([2]))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float64])
def test_grouped_assignment_accepts_low_precision_and_grad_costs(dtype):
    costs = torch.tensor([[[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]]], dtype=dtype)
    ((rows, cols),) = grouped_assignment(
        costs.requires_grad_(dtype != torch.float16), torch.tensor([3])
    )
    assert rows.dtype == cols.dtype == torch.long and cols.device == costs.device
    assert cols.tolist() == [1, 0, 2]  # 1 + 2 + 2 = 5 is the unique optimum


def random_batch(seed: int, num_samples: int = 3, max_groups: int = 3, max_size: int = 5):
    """Items of random groups with random sizes, with batch-unique keys in REF order."""
    gen = torch.Generator().manual_seed(seed)
    keys = []
    for sample in range(num_samples):
        num_groups = int(torch.randint(0, max_groups + 1, (1,), generator=gen))
        for group in range(num_groups):
            size = int(torch.randint(1, max_size + 1, (1,), generator=gen))
            keys += [sample * 1024 + group] * size
    return torch.tensor(keys, dtype=torch.long), gen


@pytest.mark.parametrize('seed', [0, 1, 2, 5])
def test_assign_in_groups_matches_brute_force_on_flat_items(seed):
    keys, gen = random_batch(seed)
    num = keys.numel()
    keys = keys[torch.randperm(num, generator=gen)]  # groups need not be contiguous
    # A cost for every pair of items; only pairs of the same group may be used.
    full = torch.rand(num, num, generator=gen)
    _, sizes, slots = pad_by_group(keys, keys)
    num_groups, num_slots = sizes.numel(), int(sizes.max())
    item_at = torch.zeros(num_groups * num_slots, dtype=torch.long)  # padded slots -> item 0
    item_at[slots] = torch.arange(num)
    item_at = item_at.view(num_groups, num_slots)
    costs = full[item_at[:, :, None], item_at[:, None, :]]  # (G, N, N)
    pred_inds, tgt_inds = assign_in_groups(costs, sizes, slots)
    assert pred_inds.tolist() == list(range(num))
    assert sorted(tgt_inds.tolist()) == list(range(num))
    assert torch.equal(keys[tgt_inds], keys)  # never leaves its group
    total = float(full[pred_inds, tgt_inds].sum())
    expected = 0.0
    for key in keys.unique().tolist():
        items = (keys == key).nonzero().flatten()
        expected += brute_force_min(full[items][:, items])
    assert total == pytest.approx(expected, abs=1e-4)


def test_match_in_groups_recovers_a_within_group_shuffle():
    keys, gen = random_batch(7, num_samples=4, max_groups=3, max_size=4)
    num = keys.numel()
    cxcy = torch.rand(num, 2, generator=gen) * 0.8 + 0.1
    targets = torch.cat([cxcy, torch.full((num, 2), 0.05)], dim=1)
    # Shuffle targets inside every group: the matcher must undo exactly that permutation.
    perm = torch.arange(num)
    for key in keys.unique().tolist():
        items = (keys == key).nonzero().flatten()
        perm[items] = items[torch.randperm(items.numel(), generator=gen)]
    preds = targets[perm] + 0.001 * torch.randn(num, 4, generator=gen)
    pred_inds, tgt_inds = match_in_groups(box_group_costs, preds, targets, keys)
    assert torch.equal(tgt_inds, perm)
    matcher = TASK_UTILS.build(dict(type=GroupedHungarianMatcher, cost='box', l1_weight=5.0))
    assert torch.equal(matcher(preds, targets, keys)[1], perm)


def test_flat_group_keys_from_unit_queries_layout():
    group_ids = torch.tensor([[0, 0, 1, -1], [0, 2, 2, 2]])
    mask = group_ids >= 0
    keys = flat_group_keys(group_ids, mask)
    assert keys.tolist() == [0, 0, 1, 3, 5, 5, 5]
    assert flat_group_keys(torch.full((2, 0), -1), torch.zeros(2, 0, dtype=torch.bool)).numel() == 0


def test_matcher_rejects_unknown_cost():
    with pytest.raises(ValueError, match='unknown cost'):
        GroupedHungarianMatcher(cost='polygon')
    with pytest.raises(TypeError):
        GroupedHungarianMatcher(cost=3)
