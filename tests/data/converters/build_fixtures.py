# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Regenerate the converter fixtures: synthetic content in each source's real file format.

Run from the repository root: ``python tests/data/converters/build_fixtures.py``. The files are
committed; the converter tests read them and never call this script. Images are tiny (≤ 50 px).
"""
from __future__ import annotations

import json
import os
import os.path as osp
import pickle

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

HERE = osp.dirname(osp.abspath(__file__))


def rle(mask: np.ndarray) -> dict:
    out = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(v) for v in out['size']], 'counts': out['counts'].decode('ascii')}


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (counts list, column-major, starting with background)."""
    flat = mask.ravel(order='F').astype(np.uint8)
    runs = np.diff(np.r_[0, np.flatnonzero(np.diff(flat)) + 1, flat.size]).tolist()
    return {'size': list(mask.shape), 'counts': ([0] if flat[0] else []) + runs}


def box_mask(h: int, w: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y1:y2, x1:x2] = True
    return m


def dump(obj, *parts: str) -> None:
    path = osp.join(HERE, *parts)
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f)


def rect(x1, y1, x2, y2) -> list[float]:
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def coco() -> None:
    crowd_uncompressed = uncompressed_rle(box_mask(30, 40, 30, 0, 40, 10))
    instances = {
        'info': {'description': 'fixture'}, 'licenses': [],
        'images': [
            {'id': 1, 'file_name': '000000000001.jpg', 'width': 40, 'height': 30},
            {'id': 2, 'file_name': '000000000002.jpg', 'width': 32, 'height': 32},
            {'id': 3, 'file_name': '000000000003.jpg', 'width': 16, 'height': 16}],
        'categories': [{'id': 1, 'name': 'person', 'supercategory': 'person'},
                       {'id': 3, 'name': 'car', 'supercategory': 'vehicle'},
                       {'id': 18, 'name': 'dog', 'supercategory': 'animal'}],
        'annotations': [
            {'id': 101, 'image_id': 1, 'category_id': 1, 'iscrowd': 0, 'area': 180.0,
             'bbox': [2.0, 2.0, 10.0, 18.0], 'segmentation': [rect(2, 2, 12, 20)]},
            {'id': 102, 'image_id': 1, 'category_id': 1, 'iscrowd': 0, 'area': 80.0,
             'bbox': [20.0, 5.0, 8.0, 10.0], 'segmentation': [rect(20, 5, 28, 15)]},
            {'id': 103, 'image_id': 1, 'category_id': 1, 'iscrowd': 1, 'area': 100.0,
             'bbox': [30.0, 0.0, 10.0, 10.0], 'segmentation': crowd_uncompressed},
            {'id': 104, 'image_id': 1, 'category_id': 18, 'iscrowd': 0, 'area': 100.0,
             'bbox': [25.0, 18.0, 10.0, 10.0], 'segmentation': [rect(25, 18, 35, 28)]},
            {'id': 201, 'image_id': 2, 'category_id': 3, 'iscrowd': 0, 'area': 60.0,
             'bbox': [20.0, 20.0, 12.5, 5.0], 'segmentation': [rect(20, 20, 32, 25)]},
            {'id': 202, 'image_id': 2, 'category_id': 18, 'iscrowd': 0, 'area': 0.0,
             'bbox': [1.0, 1.0, 5.0, 5.0], 'segmentation': [[1.0, 1.0, 6.0, 6.0]]},
            {'id': 203, 'image_id': 2, 'category_id': 1, 'iscrowd': 0, 'area': 0.0,
             'bbox': [3.0, 3.0, 0.0, 4.0], 'segmentation': [rect(3, 3, 4, 7)]}]}
    dump(instances, 'coco', 'instances_val2017.json')
    kp_names = ['nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
                'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
                'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle']
    kpts1 = [0] * 51
    kpts1[0:3], kpts1[15:18], kpts1[18:21] = [6, 4, 2], [4, 8, 1], [9, 8, 2]
    kpts4 = [0] * 51
    kpts4[0:3] = [22, 6, 2]
    keypoints = {
        'info': {'description': 'fixture'}, 'licenses': [],
        'images': [{'id': 1, 'file_name': '000000000001.jpg', 'width': 40, 'height': 30},
                   {'id': 2, 'file_name': '000000000002.jpg', 'width': 32, 'height': 32}],
        'categories': [{'id': 1, 'name': 'person', 'supercategory': 'person',
                        'keypoints': kp_names, 'skeleton': [[16, 14], [14, 12], [6, 7]]}],
        'annotations': [
            {'id': 11, 'image_id': 1, 'category_id': 1, 'iscrowd': 0, 'num_keypoints': 3,
             'area': 180.0, 'bbox': [2.0, 2.0, 10.0, 18.0], 'keypoints': kpts1,
             'segmentation': [rect(2, 2, 12, 20)]},
            {'id': 12, 'image_id': 1, 'category_id': 1, 'iscrowd': 0, 'num_keypoints': 0,
             'area': 50.0, 'bbox': [30.0, 20.0, 5.0, 5.0], 'keypoints': [0] * 51,
             'segmentation': [rect(30, 20, 35, 25)]},
            {'id': 13, 'image_id': 1, 'category_id': 1, 'iscrowd': 1, 'num_keypoints': 0,
             'area': 30.0, 'bbox': [0.0, 25.0, 10.0, 5.0], 'keypoints': [0] * 51,
             'segmentation': crowd_uncompressed},
            {'id': 14, 'image_id': 1, 'category_id': 1, 'iscrowd': 0, 'num_keypoints': 1,
             'area': 80.0, 'bbox': [20.0, 5.0, 8.0, 10.0], 'keypoints': kpts4,
             'segmentation': [rect(20, 5, 28, 15)]},
            {'id': 21, 'image_id': 2, 'category_id': 1, 'iscrowd': 0, 'num_keypoints': 0,
             'area': 50.0, 'bbox': [1.0, 1.0, 5.0, 5.0], 'keypoints': [0] * 51,
             'segmentation': [rect(1, 1, 6, 6)]}]}
    dump(keypoints, 'coco', 'person_keypoints_val2017.json')


