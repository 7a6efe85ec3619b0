//! vidpose's CUDA kernels (`kernels/*.cu`) run on the CPU, thread by thread, against the CPU
//! operators they stand in for: the sources are compiled as C++ by the host compiler with a few
//! stand-ins for CUDA's built-ins (`tests/emulate/harness.cpp`; a warp's shuffles are 32 host
//! threads meeting at a barrier), without contracting multiply-adds, as build.rs compiles the
//! PTX. So the kernels' arithmetic is checked where no GPU exists; the device check
//! (`scripts/device_check.sh`) then confirms it on one. Skipped when no C++20 compiler is found.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use vidpose::detect::ops::{roi_align, RoiAlign};
use vidpose::detect::preprocess::{resize_taps, DetectorInput};
use vidpose::geometry::BBox;
use vidpose::image::RgbImage;
use vidpose::nn::GroupedConvDirect;
use vidpose::pose::crop::TopdownAffine;
use vidpose::pose::ops::{crop_params, CropOp, FlipMerge, MsraPeaks};

struct Harness {
    exe: PathBuf,
    dir: tempfile::TempDir,
}

impl Harness {
    /// Builds the harness, or `None` (test skipped) without a C++ compiler.
    fn build() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("harness");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emulate/harness.cpp");
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        let status = Command::new(&cxx)
            .args(["-O1", "-ffp-contract=off", "-std=c++20", "-pthread", "-o"])
            .arg(&exe)
            .arg(&src)
            .status();
        match status {
            Ok(s) if s.success() => Some(Self { exe, dir }),
            other => {
                eprintln!("skipped: {cxx} cannot build the kernel harness ({other:?})");
                None
            }
        }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }

    fn f32s(&self, name: &str, v: &[f32]) -> String {
        self.file(
            name,
            &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>(),
        )
    }

    /// Runs the harness; the file `out` it wrote, as f32s.
    fn run(&self, args: &[String], out: &str) -> Vec<f32> {
        let status = Command::new(&self.exe).args(args).status().unwrap();
        assert!(status.success(), "{args:?}");
        std::fs::read(out)
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Equal bit for bit, NaN equal to NaN.
fn assert_same(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "{what}: element {i}: kernel {a}, CPU {b}"
        );
    }
}

#[test]
fn roi_align_kernel_matches_the_cpu_op() {
    let Some(h) = Harness::build() else { return };
    let dev = Device::Cpu;
    let (n, c, fh, fw) = (2, 3, 9, 11);
    let feats = Tensor::randn(0f32, 1.0, (n, c, fh, fw), &dev).unwrap();
    let rois: Vec<f32> = vec![
        0.0, 3.0, 4.0, 40.0, 30.0, // inside
        1.0, -12.0, -8.0, 20.0, 50.0, // over the top-left border
        0.0, 30.0, 20.0, 90.0, 80.0, // mostly outside
        1.0, 10.0, 10.0, 10.5, 10.25, // tiny
        0.0, 0.0, 0.0, 88.0, 72.0, // the whole map
    ];
    let k = rois.len() / 5;
    let feats_file = h.f32s("feats", &values(&feats));
    let rois_file = h.f32s("rois", &rois);
    let out_file = h.dir.path().join("out").display().to_string();
    for (sampling, aligned) in [(0, true), (2, true), (0, false)] {
        let op = RoiAlign {
            output_size: 7,
            spatial_scale: 0.125,
            sampling_ratio: sampling,
            aligned,
        };
        let want = roi_align(
            &feats,
            &Tensor::from_vec(rois.clone(), (k, 5), &dev).unwrap(),
            op,
        )
        .unwrap();
        let args: Vec<String> = [
            "roi".into(),
            feats_file.clone(),
            rois_file.clone(),
            out_file.clone(),
            k.to_string(),
            c.to_string(),
            fh.to_string(),
            fw.to_string(),
            "7".into(),
            "0.125".into(),
            sampling.to_string(),
            (aligned as i32).to_string(),
            n.to_string(),
        ]
        .into();
        let got = h.run(&args, &out_file);
        assert_same(
            &got,
            &values(&want),
            &format!("roi_align s{sampling} a{aligned}"),
        );
    }
}

