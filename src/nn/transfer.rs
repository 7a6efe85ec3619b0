//! Data between the host and candle: a frame's bytes on a device (reusing a copy already
//! there), and the contiguous values of a CPU storage for the custom operators' `cpu_fwd`.

use candle_core::{CpuStorage, Device, Layout, Result, Tensor, WithDType};

use crate::image::RgbImage;

/// `img`'s bytes on `device`, `[h, w, 3]` u8: what the detector's input and the pose crop
/// operators read.
pub fn upload_frame(img: &RgbImage, device: &Device) -> Result<Tensor> {
    Tensor::from_slice(
        &img.data,
        (img.height as usize, img.width as usize, 3),
        device,
    )
}

/// `uploaded` when it can be `img`'s copy on `device` (that device, that size), else a new
/// upload: a frame the detector put on the GPU is not sent again.
pub fn frame_on_device(
    img: &RgbImage,
    uploaded: Option<&Tensor>,
    device: &Device,
) -> Result<Tensor> {
    let (w, h) = (img.width as usize, img.height as usize);
    match uploaded {
        Some(t) if t.device().same_device(device) && t.dims() == [h, w, 3] => Ok(t.clone()),
        _ => upload_frame(img, device),
    }
}

/// The values a contiguous `layout` of `storage` describes; `what` names the operator in the
/// error for a strided one.
pub(crate) fn cpu_slice<'a, T: WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> Result<&'a [T]> {
    let (a, b) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg(format!("{what}: input must be contiguous")))?;
    Ok(&storage.as_slice::<T>()?[a..b])
}