def refcoco() -> None:
    instances = {
        'images': [{'id': 581857, 'file_name': 'COCO_train2014_000000581857.jpg', 'width': 48,
                    'height': 36, 'license': 1},
                   {'id': 42, 'file_name': 'COCO_train2014_000000000042.jpg', 'width': 20,
                    'height': 20, 'license': 1}],
        'categories': [{'id': 1, 'name': 'person', 'supercategory': 'person'},
                       {'id': 18, 'name': 'dog', 'supercategory': 'animal'}],
        'annotations': [
            {'id': 1001, 'image_id': 581857, 'category_id': 1, 'iscrowd': 0, 'area': 240.0,
             'bbox': [4.5, 6.0, 12.0, 20.0], 'segmentation': [rect(4.5, 6, 16.5, 26)]},
            {'id': 1002, 'image_id': 581857, 'category_id': 1, 'iscrowd': 0, 'area': 100.0,
             'bbox': [30.0, 10.0, 10.0, 10.0], 'segmentation': [rect(30, 10, 40, 20)]},
            {'id': 1003, 'image_id': 42, 'category_id': 18, 'iscrowd': 0, 'area': 0.0,
             'bbox': [2.0, 2.0, 6.0, 6.0], 'segmentation': [[2.0, 2.0, 8.0, 8.0]]},
            {'id': 1004, 'image_id': 581857, 'category_id': 18, 'iscrowd': 1, 'area': 36.0,
             'bbox': [40.0, 30.0, 6.0, 6.0], 'segmentation': rle(box_mask(36, 48, 40, 30, 46, 36))},
            {'id': 1005, 'image_id': 581857, 'category_id': 18, 'iscrowd': 0, 'area': 36.0,
             'bbox': [20.0, 28.0, 6.0, 6.0], 'segmentation': [rect(20, 28, 26, 34)]}]}

    def sent(sid, text):
        return {'tokens': text.split(), 'raw': text.upper(), 'sent_id': sid, 'sent': text}

    refs = [
        {'sent_ids': [0, 1], 'file_name': 'COCO_train2014_000000581857_1001.jpg',
         'ann_id': 1001, 'ref_id': 7, 'image_id': 581857, 'split': 'val', 'category_id': 1,
         'sentences': [sent(0, 'the woman in the red coat'), sent(1, 'left  person')]},
        {'sent_ids': [2], 'file_name': 'COCO_train2014_000000581857_1002.jpg', 'ann_id': 1002,
         'ref_id': 8, 'image_id': 581857, 'split': 'train', 'category_id': 1,
         'sentences': [sent(2, 'right guy')]},
        {'sent_ids': [3, 4], 'file_name': 'COCO_train2014_000000000042_1003.jpg',
         'ann_id': 1003, 'ref_id': 9, 'image_id': 42, 'split': 'val', 'category_id': 18,
         'sentences': [sent(3, 'small dog'), {'tokens': [], 'raw': '', 'sent_id': 4,
                                               'sent': ''}]}]
    dump(instances, 'refcoco', 'instances.json')
    with open(osp.join(HERE, 'refcoco', 'refs(unc).p'), 'wb') as f:
        pickle.dump(refs, f, protocol=2)
    grefs = [
        {'sent_ids': [10], 'file_name': 'COCO_train2014_000000581857_1001.jpg',
         'ann_id': [1001, 1002], 'ref_id': 0, 'image_id': 581857, 'split': 'val',
         'category_id': [1, 1], 'no_target': False, 'sentences': [sent(10, 'two people')]},
        {'sent_ids': [11, 12], 'file_name': 'COCO_train2014_000000581857.jpg', 'ann_id': [-1],
         'ref_id': 1, 'image_id': 581857, 'split': 'val', 'category_id': [-1],
         'no_target': True, 'sentences': [sent(11, 'the cat'), sent(12, 'a horse')]},
        {'sent_ids': [13], 'file_name': 'COCO_train2014_000000581857_1005.jpg', 'ann_id': 1005,
         'ref_id': 2, 'image_id': 581857, 'split': 'val', 'category_id': 18,
         'no_target': False, 'sentences': [sent(13, 'the dog')]},
        {'sent_ids': [14], 'file_name': 'COCO_train2014_000000581857_1004.jpg',
         'ann_id': [1004], 'ref_id': 3, 'image_id': 581857, 'split': 'val', 'category_id': [18],
         'no_target': False, 'sentences': [sent(14, 'dogs in the corner')]},
        {'sent_ids': [15], 'file_name': 'COCO_train2014_000000581857_1002.jpg',
         'ann_id': [1002], 'ref_id': 4, 'image_id': 581857, 'split': 'train',
         'category_id': [1], 'no_target': False, 'sentences': [sent(15, 'right guy')]}]
    dump(instances, 'grefcoco', 'instances.json')
    dump(grefs, 'grefcoco', 'grefs(unc).json')


