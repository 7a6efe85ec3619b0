//! Helpers shared by the integration tests: synthetic videos and image folders, and the
//! optional real data in `../shared/data`.
#![allow(dead_code)]

pub mod synthetic;

use std::path::{Path, PathBuf};

use vidpose::image::RgbImage;
use vidpose::video::encode::{write_jpeg, OverlayTarget, OverlayWriter, VideoCodec};

/// A frame whose whole area has grey level `level`, with a white square at column `i * 8`
/// so frames differ in content as well as brightness.
pub fn test_frame(width: u32, height: u32, level: u8) -> RgbImage {
    let mut img = RgbImage::new(width, height);
    img.data.fill(level);
    img
}

/// Mean of the red channel, to tell synthetic frames apart after lossy coding.
pub fn mean_level(img: &RgbImage) -> f64 {
    let sum: u64 = img.data.iter().step_by(3).map(|&v| v as u64).sum();
    sum as f64 / (img.width as f64 * img.height as f64)
}

/// Grey level of synthetic frame `i`.
pub fn level(i: usize) -> u8 {
    (20 + (i * 23) % 200) as u8
}

/// Writes an mp4 of `n` frames (MPEG-4 Part 2, present in every FFmpeg build).
pub fn make_mp4(path: &Path, n: usize, width: u32, height: u32, fps: f64) {
    let mut w = OverlayWriter::create(
        &OverlayTarget::File(path.to_path_buf()),
        width,
        height,
        fps,
        VideoCodec::Mpeg4,
        23,
    )
    .unwrap();
    for i in 0..n {
        w.write(&test_frame(width, height, level(i))).unwrap();
    }
    w.finish().unwrap();
}

/// Writes `numbers.len()` JPEGs named `%06d.jpg`; frame k gets `level(k)`.
pub fn make_jpeg_folder(dir: &Path, numbers: &[u64]) {
    std::fs::create_dir_all(dir).unwrap();
    for (k, n) in numbers.iter().enumerate() {
        write_jpeg(
            &dir.join(format!("{n:06}.jpg")),
            &test_frame(64, 48, level(k)),
        )
        .unwrap();
    }
}

/// `../shared/data` beside the repository, when present.
pub fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipped: {} is absent", p.display());
        None
    }
}

pub fn vidpose() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vidpose"));
    c.env("NO_COLOR", "1");
    c
}

/// The narrow HRNet of the committed fixture, as `reference.json` describes it.
pub fn narrow_hrnet_config(json: &serde_json::Value) -> vidpose::pose::PoseModelConfig {
    let list = |key: &str| -> Vec<usize> {
        json[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let (widths, modules, blocks, input) = (
        list("widths"),
        list("num_modules"),
        list("num_blocks"),
        list("input_size"),
    );
    vidpose::pose::PoseModelConfig {
        backbone: vidpose::pose::HrNetConfig {
            stage1_channels: json["stage1_channels"].as_u64().unwrap() as usize,
            stage1_blocks: blocks[0],
            widths: [widths[0], widths[1], widths[2], widths[3]],
            num_modules: [modules[1], modules[2], modules[3]],
            num_blocks: [blocks[1], blocks[2], blocks[3]],
        },
        input_size: (input[0] as u32, input[1] as u32),
    }
}

/// `tests/fixtures/hrnet`: the narrow HRNet and MMPose's outputs for it.
pub fn hrnet_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hrnet")
}

/// A checkpoint file format, for the narrow HRNet in each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NarrowCheckpoint {
    /// `torch.save`'s zip format, float32, MMPose 0.x keys: as the models are published.
    Zip,
    /// PyTorch's legacy (non-zip) format, float16 storages, MMPose 0.x keys.
    Legacy,
    /// safetensors, float16, MMPose 1.x keys (`head.`).
    Safetensors,
}

pub const NARROW_CHECKPOINTS: [NarrowCheckpoint; 3] = [
    NarrowCheckpoint::Zip,
    NarrowCheckpoint::Legacy,
    NarrowCheckpoint::Safetensors,
];

