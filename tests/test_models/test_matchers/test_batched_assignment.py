# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Host-planned matching layouts and the one-transfer solve of several decoders' groups."""

import numpy as np
import pytest
import torch

from mmrefvlm.models.host_index import IndexPack, host_to_device
from mmrefvlm.models.matchers import (
    MatchRequest,
    assign_in_groups,
    box_group_costs,
    group_slots,
    match_slots,
    plan_match_layout,
    query_layout,
    select_items,
    solve_assignments,
)
from mmrefvlm.structures import UnitQueries
from mmrefvlm.testing import SyncCounter


def layout(keys):
    pack = IndexPack()
    build = plan_match_layout(np.asarray(keys), pack)
    return build(pack.to('cpu'))


def test_index_pack_round_trip():
    pack = IndexPack()
    handles = [pack.add([3, 1]), pack.add(np.arange(4).reshape(2, 2)), pack.add([])]
    dev = pack.to('cpu')
    assert [dev[h].tolist() for h in handles] == [[3, 1], [0, 1, 2, 3], []]
    assert all(t.dtype == torch.long for t in dev) and len(pack) == 3
    assert IndexPack().to('cpu') == []
    assert host_to_device(torch.ones(2), 'cpu').tolist() == [1.0, 1.0]


def test_layout_skips_groups_of_one():
    # keys: group 7 has items 0, 2, 3; group 3 has item 1 (trivial); group 9 has items 4, 5
    lay = layout([7, 3, 7, 7, 9, 9])
    assert lay.num_items == 6 and lay.sizes == (3, 2) and lay.num_slots == 3
    assert lay.host_items.tolist() == [0, 2, 3, 4, 5]
    assert lay.slot_inds.tolist() == [0, 1, 2, 3, 4]
    empty = layout([1, 2, 3])
    assert empty.sizes == () and empty.num_slots == 0 and empty.items.numel() == 0


def test_layout_matches_group_slots_on_the_solved_items():
    keys = torch.tensor([5, 5, 2, 8, 8, 8, 2, 1])
    lay = layout(keys.numpy())
    ref = group_slots(keys[lay.items])
    assert lay.group_sizes.tolist() == ref.sizes.tolist()
    assert lay.slot_inds.tolist() == ref.slot_inds.tolist()
    assert match_slots(lay).num_slots == ref.num_slots


def random_boxes(n, gen):
    xy = torch.rand(n, 2, generator=gen) * 0.5
    return torch.cat([xy + 0.2, torch.rand(n, 2, generator=gen) * 0.3 + 0.05], 1)  # cxcywh


@pytest.mark.parametrize('seed', range(3))
def test_solve_equals_per_decoder_assignment(seed):
    gen = torch.Generator().manual_seed(seed)
    requests, expected = [], []
    for keys in ([0, 0, 1, 2, 2, 2], [4, 4], [1, 2, 3]):
        keys_t = torch.tensor(keys)
        pred, tgt = random_boxes(len(keys), gen), random_boxes(len(keys), gen)
        grouped = box_group_costs(pred, tgt, keys_t)
        expected.append(assign_in_groups(grouped.costs, grouped.sizes, grouped.slot_inds)[1])
        lay = layout(keys)
        costs = None
        if lay.sizes:
            costs = box_group_costs(*select_items(lay, pred, tgt), match_slots(lay)).costs
        requests.append(MatchRequest(lay, costs))
    requests.append(MatchRequest(None))  # a decoder without queries
    with SyncCounter() as counter:
        got = solve_assignments(requests)
    assert counter.num_syncs == 1, counter.report()  # all decoders, one transfer
    assert got[2] is None and got[3] is None  # identity / nothing to match
    for g, e in zip(got[:2], expected[:2], strict=True):
        assert g.tolist() == e.tolist()
    assert expected[2].tolist() == [0, 1, 2]


def test_solve_without_solved_groups_does_not_synchronise():
    requests = [MatchRequest(layout([0, 1])), MatchRequest(None)]
    with SyncCounter() as counter:
        assert solve_assignments(requests) == [None] * 2
    assert counter.events == []


def test_non_finite_costs_raise():
    lay = layout([0, 0])
    costs = torch.tensor([[[0.0, float('nan')], [1.0, 2.0]]])
    with pytest.raises(ValueError, match='non-finite'):
        solve_assignments([MatchRequest(lay, costs)])


def test_query_layout_from_device_tensors():
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, False]])
    gids = torch.tensor([[0, 0, -1], [-1, -1, -1], [3, -1, -1]])
    q = UnitQueries(torch.zeros(3, 3, 4), mask, gids)
    lay = query_layout(q)
    assert lay.counts == (2, 0, 1) and lay.index.tolist() == [0, 1, 6]
    assert lay.rows.tolist() == [0, 0, 2] and lay.match.sizes == (2,)
    assert query_layout(UnitQueries(q.embeds, mask, gids, layout=lay)).match is lay.match