#[test]
fn pose_crop_kernel_matches_the_cpu_warp() {
    let Some(h) = Harness::build() else { return };
    let (sw, sh) = (61u32, 47u32);
    let mut img = RgbImage::new(sw, sh);
    for (i, v) in img.data.iter_mut().enumerate() {
        *v = ((i * 37 + i / 7) % 256) as u8;
    }
    // 40 columns: 32 on OpenCV's vector path, 8 on its scalar tail
    let t = TopdownAffine::new(40, 52);
    let mut params = Vec::new();
    for flip in [false, true] {
        for b in [
            BBox::new(3.0, 4.5, 30.25, 40.0),
            BBox::new(-10.0, 20.0, 70.0, 80.0),
            BBox::new(50.0, 1.0, 58.0, 9.0),
            BBox::new(200.0, 200.0, 260.0, 300.0),
        ] {
            params.extend(crop_params(&t.inverse(&t.crop_box(&b)).unwrap(), flip));
        }
    }
    let n = params.len() / 7;
    let dev = Device::Cpu;
    let want = Tensor::from_vec(img.data.clone(), (sh as usize, sw as usize, 3), &dev)
        .unwrap()
        .apply_op2_no_bwd(
            &Tensor::from_vec(params.clone(), (n, 7), &dev).unwrap(),
            &CropOp {
                out_w: 40,
                out_h: 52,
            },
        )
        .unwrap();
    let out = h.dir.path().join("out").display().to_string();
    let args: Vec<String> = vec![
        "crop".into(),
        h.file("frame", &img.data),
        h.f32s("params", &params),
        out.clone(),
        n.to_string(),
        sw.to_string(),
        sh.to_string(),
        "40".into(),
        "52".into(),
    ];
    assert_same(&h.run(&args, &out), &values(&want), "pose crop");
}

#[test]
fn heatmap_kernels_match_the_codec() {
    let Some(h) = Harness::build() else { return };
    let dev = Device::Cpu;
    let flip: Vec<usize> = vec![0, 2, 1, 4, 3];
    let (n, k, hh, hw) = (3, flip.len(), 9, 7);
    // a few levels only, so that ties (first maximum wins) are common
    let mut hm: Vec<f32> = values(&Tensor::randn(0f32, 1.0, (2 * n, k, hh, hw), &dev).unwrap())
        .into_iter()
        .map(|v| (v * 2.0).round() / 2.0)
        .collect();
    let plane = hh * hw;
    hm[0] = f32::NAN; // a NaN first cell is never beaten
    hm[plane + 5] = f32::NAN; // elsewhere NaN never wins
    for v in &mut hm[2 * plane..3 * plane] {
        *v = -v.abs(); // no positive maximum: (-1, -1)
    }
    let hm_t = Tensor::from_vec(hm.clone(), (2 * n, k, hh, hw), &dev).unwrap();
    let merged = hm_t
        .apply_op1_no_bwd(&FlipMerge {
            flip_indices: flip.clone(),
        })
        .unwrap();
    let out = h.dir.path().join("out").display().to_string();
    let flip_u32: Vec<u8> = flip
        .iter()
        .flat_map(|&c| (c as u32).to_le_bytes())
        .collect();
    let args: Vec<String> = vec![
        "flip".into(),
        h.f32s("hm", &hm),
        h.file("flip", &flip_u32),
        out.clone(),
        n.to_string(),
        k.to_string(),
        hh.to_string(),
        hw.to_string(),
    ];
    let merged_v = values(&merged);
    assert_same(&h.run(&args, &out), &merged_v, "flip merge");
    // decode the unmerged maps too: they hold the NaN and non-positive cases
    for (name, maps, count) in [("merged", &merged_v, n * k), ("raw", &hm, 2 * n * k)] {
        let t = Tensor::from_vec(maps.clone(), (count, 1, hh, hw), &dev).unwrap();
        let want = t.apply_op1_no_bwd(&MsraPeaks).unwrap();
        let args: Vec<String> = vec![
            "msra".into(),
            h.f32s("maps", maps),
            out.clone(),
            count.to_string(),
            hh.to_string(),
            hw.to_string(),
        ];
        assert_same(
            &h.run(&args, &out),
            &values(&want),
            &format!("msra peaks ({name})"),
        );
    }
}

