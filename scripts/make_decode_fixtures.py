"""What OpenCV decodes, for vidpose's decoder parity tests (`tests/decode_parity.rs`).

MMPose reads frames with OpenCV: `cv2.imread`/`cv2.imdecode` (`IMREAD_COLOR`) for images and
`cv2.VideoCapture` (FFmpeg backend) for its video demo. This script writes small images and
videos of every kind the tests cover, and for each the SHA-256 of the RGB bytes OpenCV
returns (its BGR channels reversed), to `tests/fixtures/decode/`:

  images/*.jpg|*.png     JPEG: 4:2:0, 4:2:2, 4:4:4, progressive, greyscale, CMYK (Adobe),
                         EXIF orientations 1-8, truncated, stray bytes, damaged; PNG: RGB, RGBA, grey,
                         grey + alpha, palette (+ transparency), 1-bit, 16-bit RGB and grey,
                         interlaced, EXIF orientation
  videos/*.mp4           H.264 at sizes that are not multiples of 16 (4:2:0, 4:2:2, 4:4:4),
                         MPEG-4 Part 2; H.264 with a display matrix (rotate 90, 180, 270)
  warps                  `cv2.warpAffine(INTER_LINEAR)` (the top-down crop) of a real PoseTrack
                         frame, cut to 160x120, at output widths with and without a scalar
                         tail in OpenCV's vector loop: the forward matrix and the output hash
  expected.json          per file: width, height, sha256 of the RGB bytes (per frame for
                         videos), or null where OpenCV cannot decode it; also the same for
                         every JPEG, PNG and video in ../shared/data (tests use them when
                         present)

Run with the reference environment (OpenCV, Pillow, numpy) and the ffmpeg command:

    ~/refenv/venv/bin/python scripts/make_decode_fixtures.py
"""
import hashlib
import io
import json
import os
import subprocess
import sys

import cv2
import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, 'tests', 'fixtures', 'decode')
SHARED = os.environ.get('VIDPOSE_SHARED_DATA', '/work/shared/data')