def flickr30k() -> None:
    root = osp.join(HERE, 'flickr30k')
    os.makedirs(osp.join(root, 'Annotations'), exist_ok=True)
    os.makedirs(osp.join(root, 'Sentences'), exist_ok=True)
    xml = """<annotation>
<filename>{name}.jpg</filename>
<size>
<width>{w}</width>
<height>{h}</height>
<depth>3</depth>
</size>
{objects}</annotation>
"""
    box = ('<object>\n{names}<bndbox>\n<xmin>{0}</xmin>\n<ymin>{1}</ymin>\n<xmax>{2}</xmax>\n'
           '<ymax>{3}</ymax>\n</bndbox>\n</object>\n')
    nobox = '<object>\n<name>{0}</name>\n<nobndbox>1</nobndbox>\n<scene>{1}</scene>\n</object>\n'
    objects = (box.format(3, 4, 20, 30, names='<name>18</name>\n')
               + box.format(25, 5, 40, 30, names='<name>18</name>\n')
               + box.format(10, 30, 48, 40, names='<name>19</name>\n<name>22</name>\n')
               + nobox.format(21, 1) + box.format(0, 0, 0, 0, names='<name>23</name>\n'))
    with open(osp.join(root, 'Annotations', '1000.xml'), 'w') as f:
        f.write(xml.format(name=1000, w=50, h=40, objects=objects))
    with open(osp.join(root, 'Sentences', '1000.txt'), 'w') as f:
        f.write('[/EN#18/people Two children] play on [/EN#19/other a blue mat] in '
                '[/EN#21/scene a gym] .\n'
                '[/EN#0/notvisual Someone] watches [/EN#18/people the kids] '
                '[/EN#22/bodyparts/other their mat] .\n'
                '[/EN#21/scene A gym] with [/EN#23/other a dot] .\n')
    with open(osp.join(root, 'Annotations', '1001.xml'), 'w') as f:
        f.write(xml.format(name=1001, w=20, h=20, objects=nobox.format(5, 0)))
    with open(osp.join(root, 'Sentences', '1001.txt'), 'w') as f:
        f.write('[/EN#5/people A man] is somewhere .\n')
    with open(osp.join(root, 'test.txt'), 'w') as f:
        f.write('1000\n1001\n1002\n')


