"""Reference fixtures for the Cascade R-CNN detector (src/detect/), from MMDetection + mmcv.

  python scripts/make_cascade_fixtures.py ops     # NMS / RoIAlign cases -> tests/fixtures/cascade/ops.json
  python scripts/make_cascade_fixtures.py model   # narrow random models -> tests/fixtures/cascade/*.safetensors
  python scripts/make_cascade_fixtures.py full --arch r50 --out DIR
                                                  # full-size intermediates on a PoseTrack frame (not committed)
  python scripts/make_cascade_fixtures.py f64 --arch r50 --out DIR
                                                  # the same model's FPN levels in float64 (context for f32 noise)

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


# --------------------------------------------------------------------------- models
# Narrow variants: MMDetection's own ResNet / ResNeXt / FPN / RPN / cascade head code at a
# fraction of the width, so that weights and intermediates fit in the repository. Stage depths
# (1, 1, 2, 1) are registered as "depth 14" in the backbones' tables.
NARROW = {
    'narrow_r': dict(type='ResNet', depth=14, base_channels=4),
    'narrow_x': dict(type='ResNeXt', depth=14, base_channels=4, groups=4, base_width=2),
}
NARROW_FPN, NARROW_FC, NARROW_SCALE = 8, 16, (240, 160)
CROP = (700, 300, 256, 192)   # x, y, w, h of the frame crop fed to the narrow models
CFG_R50 = 'configs/cascade_rcnn/cascade-rcnn_r50_fpn_20e_coco.py'


def _mmdet_cfg(rel):
    import mmdet
    from mmengine.config import Config
    return Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), '.mim', rel))


def _narrow_cfg(backbone):
    from mmdet.models.backbones.resnet import Bottleneck, ResNet
    from mmdet.models.backbones.resnext import Bottleneck as XBottleneck, ResNeXt
    ResNet.arch_settings[14] = (Bottleneck, (1, 1, 2, 1))
    ResNeXt.arch_settings[14] = (XBottleneck, (1, 1, 2, 1))
    cfg = _mmdet_cfg(CFG_R50)
    m = cfg.model
    m.backbone.update(backbone)
    m.backbone.init_cfg = None
    c = [backbone['base_channels'] * 4 << i for i in range(4)]
    m.neck.in_channels = c
    m.neck.out_channels = NARROW_FPN
    m.rpn_head.in_channels = NARROW_FPN
    m.rpn_head.feat_channels = NARROW_FPN
    m.roi_head.bbox_roi_extractor.out_channels = NARROW_FPN
    for h in m.roi_head.bbox_head:
        h.in_channels = NARROW_FPN
        h.fc_out_channels = NARROW_FC
    for p in cfg.test_dataloader.dataset.pipeline:
        if p['type'] == 'Resize':
            p['scale'] = NARROW_SCALE
    return cfg


def _frame_bgr():
    import cv2
    img = cv2.imread(FRAME)
    assert img is not None, FRAME
    return img


def _preprocess(model, img):
    import copy
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg
    pipe = copy.deepcopy(get_test_pipeline_cfg(model.cfg))
    pipe[0].type = 'mmdet.LoadImageFromNDArray'
    data = Compose(pipe)(dict(img=img, img_id=0))
    return model.data_preprocessor(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False)


RESIDUAL_GAMMA = 0.25


@torch.no_grad()
def _make_alive(model, img):
    """Random weights that still detect something: randomised BN affine + statistics measured
    on the image, output layers rescaled to a useful spread (like refenv's cascade_reference.py),
    then every parameter rounded to a float16 value so the fixture can be stored as f16."""
    from mmdet.apis import inference_detector
    from torch.nn.modules.batchnorm import _BatchNorm
    g = torch.Generator().manual_seed(1)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    for bn in bns:
        bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.2)
    if RESIDUAL_GAMMA is not None:
        from mmdet.models.backbones.resnet import Bottleneck
        for m in model.modules():
            if isinstance(m, Bottleneck):
                bn = getattr(m, m.norm3_name)
                bn.weight.mul_(RESIDUAL_GAMMA)
                bn.bias.mul_(RESIDUAL_GAMMA)
    x = _preprocess(model, img)['inputs']
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    model.backbone(torch.cat([x, x.flip(-1)]))
    for bn in bns:
        bn.momentum = 0.1
    model.eval()
    mods = dict(model.named_modules())
    targets = {'rpn_head.rpn_conv': 1.0, 'rpn_head.rpn_cls': 2.0, 'rpn_head.rpn_reg': 0.3}
    for i in range(3):
        targets[f'roi_head.bbox_head.{i}.fc_cls'] = 2.5
        targets[f'roi_head.bbox_head.{i}.fc_reg'] = 1.0
    for name, t in targets.items():       # in order: each measured after the previous fix
        outs = []
        h = mods[name].register_forward_hook(lambda m, i, o: outs.append(o.flatten()))
        inference_detector(model, img)
        h.remove()
        mods[name].weight.mul_(t / torch.cat(outs).std())
        mods[name].bias.copy_(torch.randn(mods[name].bias.shape, generator=g) * 0.1 * t)
    for v in model.state_dict().values():
        if v.is_floating_point():
            v.copy_(v.half().float())


@torch.no_grad()
def _run_traced(model, img):
    from mmdet.apis import inference_detector
    got, hooks = {}, []
    rh = model.roi_head
    orig = model.rpn_head.predict

    def rpn_predict(*a, **k):
        out = orig(*a, **k)
        got['proposals'] = torch.cat([out[0].bboxes, out[0].scores[:, None]], 1).clone()
        return out
    model.rpn_head.predict = rpn_predict
    hooks.append(model.neck.register_forward_hook(
        lambda m, i, o: got.update({f'fpn{k}': t.clone() for k, t in enumerate(o)})))
    for i in range(len(rh.bbox_head)):
        hooks.append(rh.bbox_roi_extractor[i].register_forward_hook(
            lambda m, inp, o, i=i: got.update({f'stage{i}_rois': inp[1][:, 1:].clone(),
                                                f'stage{i}_roi_feats': o.clone()})))
        hooks.append(rh.bbox_head[i].register_forward_hook(
            lambda m, inp, o, i=i: got.update({f'stage{i}_cls': o[0].clone(),
                                                f'stage{i}_deltas': o[1].clone()})))
    try:
        res = inference_detector(model, img)
    finally:
        for h in hooks:
            h.remove()
        del model.rpn_head.predict
    pi = res.pred_instances
    got['det_bboxes'] = pi.bboxes
    got['det_scores'] = pi.scores
    got['det_labels'] = pi.labels.float()
    got['img_shape'] = torch.tensor(res.metainfo['img_shape'], dtype=torch.float32)
    got['scale_factor'] = torch.tensor(res.metainfo['scale_factor'], dtype=torch.float64)
    return got


@torch.no_grad()
def _run_batch(model, imgs):
    """One test_step over several images: MMDetection pads them to the largest (then to a
    multiple of 32) and stacks them (inference_detector would run them one by one)."""
    import copy
    from mmcv.transforms import Compose
    from mmdet.utils import get_test_pipeline_cfg
    pipe = copy.deepcopy(get_test_pipeline_cfg(model.cfg))
    pipe[0].type = 'mmdet.LoadImageFromNDArray'
    pipe = Compose(pipe)
    datas = [pipe(dict(img=im, img_id=i)) for i, im in enumerate(imgs)]
    res = model.test_step(dict(inputs=[d['inputs'] for d in datas],
                               data_samples=[d['data_samples'] for d in datas]))
    got = {}
    for i, r in enumerate(res):
        pi = r.pred_instances
        got[f'batch{i}_det_bboxes'] = pi.bboxes
        got[f'batch{i}_det_scores'] = pi.scores
        got[f'batch{i}_det_labels'] = pi.labels.float()
        got[f'batch{i}_batch_input_shape'] = torch.tensor(r.metainfo['batch_input_shape'],
                                                          dtype=torch.float32)
    return got


BATCH_CROP = (900, 350, 200, 120)   # a second, smaller crop batched with CROP


def model_fixtures():
    import cv2
    from mmdet.apis import init_detector
    from safetensors.torch import save_file
    from mmengine.logging import MMLogger
    import logging
    x0, y0, w, h = CROP
    crop = np.ascontiguousarray(_frame_bgr()[y0:y0 + h, x0:x0 + w])
    rgb = torch.from_numpy(np.ascontiguousarray(crop[:, :, ::-1]))
    os.makedirs(FIX, exist_ok=True)
    # what OpenCV's resize makes of the crop (checks the Rust resize on its own)
    nh, nw = 160, 213
    resized = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    up = cv2.resize(crop[:20, :16], (61, 45), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    save_file({'image_rgb': rgb, 'resized_rgb': torch.from_numpy(np.ascontiguousarray(resized)),
               'upscaled_rgb': torch.from_numpy(np.ascontiguousarray(up))},
              os.path.join(FIX, 'frame_crop.safetensors'),
              metadata={'source': os.path.relpath(FRAME, REPO), 'crop_xywh': json.dumps(CROP)})
    for name, backbone in NARROW.items():
        cfg = _narrow_cfg(backbone)
        torch.manual_seed(0)
        model = init_detector(cfg, None, device='cpu')
        MMLogger.get_current_instance().setLevel(logging.WARNING)
        model.init_weights()
        _make_alive(model, crop)
        sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file({k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()},
                  os.path.join(FIX, f'{name}.safetensors'),
                  metadata={'config': CFG_R50, 'backbone': json.dumps(backbone),
                            'fpn': str(NARROW_FPN), 'fc': str(NARROW_FC),
                            'scale': json.dumps(NARROW_SCALE)})
        got = _run_traced(model, crop)
        keep = {k: v for k, v in got.items() if not k.endswith('roi_feats')}
        for i in range(3):   # the class logits of the first rows are enough to check the head
            keep[f'stage{i}_cls'] = got[f'stage{i}_cls'][:32]
        bx, by, bw, bh = BATCH_CROP
        second = np.ascontiguousarray(_frame_bgr()[by:by + bh, bx:bx + bw])
        keep.update(_run_batch(model, [crop, second]))
        keep['batch1_image_rgb'] = torch.from_numpy(np.ascontiguousarray(second[:, :, ::-1]))
        keep = {k: v.contiguous() for k, v in keep.items()}
        save_file(keep, os.path.join(FIX, f'{name}_ref.safetensors'))
        n = sum(v.numel() for v in sd.values())
        print(f'{name}: {n} parameters, {len(got["proposals"])} proposals, '
              f'{len(got["det_scores"])} detections, top scores {got["det_scores"][:5].tolist()}, '
              f'{int((got["det_labels"] == 0).sum())} persons; batched: '
              f'{[len(keep[f"batch{i}_det_scores"]) for i in range(2)]} detections')


FULL_CFGS = {
    'r50': 'configs/cascade_rcnn/cascade-rcnn_r50_fpn_20e_coco.py',
    'x101': 'configs/cascade_rcnn/cascade-rcnn_x101_64x4d_fpn_20e_coco.py',
}


def full_reference(arch, out):
    """The published architecture, random-initialised and calibrated on the whole 1920x1080
    PoseTrack frame (as the narrow fixtures are; refenv's own random checkpoints saturate the
    RPN on this frame: every proposal scores exactly 1.0, so their order is arbitrary), saved
    as a published-layout .pth, plus the reference intermediates on that frame."""
    import time
    from mmdet.apis import init_detector
    from safetensors.torch import save_file
    from mmengine.logging import MMLogger
    import logging
    home = os.environ.get('REFENV_HOME', os.path.expanduser('~/refenv'))
    out = out or os.path.join(home, 'out')
    os.makedirs(out, exist_ok=True)
    img = _frame_bgr()
    torch.manual_seed(0)
    model = init_detector(_mmdet_cfg(FULL_CFGS[arch]), None, device='cpu')
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    model.init_weights()
    t0 = time.perf_counter()
    _make_alive(model, img)
    print(f'{arch}: calibrated in {time.perf_counter() - t0:.0f} s')
    ckpt = os.path.join(out, f'cascade_rcnn_{arch}_vidpose_random.pth')
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    torch.save({'state_dict': sd, 'meta': {'config': FULL_CFGS[arch], 'seed': 0}}, ckpt)
    t0 = time.perf_counter()
    got = _run_traced(model, img)
    print(f'{arch}: traced inference {time.perf_counter() - t0:.1f} s, '
          f'{len(got["proposals"])} proposals, {len(got["det_scores"])} detections, '
          f'{int((got["proposals"][:, 4] == 1).sum())} proposals scoring exactly 1')
    got = {k: v.contiguous() for k, v in got.items() if not k.endswith('roi_feats')}
    got['image_rgb'] = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1]))
    path = os.path.join(out, f'cascade_{arch}_full_ref.safetensors')
    save_file(got, path)
    print('wrote', ckpt, path)


def full_f64(arch, out):
    """FPN levels of the full-size model computed in float64, to put the float32 differences
    in context (how far PyTorch's own float32 result is from it)."""
    from mmdet.apis import init_detector
    from safetensors.torch import save_file
    home = os.environ.get('REFENV_HOME', os.path.expanduser('~/refenv'))
    out = out or os.path.join(home, 'out')
    ckpt = os.path.join(out, f'cascade_rcnn_{arch}_vidpose_random.pth')
    model = init_detector(_mmdet_cfg(FULL_CFGS[arch]), ckpt, device='cpu')
    x = _preprocess(model, _frame_bgr())['inputs']
    with torch.no_grad():
        f32 = model.extract_feat(x)
        model.double()
        f64 = model.extract_feat(x.double())
    got = {}
    for i, (a, b) in enumerate(zip(f32, f64)):
        e = ((a.double() - b).abs().max() / b.abs().max()).item()
        print(f'P{i + 2}: PyTorch float32 vs float64, relative error {e:.2e}')
        got[f'fpn{i}_f64'] = b.contiguous()
    save_file(got, os.path.join(out, f'cascade_{arch}_full_f64.safetensors'))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('what', choices=['ops', 'model', 'full', 'f64'])
    ap.add_argument('--arch', default='r50')
    ap.add_argument('--out', default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.what == 'ops':
        ops_fixtures()
    elif args.what == 'model':
        model_fixtures()
    elif args.what == 'full':
        full_reference(args.arch, args.out)
    else:
        full_f64(args.arch, args.out)


if __name__ == '__main__':
    main()
