//! vidpose's own CUDA kernels: the PTX that `build.rs` compiles from `kernels/*.cu` (only with
//! `--features cuda`), and the few helpers the operators' `cuda_fwd` share to launch it.
//!
//! The operators live beside their CPU code (`detect::ops::roi_align`, `pose::gpu`); their
//! `cpu_fwd` is the CPU implementation, so a model gives the same results on the CPU with or
//! without the feature.

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, LaunchConfig};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::{CudaStorage, Layout, Result};

/// `kernels/roi_align.cu`.
pub(crate) const ROI_ALIGN_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/roi_align.ptx"));
/// `kernels/pose_crop.cu`.
pub(crate) const POSE_CROP_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/pose_crop.ptx"));
/// `kernels/detector_input.cu`.
pub(crate) const DETECTOR_INPUT_PTX: &str =
    include_str!(concat!(env!("OUT_DIR"), "/detector_input.ptx"));
/// `kernels/grouped_conv.cu`.
pub(crate) const GROUPED_CONV_PTX: &str =
    include_str!(concat!(env!("OUT_DIR"), "/grouped_conv.ptx"));
/// `kernels/heatmap.cu`.
pub(crate) const HEATMAP_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/heatmap.ptx"));

/// Threads per block of the one-thread-per-element kernels.
const THREADS: u32 = 256;

/// A launch with one thread per element for `n` elements (`n > 0`).
pub(crate) fn per_element(n: usize) -> Result<LaunchConfig> {
    let blocks = n.div_ceil(THREADS as usize);
    let blocks = u32::try_from(blocks).map_err(|_| {
        candle_core::Error::msg(format!("{n} elements are too many for one launch"))
    })?;
    Ok(LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// A launch with one warp (32 threads) per item for `n` items (`n > 0`).
pub(crate) fn per_warp(n: usize) -> Result<LaunchConfig> {
    per_element(n * 32)
}

/// The contiguous part of a storage a layout describes, as a view of `T`.
pub(crate) fn view<'a, T: candle_core::cuda_backend::CudaDType>(
    s: &'a CudaStorage,
    l: &Layout,
    what: &str,
) -> Result<CudaView<'a, T>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg(format!("{what}: input must be contiguous")))?;
    Ok(s.as_cuda_slice::<T>()?.slice(a..b))
}

/// A copy of a (small) device view on the host.
pub(crate) fn to_host<T: candle_core::cuda_backend::cudarc::driver::DeviceRepr>(
    dev: &CudaDevice,
    v: &CudaView<'_, T>,
) -> Result<Vec<T>> {
    dev.cuda_stream().clone_dtoh(v).w()
}

/// A host slice copied to the device.
pub(crate) fn to_device<T: candle_core::cuda_backend::cudarc::driver::DeviceRepr>(
    dev: &CudaDevice,
    v: &[T],
) -> Result<CudaSlice<T>> {
    dev.cuda_stream().clone_htod(v).w()
}

/// An `i32` kernel argument, or an error naming the size that does not fit.
pub(crate) fn int(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| candle_core::Error::msg(format!("{what} {v} exceeds i32")))
}
