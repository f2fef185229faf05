# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Metrics give the same numbers on 2 ranks (gloo, CPU) as on one process, with a padded sampler
and samples of other tasks in the split."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp


def _samples():
    from mmengine.structures import InstanceData

    from mmrefvlm.structures import RefVLMDataSample

    out = []
    for i in range(7):  # odd: DefaultSampler pads rank 1 with a duplicate of sample 0
        task = 'vqa' if i % 3 == 2 else 'rec'
        s = RefVLMDataSample(metainfo=dict(task=task, sample_idx=i, ori_shape=(20, 20)))
        gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
        s.gt_instances = InstanceData(bboxes=gt, units=['box'], labels=['x'])
        shift = float(i)  # IoU falls with i: some hits, some misses
        s.pred_instances = InstanceData(
            bboxes=gt + torch.tensor([shift, 0.0, shift, 0.0]), units=['box'], labels=['x']
        )
        out.append(s)
    return out


def _worker(rank, world_size, port, queue):
    import torch.distributed as dist
    from mmengine.dataset import DefaultSampler

    from mmrefvlm.evaluation import RECMetric

    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world_size
    )
    samples = _samples()
    sampler = DefaultSampler(samples, shuffle=False)
    metric = RECMetric()
    indices = list(sampler)
    for start in range(0, len(indices), 2):  # batch size 2
        metric.process({}, [samples[i].to_dict() for i in indices[start : start + 2]])
    result = metric.evaluate(len(samples))
    if rank == 0:
        queue.put(result)
    dist.destroy_process_group()


@pytest.mark.dist
@pytest.mark.slow
def test_two_ranks_match_single_process():
    from mmrefvlm.evaluation import RECMetric

    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    dist_result = queue.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
    metric = RECMetric()
    metric.process({}, [s.to_dict() for s in _samples()])
    single = metric.evaluate(7)
    assert dist_result == pytest.approx(single)
    # 5 rec samples with shifts 0, 1, 3, 4, 6 px: IoU 1, 9/11, 7/13, 6/14, 4/16 -> 3 hits.
    assert single['rec/Acc@0.5'] == pytest.approx(60.0)