/// The narrow HRNet in `format`. Only the PyTorch zip file is committed
/// (`tests/fixtures/hrnet/hrnet_w4_zip.pth`); the other two are written into `dir` from its
/// tensors (`hrnet_w4_legacy.pth`, `hrnet_w4_1x.safetensors`). The weights are float16-exact, so
/// every copy holds the same numbers. That PyTorch's own files in these formats read right is
/// `tests/checkpoint_formats.rs`'s business.
pub fn narrow_hrnet_checkpoint(format: NarrowCheckpoint, dir: &Path) -> PathBuf {
    use candle_core::DType;
    let zip = hrnet_fixture_dir().join("hrnet_w4_zip.pth");
    let half = |t: &candle_core::Tensor| {
        if t.dtype().is_float() {
            t.to_dtype(DType::F16).unwrap()
        } else {
            t.clone()
        }
    };
    let (name, keys_0x) = match format {
        NarrowCheckpoint::Zip => return zip,
        NarrowCheckpoint::Legacy => ("hrnet_w4_legacy.pth", true),
        NarrowCheckpoint::Safetensors => ("hrnet_w4_1x.safetensors", false),
    };
    let ckpt = vidpose::nn::Checkpoint::open(&zip).unwrap();
    // the checkpoint's keys are MMPose 1.x names; the 0.x files call the head `keypoint_head.`
    let tensors: Vec<(String, candle_core::Tensor)> = ckpt
        .keys()
        .into_iter()
        .map(|k| {
            let key = match k.strip_prefix("head.") {
                Some(rest) if keys_0x => format!("keypoint_head.{rest}"),
                _ => k.to_string(),
            };
            (key, half(ckpt.get(k).unwrap()))
        })
        .collect();
    let path = dir.join(name);
    match format {
        NarrowCheckpoint::Legacy => write_torch_legacy(&path, &tensors),
        _ => candle_core::safetensors::save(&tensors.into_iter().collect(), &path).unwrap(),
    }
    path
}

/// Writes `{'state_dict': {name: tensor}, 'meta': {}}` as PyTorch's legacy (non-zip)
/// `torch.save` does with pickle protocol 2: the magic number, the protocol version and the
/// system information as three pickles, the object with each tensor as
/// `torch._utils._rebuild_tensor_v2` of a persistent storage id, the sorted storage keys, then
/// each storage as an 8-byte little-endian element count and its bytes. One storage per tensor.
pub fn write_torch_legacy(path: &Path, tensors: &[(String, candle_core::Tensor)]) {
    use candle_core::DType;
    /// Protocol-2 pickle opcodes, only those this writer needs.
    struct Pickle(Vec<u8>);
    impl Pickle {
        fn new() -> Self {
            Self(vec![0x80, 2])
        }
        fn op(&mut self, op: u8) -> &mut Self {
            self.0.push(op);
            self
        }
        fn int(&mut self, v: usize) -> &mut Self {
            if v < 0x100 {
                self.0.extend([b'K', v as u8]);
            } else if v < 0x10000 {
                self.0.push(b'M');
                self.0.extend((v as u16).to_le_bytes());
            } else {
                self.0.push(b'J');
                self.0.extend(i32::try_from(v).unwrap().to_le_bytes());
            }
            self
        }
        fn str(&mut self, s: &str) -> &mut Self {
            self.0.push(b'X');
            self.0.extend((s.len() as u32).to_le_bytes());
            self.0.extend(s.as_bytes());
            self
        }
        fn global(&mut self, module: &str, name: &str) -> &mut Self {
            self.0.push(b'c');
            self.0.extend(format!("{module}\n{name}\n").as_bytes());
            self
        }
        fn ints(&mut self, v: &[usize]) -> &mut Self {
            self.op(b'(');
            for &x in v {
                self.int(x);
            }
            self.op(b't')
        }
        fn end(&mut self, out: &mut Vec<u8>) {
            self.op(b'.');
            out.append(&mut self.0);
        }
    }
    const MARK: u8 = b'(';
    const EMPTY_DICT: u8 = b'}';
    const SETITEMS: u8 = b'u';

    let mut out = Vec::new();
    // magic number 0x1950a86a20f9469cfc6c as a 10-byte LONG1
    let magic = 0x1950a86a20f9469cfc6cu128.to_le_bytes();
    let mut p = Pickle::new();
    p.op(0x8a).op(10).0.extend(&magic[..10]);
    p.end(&mut out);
    Pickle::new().int(1001).end(&mut out);
    Pickle::new()
        .op(EMPTY_DICT)
        .op(MARK)
        .str("protocol_version")
        .int(1001)
        .str("little_endian")
        .op(0x88) // NEWTRUE
        .str("type_sizes")
        .op(EMPTY_DICT)
        .op(MARK)
        .str("short")
        .int(2)
        .str("int")
        .int(4)
        .str("long")
        .int(4)
        .op(SETITEMS)
        .op(SETITEMS)
        .end(&mut out);

    p = Pickle::new();
    p.op(EMPTY_DICT)
        .op(MARK)
        .str("state_dict")
        .op(EMPTY_DICT)
        .op(MARK);
    let mut storages = Vec::new();
    for (n, (name, t)) in tensors.iter().enumerate() {
        let class = match t.dtype() {
            DType::F16 => "HalfStorage",
            DType::BF16 => "BFloat16Storage",
            DType::F32 => "FloatStorage",
            DType::F64 => "DoubleStorage",
            DType::U8 => "ByteStorage",
            DType::I64 => "LongStorage",
            other => panic!("no legacy storage for {other:?}"),
        };
        let key = n.to_string();
        let dims = t.dims();
        let mut stride = vec![1usize; dims.len()];
        for d in (0..dims.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * dims[d + 1];
        }
        p.str(name)
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(MARK);
        // persistent id ('storage', torch.<X>Storage, key, 'cpu', numel, None)
        p.op(MARK)
            .str("storage")
            .global("torch", class)
            .str(&key)
            .str("cpu")
            .int(t.elem_count())
            .op(b'N')
            .op(b't')
            .op(b'Q'); // BINPERSID
        p.int(0).ints(dims).ints(&stride).op(0x89); // offset, size, stride, NEWFALSE
        p.global("collections", "OrderedDict").op(b')').op(b'R'); // backward hooks
        p.op(b't').op(b'R');
        let mut bytes = Vec::new();
        t.write_bytes(&mut bytes).unwrap();
        storages.push((key, t.elem_count(), bytes));
    }
    p.op(SETITEMS)
        .str("meta")
        .op(EMPTY_DICT)
        .op(SETITEMS)
        .end(&mut out);
    storages.sort_by(|a, b| a.0.cmp(&b.0));
    let mut keys = Pickle::new();
    keys.op(b']').op(MARK);
    for (key, ..) in &storages {
        keys.str(key);
    }
    keys.op(b'e').end(&mut out); // APPENDS
    for (_, count, bytes) in storages {
        out.extend((count as u64).to_le_bytes());
        out.extend(bytes);
    }
    std::fs::write(path, out).unwrap();
}