def grandf() -> None:
    h, w = 24, 32
    man_a, man_b = box_mask(h, w, 1, 2, 6, 12), box_mask(h, w, 6, 2, 9, 12)
    horse, beach = box_mask(h, w, 10, 8, 20, 16), box_mask(h, w, 0, 18, 32, 24)
    entries = [
        {'file_name': 'sa_10001.jpg', 'height': h, 'width': w,
         'caption': 'A man rides a horse on the beach.',
         'groundings': {'A man': {'token_positives': [0, 5], 'rle_masks': [rle(man_a), rle(man_b)]},
                        'a horse': {'token_positives': [12, 19], 'rle_masks': [rle(horse)]},
                        'the beach': {'token_positives': [90, 99], 'rle_masks': [rle(beach)]}}},
        {'file_name': 'sa_10002.jpg', 'height': h, 'width': w,
         'caption': '"Two dogs play near a bench."',
         'groundings': {'Two dogs': {'token_positives': [1, 9], 'rle_masks': [rle(horse)]},
                        'a bench': {'token_positives': [20, 27],
                                    'rle_masks': [rle(np.zeros((h, w), bool))]}}},
        {'file_name': 'sa_10003.jpg', 'height': h, 'width': w, 'caption': 'Nothing here.',
         'groundings': {}}]
    dump(entries, 'grandf', 'GranDf_HA_GCG_train.json')
    flickr = {
        'images': [{'id': 5, 'file_name': '5_3000.jpg', 'height': h, 'width': w,
                    'caption': 'Two men stand by a car.'}],
        'annotations': [
            {'id': 1, 'image_id': 5, 'category_id': 1, 'iscrowd': 0, 'area': 50,
             'bbox': [1, 2, 5, 10], 'tokens_positive': [[0, 8]], 'sam_mask': rle(man_a)},
            {'id': 2, 'image_id': 5, 'category_id': 1, 'iscrowd': 0, 'area': 30,
             'bbox': [6, 2, 3, 10], 'tokens_positive': [[0, 8]], 'sam_mask': rle(man_b)},
            {'id': 3, 'image_id': 5, 'category_id': 1, 'iscrowd': 0, 'area': 80,
             'bbox': [10, 8, 10, 8], 'tokens_positive': [[19, 22]], 'sam_mask': rle(horse)}],
        'categories': [{'id': 1, 'name': 'object'}]}
    dump(flickr, 'grandf', 'flickr_mergedGT_GCG_train.json')


def coco_interactive() -> None:
    h, w = 20, 30
    obj = box_mask(h, w, 4, 3, 14, 15)
    point = np.zeros((h, w), bool)
    point[9, 8] = True
    scribble = np.zeros((h, w), bool)
    for k in range(8):
        scribble[5 + k, 6 + k] = True
    ann = {'id': 900, 'category_id': 18, 'iscrowd': 0, 'area': float(obj.sum()),
           'bbox': [4.0, 3.0, 10.0, 12.0], 'segmentation': [rect(4, 3, 14, 15)],
           'point_visual_prompt_mask': rle(point),
           'box_visual_prompt_mask': rle(box_mask(h, w, 3, 2, 15, 16)),
           'scribble_visual_prompt_mask': rle(scribble),
           'mask_visual_prompt_mask': rle(box_mask(h, w, 5, 4, 12, 13))}
    ann2 = dict(ann, id=901, category_id=1, segmentation=rle(box_mask(h, w, 18, 2, 28, 18)),
                scribble_visual_prompt_mask=rle(np.zeros((h, w), bool)),
                point_visual_prompt_mask=rle(box_mask(h, w, 20, 6, 22, 8)))
    crowd = dict(ann, id=902, iscrowd=1)
    data = [{'image': '000000000139.jpg', 'new_img_id': 139,
             'image_info': {'file_name': '000000000139.jpg', 'height': h, 'width': w, 'id': 139},
             'anns': [ann, ann2, crowd]}]
    dump(data, 'coco_interactive', 'coco_interactive_val_psalm.json')