def smooth(rng, h, w, c):
    """A picture with structure (blobs plus noise), so that codecs have work to do."""
    base = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, c)).astype(np.uint8)
    img = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, c)
    noise = rng.integers(-20, 20, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def write_images(d):
    rng = np.random.default_rng(2026)
    rgb = smooth(rng, 37, 53, 3)
    Image.fromarray(rgb).save(f'{d}/rgb420.jpg', quality=90)
    Image.fromarray(rgb).save(f'{d}/rgb422.jpg', quality=90, subsampling=1)
    Image.fromarray(rgb).save(f'{d}/rgb444.jpg', quality=95, subsampling=0)
    Image.fromarray(smooth(rng, 41, 67, 3)).save(f'{d}/progressive.jpg', quality=85,
                                                 progressive=True)
    Image.fromarray(smooth(rng, 29, 41, 1)[:, :, 0]).save(f'{d}/grey.jpg', quality=90)
    Image.fromarray(smooth(rng, 31, 45, 4), mode='CMYK').save(f'{d}/cmyk.jpg', quality=90)
    for o in range(1, 9):
        im = Image.fromarray(rgb)
        exif = im.getexif()
        exif[0x0112] = o
        im.save(f'{d}/exif{o}.jpg', quality=90, exif=exif.tobytes())
    # Faults libjpeg only warns about (OpenCV returns the picture) and ones it refuses.
    whole = open(f'{d}/progressive.jpg', 'rb').read()
    open(f'{d}/truncated_progressive.jpg', 'wb').write(whole[:len(whole) * 3 // 5])
    whole = open(f'{d}/rgb420.jpg', 'rb').read()
    open(f'{d}/truncated_baseline.jpg', 'wb').write(whole[:len(whole) * 3 // 5])
    open(f'{d}/extraneous_bytes.jpg', 'wb').write(whole[:-2] + b'\x00\x11\x22' + whole[-2:])
    baseline = bytearray(whole)
    # Damage the frame header (SOF0 precision 8 -> 3): libjpeg refuses the file.
    sof = baseline.find(b'\xff\xc0')
    baseline[sof + 4] = 3
    open(f'{d}/damaged.jpg', 'wb').write(bytes(baseline))

    cv2.imwrite(f'{d}/rgb.png', smooth(rng, 23, 31, 3))
    cv2.imwrite(f'{d}/rgba.png', smooth(rng, 23, 31, 4))
    grey = smooth(rng, 19, 27, 1)[:, :, 0]
    Image.fromarray(grey).save(f'{d}/grey.png')
    Image.fromarray(np.stack([grey, grey[::-1]], -1), mode='LA').save(f'{d}/grey_alpha.png')
    pal = Image.fromarray(grey).convert('P')
    pal.save(f'{d}/palette.png')
    pal.save(f'{d}/palette_trns.png', transparency=3)
    Image.fromarray(grey > 128).save(f'{d}/bilevel.png')
    cv2.imwrite(f'{d}/rgb16.png', rng.integers(0, 65536, (13, 17, 3)).astype(np.uint16))
    cv2.imwrite(f'{d}/grey16.png', rng.integers(0, 65536, (13, 17)).astype(np.uint16))
    Image.fromarray(smooth(rng, 21, 33, 3)).save(f'{d}/interlaced.png', interlace=1)
    im = Image.fromarray(smooth(rng, 15, 25, 3))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(f'{d}/exif6.png', exif=exif.tobytes())


def write_videos(d):
    def make(name, size, pix_fmt, codec='libx264'):
        filt = (f"color=c=black:size={size}:rate=25:duration=0.4,"
                "geq=r='mod(X*7+Y*3+T*50,256)':g='mod(X*X+Y,256)':b='mod(Y*5+X*2,256)'")
        args = ['ffmpeg', '-v', 'error', '-y', '-f', 'lavfi', '-i', filt, '-c:v', codec,
                '-pix_fmt', pix_fmt]
        if codec == 'libx264':
            args += ['-crf', '20']
        subprocess.run(args + [f'{d}/{name}.mp4'], check=True)

    make('h264_34x18_420', '34x18', 'yuv420p')
    make('h264_102x78_420', '102x78', 'yuv420p')
    make('h264_90x30_422', '90x30', 'yuv422p')
    make('h264_101x77_444', '101x77', 'yuv444p')
    make('mpeg4_66x38_420', '66x38', 'yuv420p', codec='mpeg4')
    write_rotated_videos(d)


def write_rotated_videos(d):
    """Phone-style rotation: one H.264 stream copied with the legacy `rotate` tag, which the mp4
    muxer stores as a display matrix; VideoCapture turns the frames upright
    (CAP_PROP_ORIENTATION_AUTO, on by default)."""
    base = f'{d}/rotate_base.tmp.mp4'
    filt = ("color=c=black:size=46x26:rate=25:duration=0.2,"
            "geq=r='mod(X*7+Y*3+T*50,256)':g='mod(X*X+Y,256)':b='mod(Y*5+X*2,256)'")
    subprocess.run(['ffmpeg', '-v', 'error', '-y', '-f', 'lavfi', '-i', filt, '-c:v', 'libx264',
                    '-pix_fmt', 'yuv420p', '-crf', '20', base], check=True)
    for angle in (90, 180, 270):
        subprocess.run(['ffmpeg', '-v', 'error', '-y', '-i', base, '-c', 'copy',
                        '-metadata:s:v', f'rotate={angle}', f'{d}/h264_46x26_rotate{angle}.mp4'],
                       check=True)
    os.remove(base)


def digest(bgr):
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    return {'width': int(rgb.shape[1]), 'height': int(rgb.shape[0]),
            'sha256': hashlib.sha256(rgb.tobytes()).hexdigest()}


def image_entry(path):
    # As MMPose's LoadImage: mmcv.imfrombytes with the cv2 backend, i.e. cv2.imdecode.
    data = np.frombuffer(open(path, 'rb').read(), np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if bgr is None else digest(bgr)


def video_entry(path):
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(digest(bgr))
    return frames


def naive_warp(src, m, w, h):
    """A plain float32 bilinear warp: fused multiply-adds everywhere, no vector/scalar split.
    Used only to pick the cases where the exact arithmetic order matters."""
    f32, f64 = np.float32, np.float64

    def fma(a, b, c):
        return (np.asarray(a, f64) * np.asarray(b, f64) + np.asarray(c, f64)).astype(f32)

    inv = cv2.invertAffineTransform(m).astype(f32).reshape(-1)
    ys = np.arange(h, dtype=f32)[:, None] * np.ones((1, w), f32)
    xs = np.arange(w, dtype=f32)[None, :] * np.ones((h, 1), f32)
    sx = fma(xs, inv[0], fma(ys, inv[1], inv[2]))
    sy = fma(xs, inv[3], fma(ys, inv[4], inv[5]))
    ix, iy = np.floor(sx).astype(int), np.floor(sy).astype(int)
    a, b = (sx - ix).astype(f32)[..., None], (sy - iy).astype(f32)[..., None]
    sh, sw = src.shape[:2]

    def px(x, y):
        inside = (x >= 0) & (y >= 0) & (x < sw) & (y < sh)
        v = src[np.clip(y, 0, sh - 1), np.clip(x, 0, sw - 1)].astype(f32)
        v[~inside] = 0
        return v

    p00, p01, p10, p11 = px(ix, iy), px(ix + 1, iy), px(ix, iy + 1), px(ix + 1, iy + 1)
    top = fma(a, p01 - p00, p00)
    bottom = fma(a, p11 - p10, p10)
    return np.clip(np.round(fma(b, bottom - top, top)), 0, 255).astype(np.uint8)


def warp_cases():
    """Top-down crop warps as MMPose's TopdownAffine runs them, at several output widths: for
    each width, random crops on which a naive float32 warp differs from OpenCV's in at least one
    pixel (the order of OpenCV's arithmetic matters there), and two ordinary ones."""
    frame = cv2.imdecode(np.fromfile(os.path.join(REPO, 'samples', 'posetrack18', 'images', 'val',
                                                  '012834_mpii_test', '000000.jpg'), np.uint8),
                         cv2.IMREAD_COLOR)
    src = np.ascontiguousarray(frame[400:520, 300:460])  # 160x120, real texture
    rng = np.random.default_rng(7)
    cases = []
    for w in (96, 192, 100, 37, 201, 113):
        h = w * 4 // 3
        hard, plain = 0, 0
        for _ in range(400):
            if hard >= 4 and plain >= 2:
                break
            cx, cy = rng.uniform(-20, 180), rng.uniform(-20, 140)
            s = rng.uniform(10, 300)
            pts_src = np.array([[cx, cy], [cx - s / 2, cy], [cx - s / 2, cy + s / 2]], np.float32)
            pts_dst = np.array([[w / 2, h / 2], [0, h / 2], [0, h / 2 + w / 2]], np.float32)
            m = cv2.getAffineTransform(pts_src, pts_dst)
            out = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR)
            sensitive = bool((naive_warp(src, m, w, h) != out).any())
            if (sensitive and hard < 4) or (not sensitive and plain < 2):
                hard += sensitive
                plain += not sensitive
                cases.append({'matrix': m.reshape(-1).tolist(), 'sensitive': sensitive,
                              **digest(out)})
    return digest(src), cases


def main():
    for sub in ('images', 'videos'):
        os.makedirs(os.path.join(OUT, sub), exist_ok=True)
    write_images(os.path.join(OUT, 'images'))
    write_videos(os.path.join(OUT, 'videos'))
    expected = {'opencv': cv2.__version__, 'numpy': np.__version__,
                'images': {}, 'videos': {}, 'shared_images': {}, 'shared_videos': {}}
    source, cases = warp_cases()
    expected['warp_source'] = {'frame': 'samples/posetrack18/images/val/012834_mpii_test/000000.jpg',
                               'rows': [400, 520], 'cols': [300, 460], **source}
    expected['warps'] = cases
    for name in sorted(os.listdir(os.path.join(OUT, 'images'))):
        expected['images'][name] = image_entry(os.path.join(OUT, 'images', name))
    for name in sorted(os.listdir(os.path.join(OUT, 'videos'))):
        expected['videos'][name] = video_entry(os.path.join(OUT, 'videos', name))
    if os.path.isdir(SHARED):
        for root, _, files in sorted(os.walk(SHARED)):
            for name in sorted(files):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, SHARED)
                ext = name.lower().rsplit('.', 1)[-1]
                if ext in ('jpg', 'jpeg', 'png'):
                    expected['shared_images'][rel] = image_entry(path)
                elif ext in ('mp4', 'avi', 'mkv', 'mov'):
                    expected['shared_videos'][rel] = video_entry(path)
    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write('\n')
    print(f'wrote {OUT}', file=sys.stderr)


if __name__ == '__main__':
    main()