/// The committed narrow HRNet fixture as a ready estimator.
pub fn narrow_estimator(options: vidpose::pose::PoseOptions) -> vidpose::pose::PoseEstimator {
    let dir = hrnet_fixture_dir();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    vidpose::pose::PoseEstimator::load(
        dir.join("hrnet_w4_zip.pth"),
        narrow_hrnet_config(&json),
        options,
        &candle_core::Device::Cpu,
    )
    .unwrap()
}

/// Writes `img` as an uncompressed 24-bit BMP: a lossless frame FFmpeg decodes exactly.
pub fn write_bmp(path: &Path, img: &RgbImage) {
    let (w, h) = (img.width as usize, img.height as usize);
    let row = (w * 3).div_ceil(4) * 4;
    let size = 54 + row * h;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"BM");
    for v in [size as u32, 0, 54, 40, w as u32, h as u32] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&1u16.to_le_bytes()); // planes
    out.extend_from_slice(&24u16.to_le_bytes()); // bits per pixel
    for v in [0u32, (row * h) as u32, 2835, 2835, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    // rows bottom-up, pixels as BGR
    for y in (0..h).rev() {
        let start = out.len();
        for px in img.data[y * w * 3..][..w * 3].chunks(3) {
            out.extend_from_slice(&[px[2], px[1], px[0]]);
        }
        out.resize(start + row, 0);
    }
    std::fs::write(path, out).unwrap();
}

/// The largest |x| over a tensor, in f64.
pub fn max_abs(t: &candle_core::Tensor) -> f64 {
    t.to_dtype(candle_core::DType::F64)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// The largest |a - b| over two tensors of one shape, computed in f64.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let f64 = |t: &candle_core::Tensor| t.to_dtype(candle_core::DType::F64).unwrap();
    max_abs(&(f64(a) - f64(b)).unwrap())
}

/// Writes an annotation file for `frames` frames of `video` (`<video>/<n>.jpg`, image ids from
/// 1), with one box per frame, `bbox(frame)`, carrying `track_id` when given.
pub fn write_video_boxes(
    path: &Path,
    video: &str,
    frames: usize,
    bbox: impl Fn(usize) -> [f64; 4],
    track_id: Option<i64>,
) {
    let images: Vec<_> = (0..frames)
        .map(|f| serde_json::json!({"id": f + 1, "file_name": format!("{video}/{f:06}.jpg")}))
        .collect();
    let anns: Vec<_> = (0..frames)
        .map(|f| {
            let mut a = serde_json::json!({"image_id": f + 1, "bbox": bbox(f)});
            if let Some(t) = track_id {
                a["track_id"] = t.into();
            }
            a
        })
        .collect();
    std::fs::write(
        path,
        serde_json::json!({"images": images, "annotations": anns}).to_string(),
    )
    .unwrap();
}
