//! A CPU convolution for inference: im2col in NCHW plus one GEMM per image, with the folded
//! BN bias and the ReLU fused in.
//!
//! candle's CPU conv2d transposes every input to NHWC, builds its im2col tiles with scattered
//! writes and scatters the output back to NCHW; for HRNet those copies cost more than the
//! GEMMs. Here the im2col rows are contiguous copies of input rows (`c_in·k·k` rows of
//! `out_h·out_w` pixels), the GEMM writes NCHW output directly, starting from the bias, and
//! 1x1 stride-1 convolutions use the input as is. Images are spread over rayon's threads;
//! a batch smaller than the thread count shares out output channels instead.

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct CpuConv {
    /// `[c_out, c_in·k·k]`, PyTorch's weight layout flattened.
    weight: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
    c_in: usize,
    pub(crate) c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    pub(crate) relu: bool,
}

/// Output channels per GEMM call. Fixed, so that the channel split of batches smaller than
/// the thread count issues exactly the GEMMs of the per-image path (the gemm crate's rounding
/// depends on the shape of the call).
const ROW_CHUNK: usize = 64;

thread_local! {
    static COLUMNS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's im2col buffer, sized to `len`: reused across calls so the hot
/// path does not allocate.
fn with_columns<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COLUMNS.with(|buf| {
        let mut cols = buf.borrow_mut();
        cols.resize(len, 0.0);
        f(&mut cols[..len])
    })
}

/// `dst += weight · cols`, all row-major: `dst` is `rows x p`, `weight` `rows x kk`, `cols`
/// `kk x p` (only its first `kk·p` values are read).
fn gemm_accumulate(dst: &mut [f32], weight: &[f32], cols: &[f32], p: usize, kk: usize) {
    let rows = dst.len() / p;
    assert!(cols.len() >= kk * p && dst.len() == rows * p && weight.len() == rows * kk);
    // SAFETY: dst is rows x p, weight rows x kk, cols kk x p, all row-major and in bounds
    // (checked above); dst does not alias the inputs.
    unsafe {
        gemm(
            rows,
            p,
            kk,
            dst.as_mut_ptr(),
            1,
            p as isize,
            true,
            weight.as_ptr(),
            1,
            kk as isize,
            cols.as_ptr(),
            1,
            p as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

fn relu_in_place(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = x.max(0.0);
    }
}

impl CpuConv {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        weight: Vec<f32>,
        bias: Vec<f32>,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        relu: bool,
    ) -> Self {
        Self {
            weight: Arc::new(weight),
            bias: Arc::new(bias),
            c_in,
            c_out,
            k,
            stride,
            pad,
            relu,
        }
    }

    fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let f = |n: usize| (n + 2 * self.pad).saturating_sub(self.k) / self.stride + 1;
        (f(h), f(w))
    }

    /// The output size of a `c`x`h`x`w` input, checked to fit this convolution applied in
    /// `groups` groups (1: a plain convolution); `what` names the operation in errors.
    pub(crate) fn check_input(
        &self,
        c: usize,
        h: usize,
        w: usize,
        groups: usize,
        what: &str,
    ) -> Result<(usize, usize)> {
        let c_in = self.c_in * groups;
        if c != c_in {
            candle_core::bail!("{what} expects {c_in} input channels, got {c}");
        }
        if h + 2 * self.pad < self.k || w + 2 * self.pad < self.k {
            candle_core::bail!(
                "{what} input {h}x{w} smaller than its {0}x{0} kernel",
                self.k
            );
        }
        Ok(self.out_size(h, w))
    }

    /// A 1x1 convolution with stride 1 and no padding: the image is its own im2col matrix.
    fn is_direct(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// `(kernel, stride, padding)`.
    fn geometry(&self) -> (usize, usize, usize) {
        (self.k, self.stride, self.pad)
    }

    /// One image: `img` is `[c_in, h, w]`, `dst` is `[c_out, oh, ow]`; `residual`, shaped like
    /// `dst`, is added before the optional ReLU. With `split`, the output channels are shared
    /// out over rayon's threads (for batches smaller than the thread count).
    #[allow(clippy::too_many_arguments)]
    fn image(
        &self,
        img: &[f32],
        h: usize,
        w: usize,
        dst: &mut [f32],
        residual: Option<&[f32]>,
        relu: bool,
        split: bool,
    ) {
        if split {
            let (oh, ow) = self.out_size(h, w);
            let p = oh * ow;
            let kk = self.c_in * self.k * self.k;
            // a fresh buffer: other threads read it while this one may pick up unrelated work
            let owned;
            let cols: &[f32] = if self.is_direct() {
                img
            } else {
                let mut c = vec![0f32; kk * p];
                im2col(img, self.c_in, h, w, self.geometry(), oh, ow, &mut c);
                owned = c;
                &owned
            };
            let chunk = ROW_CHUNK;
            dst.par_chunks_mut(chunk * p)
                .enumerate()
                .for_each(|(i, d)| {
                    let res = residual.map(|r| &r[i * chunk * p..][..d.len()]);
                    self.rows(cols, p, i * chunk, d, res, relu);
                });
        } else {
            self.block(img, h, w, 0, dst, residual, relu);
        }
    }

    /// Output channels `co0..` (as many as `dst` holds) of one image `img` (`[c_in, h, w]`),
    /// on this thread: im2col into the per-thread buffer (unless the kernel is 1x1), then
    /// [`Self::rows`]. A grouped convolution is one such block per group.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn block(
        &self,
        img: &[f32],
        h: usize,
        w: usize,
        co0: usize,
        dst: &mut [f32],
        residual: Option<&[f32]>,
        relu: bool,
    ) {
        let (oh, ow) = self.out_size(h, w);
        let p = oh * ow;
        if self.is_direct() {
            self.rows(img, p, co0, dst, residual, relu);
        } else {
            with_columns(self.c_in * self.k * self.k * p, |cols| {
                im2col(img, self.c_in, h, w, self.geometry(), oh, ow, cols);
                self.rows(cols, p, co0, dst, residual, relu);
            });
        }
    }

    /// Output channels `co0..` (as many as `dst` holds rows of `p` pixels): bias (plus the
    /// residual), accumulate the GEMM of their weights with the im2col matrix `cols`, ReLU.
    fn rows(
        &self,
        cols: &[f32],
        p: usize,
        co0: usize,
        dst: &mut [f32],
        residual: Option<&[f32]>,
        relu: bool,
    ) {
        let n_rows = dst.len() / p;
        let kk = self.c_in * self.k * self.k;
        let bias = &self.bias[co0..co0 + n_rows];
        match residual {
            Some(r) => {
                for ((row, res), b) in dst.chunks_exact_mut(p).zip(r.chunks_exact(p)).zip(bias) {
                    for (d, x) in row.iter_mut().zip(res) {
                        *d = x + b;
                    }
                }
            }
            None => {
                for (row, b) in dst.chunks_exact_mut(p).zip(bias) {
                    row.fill(*b);
                }
            }
        }
        // ROW_CHUNK rows per GEMM, as the channel split of `image` computes them: the same
        // calls either way, so an image gives the same floats alone and in a batch
        for (i, d) in dst.chunks_mut(ROW_CHUNK * p).enumerate() {
            let r0 = co0 + i * ROW_CHUNK;
            let weight = &self.weight[r0 * kk..(r0 + d.len() / p) * kk];
            gemm_accumulate(d, weight, cols, p, kk);
        }
        if relu {
            relu_in_place(dst);
        }
    }
}