def nyu() -> None:
    root = osp.join(HERE, 'nyu')
    rng = np.random.default_rng(0)
    for scene, idx, depth_kind in (('bathroom', 45, 'png16'), ('kitchen_0028b', 100, 'png8'),
                                   ('office', 7, 'png16')):
        os.makedirs(osp.join(root, scene), exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).save(
            osp.join(root, scene, f'rgb_{idx:05d}.jpg'))
        depth = rng.integers(500, 4000, (6, 8)).astype(np.uint16)
        img = Image.fromarray(depth) if depth_kind == 'png16' else Image.fromarray(
            (depth // 16).astype(np.uint8))
        img.save(osp.join(root, scene, f'sync_depth_{idx:05d}.png'))
    with open(osp.join(root, 'nyudepthv2_test_files_with_gt.txt'), 'w') as f:
        f.write('bathroom/rgb_00045.jpg bathroom/sync_depth_00045.png 518.8579\n'
                '/kitchen_0028b/rgb_00100.jpg /kitchen_0028b/sync_depth_00100.png 518.8579\n'
                'office/rgb_00007.jpg None 518.8579\n'
                'office/rgb_00099.jpg office/sync_depth_00099.png 518.8579\n'
                '/office/rgb_00007.jpg /office/sync_depth_00007.png 518.8579\n')


def coco_captions() -> None:
    images = [{'id': 139, 'file_name': '000000000139.jpg', 'width': 30, 'height': 20},
              {'id': 285, 'file_name': '000000000285.jpg', 'width': 40, 'height': 30}]
    annotations = [
        {'id': 1, 'image_id': 139, 'caption': 'A dog sits next to a red chair. '},
        {'id': 2, 'image_id': 139, 'caption': 'A small brown dog in a living room.'},
        {'id': 3, 'image_id': 285, 'caption': 'A large bear standing in the grass'},
        {'id': 4, 'image_id': 285, 'caption': '   '},
        {'id': 5, 'image_id': 999, 'caption': 'An image that is not listed.'},
    ]
    dump({'info': {}, 'images': images, 'annotations': annotations},
         'coco', 'captions_val2017.json')


def llava() -> None:
    root = osp.join(HERE, 'llava')
    os.makedirs(osp.join(root, 'coco', 'train2017'), exist_ok=True)
    Image.fromarray(np.full((12, 16, 3), 128, np.uint8)).save(
        osp.join(root, 'coco', 'train2017', '000000033471.jpg'))
    entries = [
        {'id': '000000033471', 'image': 'coco/train2017/000000033471.jpg', 'conversations': [
            {'from': 'human', 'value': '<image>\nWhat are the colors of the bus in the image?'},
            {'from': 'gpt', 'value': 'The bus in the image is white and red.'},
            {'from': 'human', 'value': 'What feature can be seen on the back of the bus?'},
            {'from': 'gpt', 'value': 'The back of the bus features an advertisement.'}]},
        {'id': 'sharegpt-1', 'conversations': [
            {'from': 'human', 'value': 'Write a haiku about autumn.'},
            {'from': 'gpt', 'value': 'Leaves drift on cold wind'}]},
        {'id': 'gqa-404', 'image': 'gqa/images/404.jpg', 'conversations': [
            {'from': 'human', 'value': '<image>\nIs the sky blue?'},
            {'from': 'gpt', 'value': 'Yes.'}]},
        {'id': 'broken', 'image': 'coco/train2017/000000033471.jpg', 'conversations': [
            {'from': 'gpt', 'value': 'An answer without a question.'}]},
    ]
    dump(entries, 'llava', 'llava_v1_5_mix665k.json')


if __name__ == '__main__':
    coco()
    coco_captions()
    llava()
    refcoco()
    flickr30k()
    grandf()
    coco_interactive()
    nyu()
