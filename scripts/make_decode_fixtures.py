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
                         MPEG-4 Part 2
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


def main():
    for sub in ('images', 'videos'):
        os.makedirs(os.path.join(OUT, sub), exist_ok=True)
    write_images(os.path.join(OUT, 'images'))
    write_videos(os.path.join(OUT, 'videos'))
    expected = {'opencv': cv2.__version__, 'numpy': np.__version__,
                'images': {}, 'videos': {}, 'shared_images': {}, 'shared_videos': {}}
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
