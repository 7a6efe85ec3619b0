"""HRNet-W32 in plain PyTorch, timed on a GPU: the PyTorch side of the device check's ratios.

The GPU machine has PyTorch but no MMPose, so the network is written out here, module for
module as MMPose builds it (same parameter names: a published checkpoint loads with
strict=True), and run eagerly, as MMPose runs it.

    python3 scripts/torch_hrnet_gpu.py [--device cuda:0] [--batch 64] [--out DIR]
    python3 scripts/torch_hrnet_gpu.py --check CHECKPOINT.pth   # CPU: the same heatmaps as MMPose

Writes DIR/torch_hrnet.json: forward ms and crops/s at the batch in float32 and float16.
"""
import argparse
import json
import os
import time

import torch
from torch import nn

WIDTHS = [32, 64, 128, 256]
MODULES = {2: 1, 3: 4, 4: 3}


def conv_bn(c_in, c_out, k, stride, relu):
    layers = [nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    def __init__(self, c_in, planes, downsample):
        super().__init__()
        c_out = planes * 4
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = conv_bn(c_in, c_out, 1, 1, False) if downsample else None

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class BasicBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + x)


class HrModule(nn.Module):
    def __init__(self, widths, multiscale):
        super().__init__()
        n = len(widths)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c) for _ in range(4)]) for c in widths)
        self.fuse_layers = nn.ModuleList()
        for i in range(n if multiscale else 1):
            row = nn.ModuleList()
            for j in range(n):
                if j > i:
                    row.append(nn.Sequential(
                        nn.Conv2d(widths[j], widths[i], 1, bias=False), nn.BatchNorm2d(widths[i]),
                        nn.Upsample(scale_factor=2 ** (j - i), mode='nearest')))
                elif j == i:
                    row.append(None)
                else:
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        steps.append(conv_bn(widths[j], widths[i] if last else widths[j], 3, 2,
                                             not last))
                    row.append(nn.Sequential(*steps))
            self.fuse_layers.append(row)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs):
        xs = [b(x) for b, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, len(xs)):
                y = y + (xs[j] if i == j else row[j](xs[j]))
            out.append(self.relu(y))
        return out


def transition(pre, cur):
    layers = nn.ModuleList()
    for i, c in enumerate(cur):
        if i < len(pre):
            layers.append(conv_bn(pre[i], c, 3, 1, True) if pre[i] != c else None)
        else:
            steps = [conv_bn(pre[-1], c if k == i - len(pre) else pre[-1], 3, 2, True)
                     for k in range(i + 1 - len(pre))]
            layers.append(nn.Sequential(*steps))
    return layers


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Bottleneck(64, 64, True),
                                    *[Bottleneck(256, 64, False) for _ in range(3)])
        pre = [256]
        for s in (2, 3, 4):
            cur = WIDTHS[:s]
            setattr(self, f'transition{s - 1}', transition(pre, cur))
            setattr(self, f'stage{s}', nn.Sequential(*[
                HrModule(cur, s < 4 or m < MODULES[s] - 1) for m in range(MODULES[s])]))
            pre = cur

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for s in (2, 3, 4):
            t = getattr(self, f'transition{s - 1}')
            xs = [(t[i](xs[i] if i < len(xs) else xs[-1]) if t[i] is not None else xs[i])
                  for i in range(len(t))]
            for m in getattr(self, f'stage{s}'):
                xs = m(xs)
        return xs[0]


class HRNetW32(nn.Module):
    def __init__(self, keypoints=17):
        super().__init__()
        self.backbone = Backbone()
        self.final_layer = nn.Conv2d(WIDTHS[0], keypoints, 1)

    def forward(self, x):
        return self.final_layer(self.backbone(x))

    def load_published(self, path):
        sd = torch.load(path, map_location='cpu', weights_only=True)
        sd = sd.get('state_dict', sd)
        mapped = {}
        for k, v in sd.items():
            for head in ('keypoint_head.final_layer.', 'head.final_layer.'):
                if k.startswith(head):
                    k = 'final_layer.' + k[len(head):]
            mapped[k] = v
        self.load_state_dict(mapped, strict=True)


def check(path):
    """Same weights, same input: this module's heatmaps against MMPose's own model."""
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.environ.get('REFENV_SRC', os.path.join(here, '..', '..', 'shared', 'refenv')))
    import refenv_compat  # the reference environment only
    refenv_compat.setup()
    from mmpose.apis import init_model
    ours = HRNetW32()
    ours.load_published(path)
    ours.eval()
    cfg = 'td-hm_hrnet-w32_8xb64-20e_posetrack18-256x192'
    import mmpose, glob
    cfg_path = glob.glob(os.path.join(os.path.dirname(mmpose.__file__), '.mim', 'configs',
                                      '**', cfg + '.py'), recursive=True)[0]
    theirs = init_model(cfg_path, path, device='cpu')
    x = torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = ours(x)
        b = theirs.head(theirs.backbone(x))
    err = ((a - b).abs().max() / b.abs().max()).item()
    print(json.dumps({'max_rel_err_vs_mmpose': err,
                      'params': sum(p.numel() for p in ours.parameters())}))
    assert err < 1e-5, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--device', default='cuda:0')
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--runs', type=int, default=10)
    ap.add_argument('--out', default=os.environ.get('OUT', '.'))
    ap.add_argument('--check', metavar='CHECKPOINT')
    a = ap.parse_args()
    if a.check:
        return check(a.check)
    dev = torch.device(a.device)
    torch.backends.cudnn.benchmark = True
    model = HRNetW32().eval().to(dev)
    result = {'device': str(dev), 'batch': a.batch, 'torch': torch.__version__}
    if dev.type == 'cuda':
        result['gpu'] = torch.cuda.get_device_name(dev)
    for name, dtype in (('f32', torch.float32), ('f16', torch.float16)):
        m = model.to(dtype)
        x = torch.randn(a.batch, 3, 256, 192, device=dev, dtype=dtype)
        times = []
        with torch.no_grad():
            for i in range(3 + a.runs):
                if dev.type == 'cuda':
                    torch.cuda.synchronize(dev)
                t0 = time.perf_counter()
                m(x)
                if dev.type == 'cuda':
                    torch.cuda.synchronize(dev)
                if i >= 3:
                    times.append(time.perf_counter() - t0)
        times.sort()
        med = times[len(times) // 2]
        result[name] = {'forward_ms': med * 1e3, 'forward_crops_per_s': a.batch / med,
                        'min_ms': times[0] * 1e3}
        print(name, result[name], flush=True)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, 'torch_hrnet.json'), 'w') as f:
        json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
