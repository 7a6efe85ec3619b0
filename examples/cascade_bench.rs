//! One timed Cascade R-CNN inference (used by `scripts/bench_cascade.sh`).
//!
//! cargo run --release --example cascade_bench -- <checkpoint> <r50|x101> <frame.safetensors>
//!
//! The frame file holds an `image_rgb` u8 tensor `[h, w, 3]`.

use std::time::Instant;

use candle_core::Device;
use vidpose::detect::{CascadeRcnn, CascadeRcnnConfig};
use vidpose::image::RgbImage;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, ckpt, arch, frame] = args.as_slice() else {
        anyhow::bail!("usage: cascade_bench <checkpoint> <r50|x101> <frame.safetensors>");
    };
    let cfg = match arch.as_str() {
        "r50" => CascadeRcnnConfig::r50(),
        "x101" => CascadeRcnnConfig::x101(),
        other => anyhow::bail!("unknown architecture {other}"),
    };
    let t = candle_core::safetensors::load(frame, &Device::Cpu)?;
    let img = t
        .get("image_rgb")
        .ok_or_else(|| anyhow::anyhow!("{frame}: no image_rgb"))?;
    let (h, w, _) = img.dims3()?;
    let img = RgbImage {
        width: w as u32,
        height: h as u32,
        data: img.flatten_all()?.to_vec1()?,
    };
    let t0 = Instant::now();
    let model = CascadeRcnn::load(ckpt, &cfg, &Device::Cpu)?;
    let load_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let dets = model.detect(&img)?;
    let infer_s = t0.elapsed().as_secs_f64();
    println!(
        "{{\"arch\": \"{arch}\", \"image\": [{w}, {h}], \"threads\": {}, \"load_s\": {load_s:.2}, \
         \"inference_s\": {infer_s:.3}, \"detections\": {}}}",
        rayon::current_num_threads(),
        dets.len()
    );
    Ok(())
}