/// [`im2col`] for stride 2: each input row, padded, is split once into its even and odd
/// columns, and every kernel column `kj` is then a contiguous run of one of them (a strided
/// gather per tap cost several times more).
#[allow(clippy::too_many_arguments)]
fn im2col_stride2(
    img: &[f32],
    c_in: usize,
    h: usize,
    w: usize,
    (k, pad): (usize, usize),
    oh: usize,
    ow: usize,
    cols: &mut [f32],
) {
    let p = oh * ow;
    // phases[r][e] = padded_row[2e + r], 0 in the padding and beyond
    let half = ow + k / 2 + 1;
    let mut phases = vec![0f32; 2 * half];
    for ci in 0..c_in {
        let plane = &img[ci * h * w..][..h * w];
        for ki in 0..k {
            let rows = &mut cols[(ci * k + ki) * k * p..][..k * p];
            for oy in 0..oh {
                let iy = (2 * oy + ki) as isize - pad as isize;
                if iy < 0 || iy >= h as isize {
                    for kj in 0..k {
                        rows[kj * p + oy * ow..][..ow].fill(0.0);
                    }
                    continue;
                }
                let src = &plane[iy as usize * w..][..w];
                let (even, odd) = phases.split_at_mut(half);
                for (e, (ev, od)) in even.iter_mut().zip(odd.iter_mut()).enumerate() {
                    let at = |x: usize| x.checked_sub(pad).and_then(|x| src.get(x)).copied();
                    *ev = at(2 * e).unwrap_or(0.0);
                    *od = at(2 * e + 1).unwrap_or(0.0);
                }
                for kj in 0..k {
                    let phase = &phases[(kj % 2) * half + kj / 2..][..ow];
                    rows[kj * p + oy * ow..][..ow].copy_from_slice(phase);
                }
            }
        }
    }
}