#[test]
fn detector_input_kernel_matches_the_cpu_resize() {
    let Some(h) = Harness::build() else { return };
    let dev = Device::Cpu;
    // (source, resized, padded): up- and downscaling on OpenCV's vector path, and a row
    // shorter than one vector (5 pixels, 15 values) on its scalar formula
    for ((w, hh), (nw, nh), (pw, ph)) in [
        ((37, 23), (61, 45), (64, 64)),
        ((97, 71), (40, 29), (64, 32)),
        ((9, 7), (5, 4), (32, 32)),
    ] {
        let mut img = RgbImage::new(w as u32, hh as u32);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = ((i * 53 + i / 5) % 256) as u8;
        }
        let taps = resize_taps(w, hh, nw, nh);
        let want = Tensor::from_vec(img.data.clone(), (hh, w, 3), &dev)
            .unwrap()
            .apply_op2_no_bwd(
                &Tensor::from_vec(taps.clone(), (nw + nh, 4), &dev).unwrap(),
                &DetectorInput { nw, nh, pw, ph },
            )
            .unwrap();
        let taps_bytes: Vec<u8> = taps.iter().flat_map(|t| t.to_le_bytes()).collect();
        let out = h.dir.path().join("out").display().to_string();
        let args: Vec<String> = vec![
            "detin".into(),
            h.file("frame", &img.data),
            h.file("taps", &taps_bytes),
            out.clone(),
            w.to_string(),
            hh.to_string(),
            nw.to_string(),
            nh.to_string(),
            pw.to_string(),
            ph.to_string(),
            u8::from(nw * 3 >= 16).to_string(),
        ];
        let what = format!("detector input {w}x{hh} -> {nw}x{nh}");
        assert_same(&h.run(&args, &out), &values(&want), &what);
    }
}

#[test]
fn grouped_conv_kernel_matches_the_cpu_op() {
    let Some(h) = Harness::build() else { return };
    let dev = Device::Cpu;
    // ResNeXt's shapes in small: stride 1 and 2, odd sizes, a map smaller than the kernel's
    // reach, and one group's worth of channels per group from 1 to 4
    for (n, c_in, c_out, groups, (ih, iw), stride) in [
        (2, 16, 16, 4, (9, 11), 1),
        (1, 8, 16, 8, (7, 10), 2),
        (1, 12, 12, 3, (2, 1), 2),
    ] {
        let x = Tensor::randn(0f32, 1.0, (n, c_in, ih, iw), &dev).unwrap();
        let wt = Tensor::randn(0f32, 1.0, (c_out, c_in / groups, 3, 3), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, c_out, &dev).unwrap();
        let op = GroupedConvDirect {
            groups,
            stride,
            pad: 1,
            relu: true,
        };
        let want = x.apply_op3_no_bwd(&wt, &b, &op).unwrap();
        let (_, _, oh, ow) = want.dims4().unwrap();
        let out = h.dir.path().join("out").display().to_string();
        let args: Vec<String> = vec![
            "gconv".into(),
            h.f32s("x", &values(&x)),
            h.f32s("w", &values(&wt)),
            h.f32s("b", &values(&b)),
            out.clone(),
            n.to_string(),
            c_in.to_string(),
            ih.to_string(),
            iw.to_string(),
            c_out.to_string(),
            groups.to_string(),
            "3".into(),
            stride.to_string(),
            "1".into(),
            oh.to_string(),
            ow.to_string(),
        ];
        let what = format!("grouped conv {c_in}->{c_out}/{groups} {ih}x{iw} stride {stride}");
        assert_same(&h.run(&args, &out), &values(&want), &what);
    }
}
