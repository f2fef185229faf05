# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The training loss as it was before the synchronisation-free step (main at 4d2a59b), frozen as a
reference: ``reference_loss(model, inputs, data_samples)`` runs the old code path on a model's own
modules (per-sample TRP parsing of the device labels, router packing, boolean-mask selections,
each decoder's loss with its own grouped matching, mmdet's GIoU loss). The new path must give the
same losses and gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmrefvlm.models.generation import split_llm
from mmrefvlm.models.matchers import (
    assign_in_groups,
    box_group_costs,
    flat_group_keys,
    mask_group_costs,
    match_in_groups,
    point_group_costs,
)
from mmrefvlm.models.refvlm_utils import select_rows, splice
from mmrefvlm.models.unit_decoders import (
    BoxUnitDecoder,
    DepthUnitDecoder,
    KeypointUnitDecoder,
    MaskUnitDecoder,
)
from mmrefvlm.models.unit_decoders.box import matched_box_losses
from mmrefvlm.models.unit_decoders.depth import _pool_log_depth, depth_group_costs, silog
from mmrefvlm.models.unit_decoders.keypoint import keypoint_oks
from mmrefvlm.models.unit_decoders.layers import valid_region_mask
from mmrefvlm.models.unit_decoders.mask import _area_binarise
from mmrefvlm.models.unit_decoders.utils import gather_unit_targets, resize_maps, xyxy_to_cxcywh
from mmrefvlm.registry import MODELS
from mmrefvlm.structures import UnitQueries, VisualContext
from mmrefvlm.trp import find_refs


def _old_giou(dec):
    """mmdet's GIoU loss (the decoders' default before), with the decoder's weight."""
    own = dec.loss_giou if hasattr(dec, 'loss_giou') else dec.loss_bbox_giou
    return MODELS.build(dict(type='mmdet.GIoULoss', loss_weight=own.loss_weight, eps=own.eps))


def old_lm_loss(hidden: Tensor, labels: Tensor, lm_head) -> Tensor:
    targets = labels[:, 1:]
    sel = targets != -100
    if not bool(sel.any()):
        return lm_head(hidden[:, :1]).sum() * 0.0
    return F.cross_entropy(lm_head(hidden[:, :-1][sel]).float(), targets[sel])


def old_embed(model, inputs, vis, image_tokens):
    ids = inputs['input_ids']
    embeds = model.llm.get_input_embeddings()(ids)
    has_image = inputs['has_image']
    n_img = image_tokens.shape[1]
    img_id, vpt_id = model.tokenizer.ids.image, model.tokenizer.ids.vpt
    values = image_tokens[has_image].flatten(0, 1)
    embeds = splice(embeds, ids, img_id, values, has_image.long() * n_img, '<image>')
    zero = image_tokens.sum() * 0.0 if not bool(has_image.all()) else embeds.new_zeros(())
    zero = zero + sum(p.float().sum() for p in vis.pyramid) * 0.0
    masks, bidx = inputs['prompt_masks'], inputs['prompt_batch_idx']
    k2 = model.prompt_encoder.num_tokens
    if masks.shape[0] > 0:
        prompts = model.projector(model.prompt_encoder(vis.clip, masks.float(), bidx))
        counts = torch.bincount(bidx, minlength=ids.shape[0]) * k2
        embeds = splice(embeds, ids, vpt_id, prompts.flatten(0, 1), counts, '[VPT]')
    else:
        fake = torch.zeros(1, *masks.shape[1:], device=ids.device)
        one = torch.zeros(1, dtype=torch.long, device=ids.device)
        zero = zero + model.projector(model.prompt_encoder(vis.clip[:1], fake, one)).sum() * 0.0
    return embeds, zero


