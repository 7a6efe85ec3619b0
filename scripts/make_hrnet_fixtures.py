"""Reference outputs of MMPose 1.3.2 HRNet top-down for vidpose's parity tests.

Two modes, both with deterministic random weights saved in the published
MMPose 0.x key layout (`backbone.*`, `keypoint_head.final_layer.*`):

  small (default): a narrow, shallow HRNet (stage-1 bottleneck width 8, branch
      widths 4/8/16/32 (FIXTURE_WIDTH), one block per branch, 1/2/2 modules in
      stages 2-4, input 128x96) on a quarter-resolution cut-out of a real
      PoseTrack18 frame; weights rounded to float16-exact values, so that the
      float16 copies the tests write (legacy .pth with 0.x keys, safetensors
      with 1.x keys: tests/common) hold exactly the same numbers.  Written to
      tests/fixtures/hrnet/ and committed (about 1.1 MB):
        frame.png                 BGR->RGB pixels both sides use (cv2 decode, resize,
                                  cut), stored losslessly
        hrnet_w4_zip.pth          torch.save zip format, {'state_dict', 'meta'}
        reference.json            boxes, centre/scale, keypoints and scores
                                  (flip test on/off, DARK decoding)
        reference.safetensors     uint8 crops, heatmaps (no flip, flip-averaged)
        dark_synthetic.safetensors  Gaussian-blob heatmaps and MMPose's DARK decoding
      Checkpoint formats themselves (dtypes, views, wrappers) are tested on the
      tiny files of scripts/make_checkpoint_fixtures.py.

  --full w32|w48: the seed architectures at their real input size (256x192,
      384x288) on the full 1920x1080 frame with its ground-truth boxes; written
      to --out (not committed).  scripts/parity_hrnet_full.sh runs it and the
      Rust comparison.

Run with the reference environment: ~/refenv/venv/bin/python scripts/make_hrnet_fixtures.py
"""
import argparse
import json
import os
import sys

REFENV_SRC = os.environ.get('REFENV_SRC', '/work/shared/refenv')
sys.path.insert(0, REFENV_SRC)
import refenv_compat  # noqa: E402

refenv_compat.setup()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import Compose, pseudo_collate  # noqa: E402
from torch.nn.modules.batchnorm import _BatchNorm  # noqa: E402

import mmpose  # noqa: E402
from mmpose.apis import inference_topdown, init_model  # noqa: E402
from mmpose.codecs import MSRAHeatmap  # noqa: E402

WIDTH = int(os.environ.get('FIXTURE_WIDTH', 4))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = '/work/shared/data/posetrack18'
FRAME = 'images/val/009473_mpii_test/000000.jpg'
ANN = 'annotations/val/009473_mpii_test.json'
CFG_DIR = os.path.join(os.path.dirname(mmpose.__file__), '.mim', 'configs',
                       'body_2d_keypoint', 'topdown_heatmap', 'posetrack18')
CFG_W32 = 'td-hm_hrnet-w32_8xb64-20e_posetrack18-256x192.py'
CFG_W48 = 'td-hm_hrnet-w48_8xb64-20e_posetrack18-384x288.py'


