"""Tiny PyTorch checkpoints for vidpose's checkpoint-format tests (tests/checkpoint_formats.rs).

Each file holds a handful of small tensors whose values follow one formula that the test
recomputes (element i of every tensor's storage is i / 4 - 3, cast to the tensor's dtype; u8:
7 i; i64: i - 5), covering what the reader handles: f32, f64, f16, bf16, u8 and i64 storages, a
0-d i64 counter (BN `num_batches_tracked`, beyond 32 bits), two tensors sharing one storage (one
of them at a storage offset), an MMPose 0.x head key (`keypoint_head.`, renamed `head.` on load)
and a `data_preprocessor.` entry (dropped on load). Written by torch.save in both of its
formats, wrapped as mmcv checkpoints are ({'state_dict', 'meta'}) and bare; plus one file per
format with a non-contiguous (transposed) tensor, which the reader refuses.

The full model in these formats is not committed: tests/common writes the legacy and the
safetensors copies of the narrow HRNet from the committed PyTorch zip file at test time.

Needs only PyTorch: ~/refenv/venv/bin/python scripts/make_checkpoint_fixtures.py
Writes (about 10 kB, committed) tests/fixtures/checkpoint/:
    formats_zip.pth, formats_legacy.pth               {'state_dict': .., 'meta': ..}
    formats_bare_zip.pth, formats_bare_legacy.pth     the state dict alone
    noncontiguous_zip.pth, noncontiguous_legacy.pth   {'state_dict': {'w': <3x4 transposed>}}
"""
import argparse
import os

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def storage(n, dtype):
    i = torch.arange(n, dtype=torch.float64)
    if dtype == torch.uint8:
        return (i * 7).to(dtype)
    if dtype == torch.int64:
        return (i - 5).to(dtype)
    return (i / 4 - 3).to(dtype)  # exact in every float type for n <= 64


def state_dict():
    shared = storage(12, torch.float32)
    counter = torch.tensor(12345678901, dtype=torch.int64)
    return {
        'backbone.conv.weight': storage(24, torch.float32).reshape(2, 3, 4),
        'backbone.f64': storage(6, torch.float64).reshape(3, 2),
        'backbone.f16': storage(5, torch.float16),
        'backbone.bf16': storage(4, torch.bfloat16).reshape(2, 2),
        'backbone.u8': storage(4, torch.uint8),
        'backbone.bn.num_batches_tracked': counter,
        'backbone.shared': shared,
        # a view: same storage, offset 5
        'backbone.shared_view': shared[5:11].view(2, 3),
        'keypoint_head.final_layer.weight': storage(6, torch.float32).reshape(3, 2, 1, 1),
        'data_preprocessor.mean': storage(3, torch.float32),
    }


def save(obj, path, legacy):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.path.join(REPO, 'tests', 'fixtures', 'checkpoint'))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    meta = dict(note='vidpose checkpoint-format fixture')
    for fmt, legacy in (('zip', False), ('legacy', True)):
        save({'state_dict': state_dict(), 'meta': meta},
             os.path.join(args.out, f'formats_{fmt}.pth'), legacy)
        save(state_dict(), os.path.join(args.out, f'formats_bare_{fmt}.pth'), legacy)
        w = storage(12, torch.float32).reshape(3, 4).t()
        assert not w.is_contiguous()
        save({'state_dict': {'w': w}, 'meta': meta},
             os.path.join(args.out, f'noncontiguous_{fmt}.pth'), legacy)
    print('wrote', args.out, sorted(os.listdir(args.out)))


if __name__ == '__main__':
    main()