def old_route(model, inputs, hidden):
    refs = []
    for ids, labels in zip(inputs['input_ids'], inputs['labels'], strict=True):
        known = set(model.unit_decoders)
        refs.append(find_refs(ids, model.tokenizer, known_units=known, span_mask=labels != -100)[0])
    router = model.router
    shift = 1 if router.ref_position == 'emitting' else 0
    bsz = hidden.shape[0]
    routed, spans = [[] for _ in range(bsz)], {}
    for b, sample_refs in enumerate(refs):
        group_ids, counts = {}, {}
        for position, units, key, _, span in sample_refs:
            if span is not None and span[1] - span[0] > 1:
                spans[(b, position)] = span
            gid = group_ids.setdefault(key, len(group_ids))
            for unit in units:
                slot = counts.get(unit, 0)
                if slot >= model.unit_decoders[unit].num_queries:
                    continue
                counts[unit] = slot + 1
                routed[b].append((b, max(position - shift, 0), unit, slot, gid))
    queries = {}
    for unit in sorted({r[2] for rs in routed for r in rs}):
        items = [r for rs in routed for r in rs if r[2] == unit]
        q = max(r[3] for r in items) + 1
        dev = hidden.device
        b_idx = torch.tensor([r[0] for r in items], device=dev)
        p_idx = torch.tensor([r[1] for r in items], device=dev)
        s_idx = torch.tensor([r[3] for r in items], device=dev)
        states = hidden[b_idx, p_idx]
        if router.phrase_pooling and spans:
            csum = torch.cat(
                [hidden.new_zeros(bsz, 1, hidden.shape[-1]), hidden.float().cumsum(1)], 1
            )
            found = [spans.get((r[0], r[1] + shift)) for r in items]
            s = torch.tensor([sp[0] + 1 if sp else 0 for sp in found], device=dev)
            e = torch.tensor([sp[1] if sp else 1 for sp in found], device=dev)
            has = torch.tensor([sp is not None for sp in found], device=dev)
            mean = (csum[b_idx, e] - csum[b_idx, s]) / (e - s).clamp_min(1)[:, None]
            states = states + (mean * has[:, None]).to(hidden.dtype)
        embeds = hidden.new_zeros(bsz, q, hidden.shape[-1]).index_put((b_idx, s_idx), states)
        mask = torch.zeros(bsz, q, dtype=torch.bool, device=dev)
        mask[b_idx, s_idx] = True
        gids = torch.full((bsz, q), -1, dtype=torch.long, device=dev)
        gids[b_idx, s_idx] = torch.tensor([r[4] for r in items], device=dev)
        queries[unit] = UnitQueries(embeds=embeds, mask=mask, group_ids=gids)
    return queries


def old_box(dec, queries, visual, samples):
    boxes = dec(queries, visual)['boxes']
    mask = queries.mask.bool()
    num = int(mask.sum())
    if num == 0:
        zero = boxes.sum() * 0.0
        return dict(loss_box_l1=zero, loss_box_giou=zero)
    pred = boxes[mask].float()
    tgt = gather_unit_targets(samples, 'box', ['bboxes'], queries)['bboxes'].float()
    keys = flat_group_keys(queries.group_ids, mask)
    pi, ti = match_in_groups(box_group_costs, pred, xyxy_to_cxcywh(tgt), keys, **dec.match_costs)
    l1, giou = matched_box_losses(dec.loss_l1, _old_giou(dec), pred[pi], tgt[ti], num)
    return dict(loss_box_l1=l1, loss_box_giou=giou)


def old_mask(dec, queries, visual, samples):
    logits = dec(queries, visual)['mask_logits']
    mask = queries.mask.bool()
    num = int(mask.sum())
    if num == 0:
        zero = logits.sum() * 0.0
        return dict(loss_mask_focal=zero, loss_mask_dice=zero)
    pred = logits[mask].float()
    tgt = gather_unit_targets(samples, 'mask', ['masks'], queries)['masks'].float() > 0.5
    size = tgt.shape[-1]
    valid_hw = visual.valid_hw[:, None].expand(-1, mask.shape[1], -1)[mask]
    msize = min(dec.match_size, size)
    pi, ti = match_in_groups(
        mask_group_costs,
        resize_maps(pred, msize),
        _area_binarise(tgt, msize),
        flat_group_keys(queries.group_ids, mask),
        valid=valid_region_mask(valid_hw, msize, msize),
        **dec.match_costs,
    )
    focal, dice = dec.masked_losses(
        resize_maps(pred[pi], size), tgt[ti], valid_region_mask(valid_hw[pi], size, size), num
    )
    return dict(loss_mask_focal=focal, loss_mask_dice=dice)


def old_keypoint(dec, queries, visual, samples):
    out = dec(queries, visual)
    mask = queries.mask.bool()
    num = int(mask.sum())
    names = ('bbox_l1', 'bbox_giou', 'l1', 'oks', 'vis')
    if num == 0:
        zero = sum(v.sum() for v in out.values()) * 0.0
        return {f'loss_keypoint_{k}': zero for k in names}
    boxes, points, vis = (out[k][mask].float() for k in ('boxes', 'keypoints', 'visibility_logits'))
    gt = gather_unit_targets(samples, 'keypoint', ['keypoints', 'bboxes'], queries)
    tgt_kpts, tgt_boxes = gt['keypoints'].float(), gt['bboxes'].float()
    labelled = tgt_kpts[..., 2] > 0
    keys = flat_group_keys(queries.group_ids, mask)
    mc = dec.match_costs
    costs = box_group_costs(
        boxes,
        xyxy_to_cxcywh(tgt_boxes),
        keys,
        l1_weight=mc['l1_weight'],
        giou_weight=mc['giou_weight'],
    ) + point_group_costs(
        points, tgt_kpts[..., :2], keys, tgt_visible=labelled, weight=mc['point_weight']
    )
    pi, ti = assign_in_groups(costs.costs, costs.sizes, costs.slot_inds)
    l1, giou = matched_box_losses(dec.loss_bbox_l1, _old_giou(dec), boxes[pi], tgt_boxes[ti], num)
    points, vis = points[pi], vis[pi]
    tgt_xy, lab, tb = tgt_kpts[ti, :, :2], labelled[ti], tgt_boxes[ti]
    lab_f = lab.to(points.dtype)
    kpt_l1 = ((points - tgt_xy).abs().sum(-1) * lab_f).sum() / num
    areas = (tb[:, 2] - tb[:, 0]).clamp(min=0) * (tb[:, 3] - tb[:, 1]).clamp(min=0)
    oks = keypoint_oks(points, tgt_xy, lab, areas, dec.sigmas)
    oks_loss = ((1 - oks) * lab.any(-1).to(oks.dtype)).sum() / num
    vis_loss = F.binary_cross_entropy_with_logits(vis, lab_f, reduction='sum') / (
        num * dec.num_keypoints
    )
    vals = (
        l1,
        giou,
        kpt_l1 * dec.weights['l1'],
        oks_loss * dec.weights['oks'],
        vis_loss * dec.weights['vis'],
    )
    return {f'loss_keypoint_{k}': v for k, v in zip(names, vals, strict=True)}


