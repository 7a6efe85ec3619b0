//! Shared candle building blocks: checkpoint loading, the device, and the convolution layer
//! with its kernels, and (with `--features cuda`) the PTX of vidpose's own CUDA kernels.

pub(crate) mod checkpoint;
pub(crate) mod conv;
pub(crate) mod cpu_conv;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod device;
pub(crate) mod grouped_conv;
pub mod memory;
pub mod transfer;
pub(crate) mod winograd;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointFormat};
pub use conv::{Conv, ConvSpec};
pub use grouped_conv::GroupedConvDirect;

#[cfg(test)]
mod tests {
    /// build.rs compiles kernels only for `--features cuda`: a CPU build needs no nvcc.
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn build_script_compiles_no_kernels_without_cuda() {
        let ptx: Vec<_> = std::fs::read_dir(env!("OUT_DIR"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "ptx"))
            .collect();
        assert!(ptx.is_empty(), "{ptx:?}");
    }

    /// Every kernel source has its PTX embedded (a new .cu needs its constant in `cuda.rs`).
    #[test]
    fn every_kernel_source_is_embedded() {
        let root = env!("CARGO_MANIFEST_DIR");
        let embedding = std::fs::read_to_string(format!("{root}/src/nn/cuda.rs")).unwrap();
        for e in std::fs::read_dir(format!("{root}/kernels")).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "cu") {
                let stem = path.file_stem().unwrap().to_string_lossy().to_string();
                assert!(
                    embedding.contains(&format!("\"/{stem}.ptx\"")),
                    "kernels/{stem}.cu is not embedded in src/nn/cuda.rs"
                );
            }
        }
    }
}