/// Row `(ci·k + ki)·k + kj` holds, for every output pixel, the input pixel that kernel tap
/// (ki, kj) of channel ci sees (0 in the padding). `img` is `[c_in, h, w]`.
#[allow(clippy::too_many_arguments)]
fn im2col(
    img: &[f32],
    c_in: usize,
    h: usize,
    w: usize,
    (k, s, pad): (usize, usize, usize),
    oh: usize,
    ow: usize,
    cols: &mut [f32],
) {
    if s == 2 {
        return im2col_stride2(img, c_in, h, w, (k, pad), oh, ow, cols);
    }
    let pad = pad as isize;
    let p = oh * ow;
    let same = s == 1 && oh == h && ow == w;
    for ci in 0..c_in {
        let plane = &img[ci * h * w..][..h * w];
        for ki in 0..k {
            for kj in 0..k {
                let row = &mut cols[((ci * k + ki) * k + kj) * p..][..p];
                if same {
                    shifted_copy(plane, h, w, ki as isize - pad, kj as isize - pad, row);
                    continue;
                }
                // output columns whose input column is inside the image
                let off = kj as isize - pad;
                let lo = ((-off).max(0) as usize).div_ceil(s).min(ow);
                let hi = if (w as isize) - off <= 0 {
                    0
                } else {
                    (((w as isize - off) as usize).div_ceil(s)).min(ow)
                }
                .max(lo);
                for oy in 0..oh {
                    let d = &mut row[oy * ow..][..ow];
                    let iy = (oy * s + ki) as isize - pad;
                    if iy < 0 || iy >= h as isize {
                        d.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * w..][..w];
                    d[..lo].fill(0.0);
                    d[hi..].fill(0.0);
                    let first = (lo * s) as isize + off;
                    if s == 1 {
                        d[lo..hi].copy_from_slice(&src[first as usize..][..hi - lo]);
                    } else {
                        let taps = src[first as usize..].iter().step_by(s);
                        for (v, x) in d[lo..hi].iter_mut().zip(taps) {
                            *v = *x;
                        }
                    }
                }
            }
        }
    }
}

impl CpuConv {
    fn run(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
        residual: Option<(&CpuStorage, &Layout)>,
        relu: bool,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout)?;
        let (n, c, h, w) = layout.shape().dims4()?;
        let (oh, ow) = self.check_input(c, h, w, 1, "conv")?;
        let out_shape = Shape::from((n, self.c_out, oh, ow));
        let residual = residual_f32(residual, &out_shape)?;
        let out_per = self.c_out * oh * ow;
        let mut out = vec![0f32; n * out_per];
        let threads = rayon::current_num_threads();
        if n >= threads && threads > 1 {
            out.par_chunks_mut(out_per)
                .zip(x.par_chunks(c * h * w))
                .enumerate()
                .for_each(|(i, (dst, img))| {
                    let res = residual.map(|r| &r[i * out_per..][..out_per]);
                    self.image(img, h, w, dst, res, relu, false)
                });
        } else {
            for (i, (dst, img)) in out.chunks_mut(out_per).zip(x.chunks(c * h * w)).enumerate() {
                let res = residual.map(|r| &r[i * out_per..][..out_per]);
                self.image(img, h, w, dst, res, relu, threads > 1);
            }
        }
        Ok((CpuStorage::F32(out), out_shape))
    }
}

/// The residual operand of a fused convolution, checked to have the output's shape.
pub(crate) fn residual_f32<'a>(
    residual: Option<(&'a CpuStorage, &Layout)>,
    out_shape: &Shape,
) -> Result<Option<&'a [f32]>> {
    let Some((s, l)) = residual else {
        return Ok(None);
    };
    if l.shape() != out_shape {
        candle_core::bail!(
            "residual {:?} does not match conv output {out_shape:?}",
            l.shape()
        );
    }
    contiguous_f32(s, l).map(Some)
}

pub(crate) fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    super::transfer::cpu_slice(storage, layout, "conv")
}

/// `dst[y][x] = src[y + dy][x + dx]`, 0 outside the `h x w` plane: a "same" convolution tap
/// as one flat copy of the shifted plane, then zeroing the rows and the columns that fell
/// outside (a horizontal shift wraps them in from the neighbouring row).
fn shifted_copy(src: &[f32], h: usize, w: usize, dy: isize, dx: isize, dst: &mut [f32]) {
    let (hi_, wi) = (h as isize, w as isize);
    let y0 = (-dy).clamp(0, hi_);
    let y1 = (hi_ - dy).clamp(y0, hi_);
    let shift = dy * wi + dx;
    let (lo, hi) = (y0 * wi, y1 * wi);
    let s_lo = (lo + shift).max(0);
    let s_hi = (hi + shift).min(hi_ * wi);
    if s_hi <= s_lo {
        dst.fill(0.0);
        return;
    }
    // within [lo, hi] because s_lo >= lo + shift and s_hi <= hi + shift
    let (d_lo, d_hi) = ((s_lo - shift) as usize, (s_hi - shift) as usize);
    dst[..d_lo].fill(0.0);
    dst[d_lo..d_hi].copy_from_slice(&src[s_lo as usize..s_hi as usize]);
    dst[d_hi..].fill(0.0);
    let cols = dx.unsigned_abs().min(w);
    if cols > 0 {
        for y in y0 as usize..y1 as usize {
            let r = &mut dst[y * w..][..w];
            if dx < 0 {
                r[..cols].fill(0.0);
            } else {
                r[w - cols..].fill(0.0);
            }
        }
    }
}

