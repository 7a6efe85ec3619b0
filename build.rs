//! Compiles vidpose's CUDA kernels (`kernels/*.cu`) to PTX, only for `--features cuda`: the
//! CPU build needs no CUDA toolkit and this script then does nothing.
//!
//! nvcc is `$NVCC`, else `nvcc` on `PATH`, else `$CUDA_HOME/bin/nvcc`; the virtual
//! architecture is `compute_$CUDA_COMPUTE_CAP` (default 90: H100/H200). Each `x.cu` becomes
//! `$OUT_DIR/x.ptx`, which `src/nn/cuda.rs` embeds.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
    for var in [
        "NVCC",
        "CUDA_HOME",
        "CUDA_COMPUTE_CAP",
        "CARGO_FEATURE_CUDA",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = find_nvcc();
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    // a bare number: "90"; "9.0" and "sm_90" are accepted too
    let cap: String = cap.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut sources: Vec<PathBuf> = std::fs::read_dir("kernels")
        .expect("kernels/ exists")
        .map(|e| e.expect("kernels/ is readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    sources.sort();
    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let stem = src.file_stem().expect("a .cu file has a name");
        let ptx = out_dir.join(Path::new(stem).with_extension("ptx"));
        // --fmad=false: the kernels repeat the CPU code's arithmetic, which fuses a multiply
        // and an add only where it says so (fmaf), so results agree to the last bit.
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17", "--fmad=false"])
            .arg(format!("-arch=compute_{cap}"))
            .arg("-o")
            .arg(&ptx)
            .arg(src)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
        if !status.success() {
            panic!("{} failed on {}: {status}", nvcc.display(), src.display());
        }
    }
}

fn find_nvcc() -> PathBuf {
    if let Some(p) = std::env::var_os("NVCC") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("nvcc");
            if p.is_file() {
                return p;
            }
        }
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        return Path::new(&home).join("bin").join("nvcc");
    }
    panic!("--features cuda needs nvcc: set NVCC, put nvcc on PATH, or set CUDA_HOME");
}