def old_depth(dec, queries, visual, samples):
    log_depth = dec(queries, visual)['log_depth']
    mask = queries.mask.bool()
    num = int(mask.sum())
    if num == 0:
        return dict(loss_depth_silog=log_depth.sum() * 0.0)
    pred = log_depth[mask].float()
    gt = gather_unit_targets(samples, 'depth', ['depth', 'valid'], queries)
    depth = gt['depth'].float()
    size = depth.shape[-1]
    valid_hw = visual.valid_hw[:, None].expand(-1, mask.shape[1], -1)[mask]
    valid = gt['valid'].bool() & (depth > 0) & valid_region_mask(valid_hw, size, size)
    gt_log = torch.where(valid, depth.clamp(min=1e-6).log(), torch.zeros_like(depth))
    msize = min(dec.match_size, size)
    m_gt, m_valid = _pool_log_depth(gt_log, valid, msize)
    pi, ti = match_in_groups(
        depth_group_costs,
        resize_maps(pred, msize).flatten(1),
        m_gt.flatten(1),
        flat_group_keys(queries.group_ids, mask),
        valid=m_valid.flatten(1),
        lam=dec.silog_lambda,
    )
    per_map = silog(
        resize_maps(pred[pi], size).flatten(1),
        gt_log[ti].flatten(1),
        valid[ti].flatten(1),
        dec.silog_lambda,
    )
    return dict(loss_depth_silog=per_map.sum() / num * dec.loss_weight)


OLD_DECODER_LOSSES = {
    BoxUnitDecoder: old_box,
    MaskUnitDecoder: old_mask,
    KeypointUnitDecoder: old_keypoint,
    DepthUnitDecoder: old_depth,
}


def reference_loss(model, inputs: dict, data_samples) -> dict[str, Tensor]:
    """The pre-change ``RefVLM.loss`` (training mode) on ``model``'s modules."""
    clip = model.vision_encoder(inputs['images'][model.image_keys['vision']])
    pyramid = tuple(model.pyramid_encoder(inputs['images'][model.image_keys['pyramid']]))
    valid = []
    for s in data_samples:
        shape, side = s.metainfo.get('ori_shape'), s.metainfo.get('square_size')
        valid.append((1.0, 1.0) if not shape or not side else (shape[0] / side, shape[1] / side))
    vis = VisualContext(pyramid, clip, torch.tensor(valid, dtype=torch.float32, device=clip.device))
    image_tokens = model.projector(clip.flatten(2).transpose(1, 2))
    embeds, zero = old_embed(model, inputs, vis, image_tokens)
    decoder, head, _ = split_llm(model.llm)
    hidden = decoder(
        inputs_embeds=embeds, attention_mask=inputs['attention_mask']
    ).last_hidden_state
    losses = {'loss_llm': old_lm_loss(hidden, inputs['labels'], head) * model.loss_weights['llm']}
    routed = old_route(model, inputs, hidden)
    for unit, dec in model.unit_decoders.items():
        fn = OLD_DECODER_LOSSES.get(type(dec), lambda d, *a: d.loss(*a))
        queries = routed.get(unit)
        if queries is None:
            fake = UnitQueries(
                hidden[:1, :1] * 0.0,
                torch.zeros(1, 1, dtype=torch.bool, device=hidden.device),
                torch.full((1, 1), -1, dtype=torch.long, device=hidden.device),
            )
            vis1 = VisualContext(tuple(p[:1] for p in vis.pyramid), vis.clip[:1], vis.valid_hw[:1])
            losses.update({k: v * 0.0 for k, v in fn(dec, fake, vis1, data_samples[:1]).items()})
            continue
        _, queries, unit_vis, unit_samples = select_rows(queries, vis, data_samples)
        w = model.loss_weights[unit]
        losses.update({k: v * w for k, v in fn(dec, queries, unit_vis, unit_samples).items()})
    losses['loss_llm'] = losses['loss_llm'] + zero
    return losses