impl CustomOp1 for CpuConv {
    fn name(&self) -> &'static str {
        "conv2d-bias-relu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run(storage, layout, None, self.relu)
    }
}

/// `conv(x) + bias + residual`, then ReLU when `relu`: the end of a residual block, or one
/// term of an HRNet fuse sum, in one pass.
pub struct WithResidual<'a> {
    pub conv: &'a CpuConv,
    pub relu: bool,
}

impl CustomOp2 for WithResidual<'_> {
    fn name(&self) -> &'static str {
        "conv2d-bias-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.conv.run(s1, l1, Some((s2, l2)), self.relu)
    }
}

/// `acc + nearest_upsample(y, factor)`, then ReLU when `relu` (HRNet's fuse sum; factor 1 is a
/// plain add). `y` is `[n, c, h, w]`, `acc` `[n, c, h·factor, w·factor]`.
pub struct AddUpsampled {
    pub factor: usize,
    pub relu: bool,
}

impl CustomOp2 for AddUpsampled {
    fn name(&self) -> &'static str {
        "add-upsampled-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let acc = contiguous_f32(s1, l1)?;
        let y = contiguous_f32(s2, l2)?;
        let (n, c, oh, ow) = l1.shape().dims4()?;
        let (yn, yc, yh, yw) = l2.shape().dims4()?;
        let f = self.factor;
        if (yn, yc, yh * f, yw * f) != (n, c, oh, ow) {
            candle_core::bail!(
                "cannot add {:?} upsampled x{f} to {:?}",
                l2.shape(),
                l1.shape()
            );
        }
        let mut out = acc.to_vec();
        out.par_chunks_mut(oh * ow)
            .zip(y.par_chunks(yh * yw))
            .for_each(|(o, src)| {
                for (oy, row) in o.chunks_exact_mut(ow).enumerate() {
                    let srow = &src[(oy / f) * yw..][..yw];
                    // runs of `f` outputs share a source value; no per-pixel division
                    for (run, s) in row.chunks_exact_mut(f).zip(srow) {
                        for v in run {
                            *v += s;
                        }
                    }
                    if self.relu {
                        relu_in_place(row);
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, D};

    #[test]
    fn conv_matches_candle_for_small_shapes() -> Result<()> {
        let dev = Device::Cpu;
        for k in [1, 3, 5] {
            for stride in [1, 2] {
                for h in 1..6 {
                    for w in 1..6 {
                        let (ci, co) = (2, 3);
                        let wt = Tensor::randn(0f32, 1., (co, ci, k, k), &dev)?;
                        let b = Tensor::randn(0f32, 1., co, &dev)?;
                        let op = CpuConv::new(
                            wt.flatten_all()?.to_vec1()?,
                            b.to_vec1()?,
                            ci,
                            co,
                            k,
                            stride,
                            k / 2,
                            false,
                        );
                        let x = Tensor::randn(0f32, 1., (1, ci, h, w), &dev)?;
                        let got = x.apply_op1_no_bwd(&op)?;
                        let want = x
                            .conv2d(&wt, k / 2, stride, 1, 1)?
                            .broadcast_add(&b.reshape((1, co, 1, 1))?)?;
                        let err = (got - want)?.abs()?.flatten_all()?.max(D::Minus1)?;
                        assert!(err.to_scalar::<f32>()? < 1e-4, "k {k} s {stride} {h}x{w}");
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn add_upsampled_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        for (f, relu) in [(1, false), (2, true), (4, false)] {
            let y = Tensor::randn(0f32, 1., (2, 3, 3, 2), &dev)?;
            let acc = Tensor::randn(0f32, 1., (2, 3, 3 * f, 2 * f), &dev)?;
            let got = acc.apply_op2_no_bwd(&y, &AddUpsampled { factor: f, relu })?;
            let mut want = (&acc + y.upsample_nearest2d(3 * f, 2 * f)?)?;
            if relu {
                want = want.relu()?;
            }
            let err = (got - want)?.abs()?.flatten_all()?.max(D::Minus1)?;
            assert_eq!(err.to_scalar::<f32>()?, 0.0);
        }
        Ok(())
    }
}
