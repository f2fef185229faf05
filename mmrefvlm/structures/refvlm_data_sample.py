# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``RefVLMDataSample``: the per-sample record that crosses dataset -> model -> metric."""

from __future__ import annotations

from mmengine.structures import BaseDataElement, InstanceData


class RefVLMDataSample(BaseDataElement):
    """Per-sample data of mmrefvlm, written the way mmdet's ``DetDataSample`` is.

    Metainfo (set by the pipeline): ``sample_idx`` (int), ``record_id`` (str), ``task`` (str),
    ``img_path`` (str | None), ``ori_shape`` ((H, W) of the original image), ``square_size``
    (int, S = max(H, W): the image is padded right/bottom to S x S, so a normalised coordinate c
    maps back to c * S pixels), ``has_image`` (bool), ``prompt_types`` (list[str], type of each
    visual prompt in order).

    Data fields:

    * ``gt_units`` (BaseDataElement): one :class:`InstanceData` per unit name present in the answer,
      entries in the order of that unit's ``<REF>`` tokens. Every unit has ``group_ids`` ((N,) long,
      index of the phrase group, i.e. triplet, within the sample; the matcher permutes only inside
      a group) and ``instance_ids`` ((N,) long, index into the record's instances, -1 for
      image-level targets). Unit fields, all in the square frame:
      ``box.bboxes`` (N, 4) float normalised xyxy; ``mask.masks`` (N, M, M) bool;
      ``keypoint.keypoints`` (N, K, 3) float (x, y normalised, visibility 0/1/2) and
      ``keypoint.bboxes``; ``depth.depth`` (N, D, D) float metres with ``depth.valid`` (N, D, D)
      bool.
    * ``gt_instances`` (InstanceData): the same targets for metrics, in original-image pixels: one
      entry per (``<REF>``, unit) with ``units`` (list[str]), ``labels`` (list[str], phrase text),
      ``group_ids``, and where available ``bboxes`` (N, 4) xyxy, ``masks`` (N, H, W) bool,
      ``keypoints`` (N, K, 3).
    * ``label_refs`` (list[tuple]): the ``<REF>`` tokens of the labels, parsed once by the
      pipeline (``FormatConversation``): ``(position, units, (answer, triplet, group), phrase,
      phrase_span)`` per ref (:func:`mmrefvlm.trp.find_refs` with every valid unit), positions in
      the unpadded sequence. Plain host data: ``RefVLM`` routes from it without reading the labels
      back from the device (it parses the labels itself when the field is missing).
    * ``gt_answer`` (list): the structured answer (list of text / phrase-group segments);
      ``gt_text`` (str) its rendered TRP string; ``gt_captions`` / ``gt_vqa_answers`` (list[str])
      references for text metrics; ``gt_depth`` (H, W) float metres in original pixels when the
      sample has depth.
    * Predictions (written by ``RefVLM.predict``): ``pred_text`` (str), ``pred_answer`` (structured
      answer parsed from the text), ``pred_units`` (like ``gt_units``), ``pred_instances``
      (InstanceData in original pixels: ``bboxes``, ``masks``, ``keypoints``, ``scores``, ``labels``
      (phrase text), ``units``, ``unit_fields`` (per entry, the fields its unit produced; the others
      are NaN / False fillers), ``group_ids``), ``pred_depth`` (H, W) and ``warnings`` (list[str]).
    """

    @property
    def gt_units(self) -> BaseDataElement:  # noqa: D102
        return self._gt_units

    @gt_units.setter
    def gt_units(self, value: BaseDataElement) -> None:
        self.set_field(value, '_gt_units', dtype=BaseDataElement)

    @gt_units.deleter
    def gt_units(self) -> None:
        del self._gt_units

    @property
    def pred_units(self) -> BaseDataElement:  # noqa: D102
        return self._pred_units

    @pred_units.setter
    def pred_units(self, value: BaseDataElement) -> None:
        self.set_field(value, '_pred_units', dtype=BaseDataElement)

    @pred_units.deleter
    def pred_units(self) -> None:
        del self._pred_units

    @property
    def gt_instances(self) -> InstanceData:  # noqa: D102
        return self._gt_instances

    @gt_instances.setter
    def gt_instances(self, value: InstanceData) -> None:
        self.set_field(value, '_gt_instances', dtype=InstanceData)

    @gt_instances.deleter
    def gt_instances(self) -> None:
        del self._gt_instances

    @property
    def pred_instances(self) -> InstanceData:  # noqa: D102
        return self._pred_instances

    @pred_instances.setter
    def pred_instances(self, value: InstanceData) -> None:
        self.set_field(value, '_pred_instances', dtype=InstanceData)

    @pred_instances.deleter
    def pred_instances(self) -> None:
        del self._pred_instances


SampleList = list[RefVLMDataSample]