def make_config(base, stage1=None, width=None, input_size=None, shallow=False):
    """Load a PoseTrack18 HRNet config; optionally narrow it / resize input.

    The config's `codec` dict is copied into the head and the pipeline when the
    file is parsed, so every copy is patched."""
    cfg = Config.fromfile(os.path.join(CFG_DIR, base))
    extra = cfg.model.backbone.extra
    if stage1 is not None:
        extra.stage1.num_channels = (stage1,)
    if width is not None:
        for s, n in (('stage2', 2), ('stage3', 3), ('stage4', 4)):
            extra[s].num_channels = tuple(width * 2**i for i in range(n))
        cfg.model.head.in_channels = width
    if shallow:
        # one block per branch; two modules in stages 3 and 4 keep both the
        # all-outputs module and the last (highest-resolution only) one
        extra.stage1.num_blocks = (1,)
        for s, n, m in (('stage2', 2, 1), ('stage3', 3, 2), ('stage4', 4, 2)):
            extra[s].num_blocks = (1,) * n
            extra[s].num_modules = m
    if input_size is not None:
        w, h = input_size
        hm = (w // 4, h // 4)
        cfg.codec.input_size = (w, h)
        cfg.codec.heatmap_size = hm
        cfg.model.head.decoder.input_size = (w, h)
        cfg.model.head.decoder.heatmap_size = hm
        for t in cfg.test_dataloader.dataset.pipeline:
            if t['type'] == 'TopdownAffine':
                t['input_size'] = (w, h)
    return cfg


def crops_batch(model, img, bboxes):
    """MMPose's own test pipeline on an in-memory BGR image, as inference_topdown."""
    pipeline = Compose(model.cfg.test_dataloader.dataset.pipeline)
    data = []
    for b in bboxes:
        info = dict(img=img, bbox=np.asarray(b, np.float32)[None],
                    bbox_score=np.ones(1, np.float32))
        info.update(model.dataset_meta)
        data.append(pipeline(info))
    return pseudo_collate(data)


@torch.no_grad()
def randomise(model, img, seed):
    """Random BN affine parameters, then running statistics estimated in train
    mode on crops of the image, so that BN folding is exercised with
    non-trivial mean/var and activations keep a sane range."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    for bn in bns:
        bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.2)
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    rng = np.random.default_rng(seed + 1)
    h, w = img.shape[:2]
    for _ in range(2):
        x1 = rng.uniform(0, w * 0.7, 8)
        y1 = rng.uniform(0, h * 0.7, 8)
        bw = rng.uniform(w * 0.1, w * 0.5, 8)
        bh = rng.uniform(h * 0.2, h * 0.8, 8)
        boxes = np.stack([x1, y1, x1 + bw, y1 + bh], 1)
        batch = crops_batch(model, img, boxes)
        data = model.data_preprocessor(batch, False)
        model.head(model.backbone(data['inputs']))
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


@torch.no_grad()
def round_to_half(model):
    for v in model.state_dict().values():
        if v.is_floating_point():
            v.copy_(v.half().float())


def gt_boxes():
    ann = json.load(open(os.path.join(DATA, ANN)))
    img_id = next(i['id'] for i in ann['images'] if i['file_name'] == FRAME)
    return [a['bbox'] for a in ann['annotations']
            if a['image_id'] == img_id and a.get('bbox')]


def write_png(path, bgr):
    """Lossless: the test reads back exactly these pixels."""
    assert cv2.imwrite(path, bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert np.array_equal(cv2.imread(path, cv2.IMREAD_COLOR), bgr)


def to_image(kp_in, input_size, center, scale):
    """Input-space keypoints to image pixels, as MMPose's TopdownPoseEstimator."""
    return kp_in / np.asarray(input_size) * scale + center - 0.5 * scale


def run_reference(model, img, boxes, out_dir):
    model.test_cfg['output_heatmaps'] = True
    model.test_cfg['flip_test'] = True
    res_flip = inference_topdown(model, img, np.asarray(boxes, np.float32), bbox_format='xyxy')
    model.test_cfg['flip_test'] = False
    res_plain = inference_topdown(model, img, np.asarray(boxes, np.float32), bbox_format='xyxy')
    batch = crops_batch(model, img, boxes)
    codec = model.cfg.codec
    dark = MSRAHeatmap(input_size=codec.input_size, heatmap_size=codec.heatmap_size,
                       sigma=codec.sigma, unbiased=True)
    insts = []
    for rf, rp, ds in zip(res_flip, res_plain, batch['data_samples']):
        c = ds.metainfo['input_center']
        s = ds.metainfo['input_scale']
        inst = dict(bbox_xyxy=rf.pred_instances.bboxes[0].tolist(),
                    input_center=c.tolist(), input_scale=s.tolist())
        for tag, r in (('flip', rf), ('noflip', rp)):
            inst[f'keypoints_{tag}'] = r.pred_instances.keypoints[0].tolist()
            inst[f'scores_{tag}'] = r.pred_instances.keypoint_scores[0].tolist()
            # decode() blurs and logs its input in place: give it a copy
            kp, sc = dark.decode(r.pred_fields.heatmaps.numpy().copy())
            inst[f'keypoints_dark_{tag}'] = to_image(kp[0], codec.input_size, c, s).tolist()
            inst[f'scores_dark_{tag}'] = sc[0].tolist()
        insts.append(inst)
    ref = dict(
        mmpose_version=mmpose.__version__, torch_version=torch.__version__,
        frame=FRAME,
        input_size=list(codec.input_size), heatmap_size=list(codec.heatmap_size),
        sigma=codec.sigma,
        stage1_channels=model.cfg.model.backbone.extra.stage1.num_channels[0],
        widths=list(model.cfg.model.backbone.extra.stage4.num_channels),
        num_modules=[model.cfg.model.backbone.extra[f'stage{i}'].num_modules for i in range(1, 5)],
        num_blocks=[model.cfg.model.backbone.extra[f'stage{i}'].num_blocks[0] for i in range(1, 5)],
        flip_indices=model.dataset_meta['flip_indices'],
        instances=insts)
    with open(os.path.join(out_dir, 'reference.json'), 'w') as f:
        json.dump(ref, f, indent=1)
    from safetensors.torch import save_file
    save_file({
        'crops_bgr_uint8': torch.stack(batch['inputs']).contiguous(),
        'heatmaps_noflip': torch.stack([r.pred_fields.heatmaps for r in res_plain]).contiguous(),
        'heatmaps_flip': torch.stack([r.pred_fields.heatmaps for r in res_flip]).contiguous(),
    }, os.path.join(out_dir, 'reference.safetensors'))


def write_dark_synthetic(out_dir):
    """DARK decoding of well-conditioned heatmaps (a Gaussian blob per channel at a sub-pixel
    centre, plus a little noise): random network heatmaps often have near-singular Hessians
    where DARK's Newton step is dominated by rounding, so this checks the decoder itself."""
    from safetensors.numpy import save_file
    rng = np.random.default_rng(7)
    k, h, w, sigma = 17, 32, 24, 2.0
    ys, xs = np.mgrid[0:h, 0:w]
    cx = rng.uniform(3, w - 4, k)
    cy = rng.uniform(3, h - 4, k)
    amp = rng.uniform(0.3, 1.0, k)
    hm = amp[:, None, None] * np.exp(-((xs - cx[:, None, None])**2 + (ys - cy[:, None, None])**2)
                                      / (2 * sigma**2))
    hm = (hm + rng.normal(0, 0.005, hm.shape)).astype(np.float32)
    codec = MSRAHeatmap(input_size=(96, 128), heatmap_size=(w, h), sigma=2, unbiased=True)
    kp, sc = codec.decode(hm.copy())
    save_file({'heatmaps': hm, 'keypoints_input_space': kp[0].astype(np.float32),
               'scores': sc[0].astype(np.float32)},
              os.path.join(out_dir, 'dark_synthetic.safetensors'))


def save_checkpoint(model, out_dir, stem):
    # MMPose 1.x names the head `head.`; the published 0.x files say `keypoint_head.`
    sd = {('keypoint_head.' + k[5:] if k.startswith('head.') else k): v.detach().contiguous()
          for k, v in model.state_dict().items()}
    meta = dict(mmpose_version=mmpose.__version__, note='random init, vidpose parity fixture')
    path = os.path.join(out_dir, f'{stem}_zip.pth')
    torch.save({'state_dict': sd, 'meta': meta}, path)
    return path


def build(cfg, ckpt=None):
    return init_model(cfg, ckpt, device='cpu')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--full', choices=['w32', 'w48'])
    ap.add_argument('--out', default=os.path.join(REPO, 'tests', 'fixtures', 'hrnet'))
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--dark-only', action='store_true',
                    help='only (re)write dark_synthetic.safetensors')
    args = ap.parse_args()
    if args.dark_only:
        os.makedirs(args.out, exist_ok=True)
        write_dark_synthetic(args.out)
        return
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    frame = cv2.imread(os.path.join(DATA, FRAME), cv2.IMREAD_COLOR)  # BGR, as LoadImage
    boxes = [[x, y, x + w, y + h] for x, y, w, h in gt_boxes()]
    if args.full:
        cfg = make_config(CFG_W32 if args.full == 'w32' else CFG_W48)
        img = frame
        stem = f'hrnet_{args.full}'
    else:
        cfg = make_config(CFG_W32, stage1=8, width=WIDTH, input_size=(96, 128), shallow=True)
        # quarter resolution, then a cut-out around the first person; the second
        # box is moved so that it sticks out of the cut-out (constant border)
        small = cv2.resize(frame, (480, 270), interpolation=cv2.INTER_AREA)
        x0, y0 = 120, 20
        img = np.ascontiguousarray(small[y0:y0 + 230, x0:x0 + 200])
        b = np.asarray(boxes[0]) / 4 - [x0, y0, x0, y0]
        boxes = [b.tolist(), [120.5, -30.25, 230.0, 150.75]]
        stem = f'hrnet_w{WIDTH}'
    write_png(os.path.join(args.out, 'frame.png'), img)
    torch.manual_seed(0)
    model = build(cfg)
    randomise(model, img, seed=1)
    if not args.full:
        round_to_half(model)
    path = save_checkpoint(model, args.out, stem)
    model = build(cfg, path)  # official loading path (0.x keys renamed on load)
    saved = torch.load(path, map_location='cpu')['state_dict']
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k.replace('head.', 'keypoint_head.', 1)
                                    if k.startswith('head.') else k]), k
    run_reference(model, img, boxes, args.out)
    if not args.full:
        write_dark_synthetic(args.out)
    print('wrote', args.out, sorted(os.listdir(args.out)))


if __name__ == '__main__':
    main()
