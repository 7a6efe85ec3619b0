"""PyTorch + MMDetection side of scripts/bench_cascade.sh: writes the 1333x800 frame for
vidpose (PNG, lossless), then times one `inference_detector` call on it (after loading the
checkpoint)."""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_cascade_fixtures as fx  # noqa: E402  (sets up the reference environment)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--arch', default='x101')
    ap.add_argument('--checkpoint', required=True)
    ap.add_argument('--frame-out', required=True)
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from mmdet.apis import inference_detector, init_detector
    img = cv2.resize(fx._frame_bgr(), (1333, 800), interpolation=cv2.INTER_LINEAR)
    assert args.frame_out.endswith('.png'), 'the frame is written as PNG'
    assert cv2.imwrite(args.frame_out, img)
    assert np.array_equal(cv2.imread(args.frame_out, cv2.IMREAD_COLOR), img)
    model = init_detector(fx._mmdet_cfg(fx.FULL_CFGS[args.arch]), args.checkpoint, device='cpu')
    with torch.no_grad():
        t0 = time.perf_counter()
        res = inference_detector(model, img)
        dt = time.perf_counter() - t0
    print(json.dumps(dict(arch=args.arch, image=[1333, 800], threads=torch.get_num_threads(),
                          inference_s=round(dt, 3), detections=len(res.pred_instances))))


if __name__ == '__main__':
    main()
