"""Reference fixtures for the Cascade R-CNN detector (src/detect/), from MMDetection + mmcv.

  python scripts/make_cascade_fixtures.py ops     # NMS / RoIAlign cases -> tests/fixtures/cascade/ops.json
  python scripts/make_cascade_fixtures.py model   # narrow random models -> tests/fixtures/cascade/*.safetensors
  python scripts/make_cascade_fixtures.py full --arch r50 --out DIR
                                                  # full-size intermediates on a PoseTrack frame (not committed)

Run with the reference environment's interpreter (../shared/refenv, ~/refenv/venv/bin/python).
The ops use the genuine mmcv CPU kernels (build/mmcv_mini_ext), not a stand-in.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
REFENV = os.environ.get('VIDPOSE_REFENV_SRC', os.path.join(REPO, '..', 'shared', 'refenv'))
sys.path.insert(0, REFENV)
import refenv_compat  # noqa: E402

refenv_compat.setup(verbose=False)

import numpy as np  # noqa: E402
import torch  # noqa: E402

FIX = os.path.join(REPO, 'tests', 'fixtures', 'cascade')
FRAME = os.path.join(REPO, '..', 'shared', 'data', 'posetrack18', 'images', 'val',
                     '012834_mpii_test', '000000.jpg')


# ----------------------------------------------------------------------------- ops
def ops_fixtures():
    mini = refenv_compat.load_mini_ext()
    if mini is None:
        sys.exit('mmcv CPU kernels missing: run ../shared/refenv/build_mmcv_mini_ext.py')
    g = torch.Generator().manual_seed(7)
    nms_cases = []

    def add_nms(name, boxes, scores, thr):
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        scores = torch.as_tensor(scores, dtype=torch.float32)
        keep = mini.nms(boxes, scores, float(thr), 0)
        nms_cases.append(dict(name=name, boxes=boxes.tolist(), scores=scores.tolist(),
                              iou_threshold=thr, keep=keep.tolist()))

    for i, (n, thr) in enumerate([(50, 0.5), (200, 0.7), (200, 0.3)]):
        xy = torch.rand(n, 2, generator=g) * 100
        wh = torch.rand(n, 2, generator=g) * 30 + 0.5
        add_nms(f'random_{i}', torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g), thr)
    # ties: scores drawn from 4 values, many identical boxes
    xy = torch.randint(0, 20, (120, 2), generator=g).float()
    wh = torch.randint(1, 15, (120, 2), generator=g).float()
    add_nms('ties', torch.cat([xy, xy + wh], 1),
            torch.randint(0, 4, (120,), generator=g).float() / 4, 0.5)
    add_nms('exact_half', [[0, 0, 3, 1], [1, 0, 4, 1], [2, 0, 5, 1]], [0.9, 0.8, 0.7], 0.5)
    add_nms('degenerate', [[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 0, 10], [0, 0, 1, 10],
                           [2, 2, 1, 1]], [0.5, 0.4, 0.3, 0.2, 0.1], 0.3)
    add_nms('empty', torch.zeros(0, 4), torch.zeros(0), 0.5)

    # RoIAlign: random features, boxes inside, at/over the borders, tiny and empty
    feats = torch.randn(2, 3, 13, 17, generator=g)
    rois = [[0, 0, 0, 17 * 4, 13 * 4], [1, 3.3, 5.1, 40.7, 30.2], [0, -10, -6, 20, 15],
            [1, 50, 40, 90, 70], [0, 60, 45, 68, 52], [1, 10, 10, 10.5, 10.25],
            [0, 12, 12, 12, 12], [1, 0, 0, 0, 30], [0, -8, -8, -2, -2], [1, 67.9, 51.9, 68, 52],
            [0, 1, 2, 200, 150]]
    for _ in range(8):
        xy = torch.rand(2, generator=g) * torch.tensor([70., 50.])
        wh = torch.rand(2, generator=g) * 60
        b = float(torch.randint(0, 2, (1,), generator=g))
        rois.append([b] + xy.tolist() + (xy + wh).tolist())
    rois_t = torch.tensor(rois, dtype=torch.float32)
    ra_cases = []
    for scale, sampling in ((0.25, 0), (1.0, 0), (0.125, 2)):
        if True:
            out = torch.zeros(len(rois), 3, 7, 7)
            ay, ax = torch.zeros_like(out), torch.zeros_like(out)
            mini.roi_align_forward(feats, rois_t, out, ay, ax, 7, 7, scale, sampling, 1, True)
            ra_cases.append(dict(spatial_scale=scale, sampling_ratio=sampling,
                                 output=out.flatten().tolist()))
    # torch's CPU sort (descending, not stable) on tie-heavy scores: mmcv's NMS and
    # MMDetection's per-level top-k order equal scores this way
    sort_cases = []
    for n in (5, 16, 17, 40, 300, 3000):
        sc = torch.randint(0, 6, (n,), generator=g).float() / 8
        sort_cases.append(dict(scores=sc.tolist(), order=torch.sort(sc, 0, True)[1].tolist()))
    data = dict(sort_desc=sort_cases, source='mmcv CPU kernels nms / roi_align_forward (avg, aligned)',
                nms=nms_cases,
                roi_align=dict(features_shape=list(feats.shape), features=feats.flatten().tolist(),
                               rois=rois_t.tolist(), cases=ra_cases))
    os.makedirs(FIX, exist_ok=True)
    with open(os.path.join(FIX, 'ops.json'), 'w') as f:
        json.dump(data, f)
    print('wrote', os.path.join(FIX, 'ops.json'))


def model_fixtures():
    raise NotImplementedError


def full_reference(arch, out):
    raise NotImplementedError


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('what', choices=['ops', 'model', 'full'])
    ap.add_argument('--arch', default='r50')
    ap.add_argument('--out', default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.what == 'ops':
        ops_fixtures()
    elif args.what == 'model':
        model_fixtures()
    else:
        full_reference(args.arch, args.out)


if __name__ == '__main__':
    main()
