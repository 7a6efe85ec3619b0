//! Winograd convolution for 3x3, stride-1, padding-1 layers on the CPU (HRNet's basic blocks).
//!
//! F(m x m, 3x3) computes an m x m output tile from an (m+2) x (m+2) input tile with (m+2)²
//! multiplications per channel pair instead of 9·m²: the weights are transformed once, on first
//! use (`U = G g Gᵀ`), input tiles per call (`V = Bᵀ d B`), and the convolution becomes one
//! GEMM per transform point ξ, `M[ξ] = U[ξ] · V[ξ]` (`c_out x c_in` times `c_in x tiles`),
//! followed by the output transform `Y = Aᵀ M A`, which also adds the bias (and a residual)
//! and applies the ReLU. F(2x2) needs 2.25x fewer multiplications than the direct
//! convolution, F(4x4) 4x, at a larger rounding error (see [`TileSize`]).
//!
//! Work is split into blocks (whole images on small maps, runs of tile rows of one image on
//! large ones) of a few MiB of tile matrices, at least one per thread; blocks run on rayon's
//! threads and write disjoint output rows. The transforms work on [`LANES`] horizontally
//! adjacent tiles at once, reading each input row split into its `m` phases (`x ≡ r mod m`)
//! so that every load is contiguous.

use std::cell::RefCell;
use std::ops::{Add, Mul, Sub};
use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::cpu_conv::{contiguous_f32, residual_f32};

/// Adjacent tiles transformed together.
const LANES: usize = 8;

/// The output tile side of a Winograd convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TileSize {
    /// F(2x2, 3x3): 16 transform points, errors close to the direct convolution's.
    F2,
    /// F(4x4, 3x3), for the layers that allow it on wide maps (`ConvSpec::wide_tiles`):
    /// 36 transform points; the transforms' larger constants cost precision
    /// (full-size HRNet-W32 against MMPose: heatmap error 2.1e-5 of the peak, against 1.0e-5
    /// with F(2x2) or the im2col kernel; the parity bound is 1e-4).
    F4,
}

#[derive(Clone, Copy)]
struct L([f32; LANES]);

impl L {
    /// `s[i..i + LANES]`, unchecked: the transforms' index arithmetic keeps within the
    /// buffers (asserted once per call, see [`Geometry::check`]), and per-access bounds
    /// checks would cost more than the arithmetic.
    ///
    /// # Safety
    /// `i + LANES <= s.len()`.
    #[inline(always)]
    unsafe fn load(s: &[f32], i: usize) -> Self {
        debug_assert!(i + LANES <= s.len());
        L(s.as_ptr().add(i).cast::<[f32; LANES]>().read_unaligned())
    }
    /// `d[i..i + LANES] = self`, unchecked like [`L::load`].
    ///
    /// # Safety
    /// `i + LANES <= d.len()`.
    #[inline(always)]
    unsafe fn store(self, d: &mut [f32], i: usize) {
        debug_assert!(i + LANES <= d.len());
        d.as_mut_ptr()
            .add(i)
            .cast::<[f32; LANES]>()
            .write_unaligned(self.0)
    }
}

impl L {
    const ZERO: L = L([0.0; LANES]);
}

/// `[f(0), …, f(N − 1)]`, inlined (`std::array::from_fn` is not always, and a call here
/// costs more than the arithmetic).
#[inline(always)]
fn gather<const N: usize>(f: impl Fn(usize) -> L) -> [L; N] {
    let mut a = [L::ZERO; N];
    for (i, a) in a.iter_mut().enumerate() {
        *a = f(i);
    }
    a
}

impl Add for L {
    type Output = L;
    #[inline(always)]
    fn add(self, o: L) -> L {
        let mut r = self.0;
        for (r, o) in r.iter_mut().zip(o.0) {
            *r += o;
        }
        L(r)
    }
}

impl Sub for L {
    type Output = L;
    #[inline(always)]
    fn sub(self, o: L) -> L {
        let mut r = self.0;
        for (r, o) in r.iter_mut().zip(o.0) {
            *r -= o;
        }
        L(r)
    }
}

impl Mul<f32> for L {
    type Output = L;
    #[inline(always)]
    fn mul(self, k: f32) -> L {
        let mut r = self.0;
        for r in r.iter_mut() {
            *r *= k;
        }
        L(r)
    }
}

/// The transforms of F(M x M, 3x3), A = M + 2 points.
trait Tile<const M: usize, const A: usize> {
    /// `G`, `A x 3`: the weight transform.
    const G: [[f64; 3]; A];
    /// `Bᵀ d` for one column `d` of an input tile.
    fn bt(d: [L; A]) -> [L; A];
    /// `Aᵀ m` for one column `m` of a transformed output tile.
    fn at(m: [L; A]) -> [L; M];
}

struct F2;

impl Tile<2, 4> for F2 {
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    #[inline(always)]
    fn bt([d0, d1, d2, d3]: [L; 4]) -> [L; 4] {
        [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
    }
    #[inline(always)]
    fn at([m0, m1, m2, m3]: [L; 4]) -> [L; 2] {
        [m0 + m1 + m2, m1 - m2 - m3]
    }
}

struct F4;

impl Tile<4, 6> for F4 {
    // Lavin & Gray's points 0, ±1, ±2, ∞.
    const G: [[f64; 3]; 6] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    #[inline(always)]
    fn bt([d0, d1, d2, d3, d4, d5]: [L; 6]) -> [L; 6] {
        let (a, b) = (d4 - d2, d3 - d1);
        [
            d0 * 4.0 - d2 * 5.0 + d4,
            (d3 + d4) - (d1 + d2) * 4.0,
            (d4 - d3) + (d1 - d2) * 4.0,
            a + b * 2.0,
            a - b * 2.0,
            d1 * 4.0 - d3 * 5.0 + d5,
        ]
    }
    #[inline(always)]
    fn at([m0, m1, m2, m3, m4, m5]: [L; 6]) -> [L; 4] {
        let (a, b, c, d) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        [m0 + a + c, b + d * 2.0, a + c * 4.0, b + d * 8.0 + m5]
    }
}

/// A 3x3, stride-1, padding-1 convolution by Winograd's algorithm, bias and ReLU fused.
#[derive(Debug, Clone)]
pub(crate) struct Winograd {
    /// `[c_out, c_in, 3, 3]`, PyTorch's layout flattened.
    weight: Arc<Vec<f32>>,
    /// `[ξ][c_out][c_in]`: the transformed weights of each tile size, made on first use
    /// (a layer sees one map size, hence one tile size, and F(4x4)'s are 4x the weights).
    u2: Arc<OnceLock<Vec<f32>>>,
    u4: Arc<OnceLock<Vec<f32>>>,
    bias: Arc<Vec<f32>>,
    c_in: usize,
    c_out: usize,
}

#[derive(Default)]
struct Buffers {
    /// Input rows split into phases.
    phases: Vec<f32>,
    /// Transformed input, `[ξ][c_in][tiles]`.
    v: Vec<f32>,
    /// GEMM output, `[ξ][c_out][tiles]`.
    m: Vec<f32>,
    /// Output rows of one tile row, before bias/residual/ReLU.
    rows: Vec<f32>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// The output, shared by the blocks: each writes only its own rows.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: blocks write disjoint rows (see `Span`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    // a method, so that closures capture the whole (Sync) wrapper, not its raw field
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

impl Winograd {
    /// `weight` is PyTorch's `[c_out, c_in, 3, 3]`, flattened.
    pub(crate) fn new(
        weight: Arc<Vec<f32>>,
        bias: Arc<Vec<f32>>,
        c_in: usize,
        c_out: usize,
    ) -> Self {
        assert_eq!(weight.len(), c_out * c_in * 9);
        Self {
            weight,
            u2: Arc::default(),
            u4: Arc::default(),
            bias,
            c_in,
            c_out,
        }
    }

    /// `x` is `[n, c_in, h, w]`; returns `[n, c_out, h, w]`. `residual`, shaped like the
    /// output, is added before the optional ReLU.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        &self,
        tile: TileSize,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        residual: Option<&[f32]>,
        relu: bool,
    ) -> Vec<f32> {
        let (c_in, c_out) = (self.c_in, self.c_out);
        match tile {
            TileSize::F2 => {
                let u = self
                    .u2
                    .get_or_init(|| transform_weights::<F2, 2, 4>(&self.weight, c_in, c_out));
                self.run_t::<F2, 2, 4>(u, x, n, h, w, residual, relu)
            }
            TileSize::F4 => {
                let u = self
                    .u4
                    .get_or_init(|| transform_weights::<F4, 4, 6>(&self.weight, c_in, c_out));
                self.run_t::<F4, 4, 6>(u, x, n, h, w, residual, relu)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_t<T: Tile<M, A>, const M: usize, const A: usize>(
        &self,
        u: &[f32],
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        residual: Option<&[f32]>,
        relu: bool,
    ) -> Vec<f32> {
        assert_eq!(x.len(), n * self.c_in * h * w);
        let (th, tw) = (h.div_ceil(M), w.div_ceil(M));
        // Tiles per block: the transformed input (A²·c_in floats per tile) and the GEMM output
        // (A²·c_out) within about 2 MiB (measured: larger blocks beat L2-sized ones, the GEMMs
        // get longer), yet at least one block per thread.
        let per_thread = (n * th * tw).div_ceil(rayon::current_num_threads().max(1));
        let target = (BLOCK_FLOATS / (A * A * (self.c_in + self.c_out)))
            .min(per_thread)
            .max(1);
        // Small maps: whole images per block; large ones: runs of tile rows of one image.
        let per_image = th * tw;
        let blocks: Vec<Span> = if per_image >= target {
            let rows = (target / tw).clamp(1, th);
            (0..n)
                .flat_map(|img| {
                    (0..th).step_by(rows).map(move |ty0| Span {
                        img0: img,
                        img1: img + 1,
                        ty0,
                        ty1: (ty0 + rows).min(th),
                    })
                })
                .collect()
        } else {
            let imgs = (target / per_image).max(1);
            (0..n)
                .step_by(imgs)
                .map(|img0| Span {
                    img0,
                    img1: (img0 + imgs).min(n),
                    ty0: 0,
                    ty1: th,
                })
                .collect()
        };
        // Left uninitialised: the blocks write every value (each output row of every channel
        // of every image lies in exactly one span), and zero-filling tens of MiB per layer
        // cost a few percent of a pass.
        let len = n * self.c_out * h * w;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        if let Some(r) = residual {
            assert_eq!(r.len(), len);
        }
        let dst = OutPtr(out.as_mut_ptr());
        blocks.par_iter().for_each(|span| {
            BUFFERS.with(|b| {
                let (i0, i1) = (span.img0 * h * w, span.img1 * h * w);
                let res = residual.map(|r| &r[i0 * self.c_out..i1 * self.c_out]);
                // SAFETY: the block writes only output rows of its own span (see `Span`),
                // which `out`, alive until after the loop, holds.
                let out = OutPtr(unsafe { dst.ptr().add(i0 * self.c_out) });
                self.block::<T, M, A>(
                    &mut b.borrow_mut(),
                    u,
                    &x[i0 * self.c_in..i1 * self.c_in],
                    h,
                    w,
                    span,
                    out,
                    res,
                    relu,
                );
            })
        });
        // SAFETY: every one of the `len` values was written by the blocks above (see the
        // allocation).
        unsafe { out.set_len(len) };
        out
    }

    /// Tile rows `ty0..ty1` of one image: transform, GEMMs, output transform.
    #[allow(clippy::too_many_arguments)]
    fn block<T: Tile<M, A>, const M: usize, const A: usize>(
        &self,
        buf: &mut Buffers,
        u_all: &[f32],
        img: &[f32],
        h: usize,
        w: usize,
        span: &Span,
        out: OutPtr,
        residual: Option<&[f32]>,
        relu: bool,
    ) {
        let (c_in, c_out) = (self.c_in, self.c_out);
        let Span { ty0, ty1, .. } = *span;
        let images = span.img1 - span.img0;
        let nt = images * (ty1 - ty0) * w.div_ceil(M);
        let g = Geometry {
            h,
            w,
            images,
            ty0,
            ty1,
            tw: w.div_ceil(M),
            // a tile reads phases at t and t + 1; whole groups of LANES
            pw: w.div_ceil(M).next_multiple_of(LANES) + LANES,
            // LANES spare columns take the overrun of the last group of tiles
            ld: nt + LANES,
        };
        let in_rows = M * (ty1 - ty0) + 2;
        let Buffers { phases, v, m, rows } = buf;
        let phases = grow(phases, (in_rows + 1) * M * g.pw);
        let v = grow(v, A * A * c_in * g.ld);
        let m = grow(m, A * A * c_out * g.ld);
        let rows = grow(rows, (A + M) * M * g.pw);
        transforms::input::<T, M, A>(img, c_in, &g, phases, rows, v);
        // One GEMM per transform point.
        let ld = g.ld;
        for xi in 0..A * A {
            let u = &u_all[xi * c_out * c_in..][..c_out * c_in];
            let vx = &v[xi * c_in * ld..][..c_in * ld];
            let mx = &mut m[xi * c_out * ld..][..c_out * ld];
            // SAFETY: mx is c_out x nt with row stride ld, u c_out x c_in row-major, vx
            // c_in x nt with row stride ld, all in bounds; mx aliases neither.
            unsafe {
                gemm(
                    c_out,
                    nt,
                    c_in,
                    mx.as_mut_ptr(),
                    1,
                    ld as isize,
                    false,
                    u.as_ptr(),
                    1,
                    c_in as isize,
                    vx.as_ptr(),
                    1,
                    ld as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                )
            }
        }
        transforms::output::<T, M, A>(m, c_out, &g, &self.bias, out, residual, relu, rows);
    }
}

/// A block: tile rows `ty0..ty1` of images `img0..img1` (all tile rows when it spans several
/// images). Its output is rows `M·ty0..M·ty1` of those images, every channel.
struct Span {
    img0: usize,
    img1: usize,
    ty0: usize,
    ty1: usize,
}

/// Where a block lies in its images, and its buffers' strides.
struct Geometry {
    h: usize,
    w: usize,
    /// Images in the block.
    images: usize,
    ty0: usize,
    ty1: usize,
    /// Tiles per tile row.
    tw: usize,
    /// Length of one phase of an input row (a multiple of LANES).
    pw: usize,
    /// Row stride of the tile matrices.
    ld: usize,
}

impl Geometry {
    /// The invariants the unchecked loads and stores of the transforms rely on.
    fn check<const M: usize>(&self) {
        let nt = self.images * (self.ty1 - self.ty0) * self.tw;
        assert!(self.tw == self.w.div_ceil(M) && self.ld >= nt + LANES);
        assert!(self.pw.is_multiple_of(LANES) && self.pw > self.tw.next_multiple_of(LANES));
    }
}

/// The input and output transforms, compiled for AVX2 where the CPU has it (the crate's
/// baseline is SSE2, and the transforms are a good part of the time).
mod transforms {
    use super::{gather, split_phases, Geometry, OutPtr, Tile, L, LANES};

    #[cfg(target_arch = "x86_64")]
    fn avx2() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// `V[ξ][c][t] = (Bᵀ d B)[i][k]` for every input channel `c` and tile `t` of the block.
    pub(super) fn input<T: Tile<M, A>, const M: usize, const A: usize>(
        img: &[f32],
        c_in: usize,
        g: &Geometry,
        phases: &mut [f32],
        e: &mut [f32],
        v: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { input_avx2::<T, M, A>(img, c_in, g, phases, e, v) };
        }
        input_impl::<T, M, A>(img, c_in, g, phases, e, v)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn input_avx2<T: Tile<M, A>, const M: usize, const A: usize>(
        img: &[f32],
        c_in: usize,
        g: &Geometry,
        phases: &mut [f32],
        e: &mut [f32],
        v: &mut [f32],
    ) {
        input_impl::<T, M, A>(img, c_in, g, phases, e, v)
    }

    #[inline(always)]
    fn input_impl<T: Tile<M, A>, const M: usize, const A: usize>(
        img: &[f32],
        c_in: usize,
        g: &Geometry,
        phases: &mut [f32],
        e: &mut [f32],
        v: &mut [f32],
    ) {
        let Geometry {
            h,
            w,
            images,
            ty0,
            ty1,
            tw,
            pw,
            ld,
        } = *g;
        let rl = M * pw; // one input row, split into phases
        let in_rows = M * (ty1 - ty0) + 2;
        g.check::<M>();
        assert!(img.len() >= images * c_in * h * w);
        assert!(phases.len() >= (in_rows + 1) * rl && e.len() >= A * rl);
        assert!(v.len() >= A * A * c_in * ld);
        let y_first = (M * ty0) as isize - 1;
        for (im, c) in (0..images).flat_map(|im| (0..c_in).map(move |c| (im, c))) {
            let plane = &img[(im * c_in + c) * h * w..][..h * w];
            // phases[row][r][t] = input[y_first + row][M·t + r − 1], 0 outside; the extra
            // last row stays 0 and stands for rows outside the image.
            let (ph, zero) = phases.split_at_mut(in_rows * rl);
            zero[..rl].fill(0.0);
            for (row, p) in ph.chunks_exact_mut(rl).enumerate() {
                let y = y_first + row as isize;
                if y < 0 || y >= h as isize {
                    p.fill(0.0);
                } else {
                    split_phases::<M>(&plane[y as usize * w..][..w], p, pw);
                }
            }
            let phases = &*phases;
            for ty in ty0..ty1 {
                let rows_at: [&[f32]; A] = std::array::from_fn(|j| {
                    let row = M * (ty - ty0) + j;
                    let y = y_first + row as isize;
                    let row = if y < 0 || y >= h as isize {
                        in_rows
                    } else {
                        row
                    };
                    &phases[row * rl..][..rl]
                });
                // columns: e[i] = Σ_j Bᵀ[i][j] row_j, elementwise (phases permute x only)
                // SAFETY (loads and stores below): rows are rl = M·pw long, rl is a multiple of
                // LANES, e holds A rows (checked by Geometry::check); the row pass reads up to
                // phase M − 1 at tile tx + 1 + LANES ≤ pw and writes tiles up to
                // t_row + tx + LANES ≤ nt + LANES ≤ ld.
                for x in (0..rl).step_by(LANES) {
                    let col = T::bt(gather(|j| unsafe { L::load(rows_at[j], x) }));
                    for (i, val) in col.into_iter().enumerate() {
                        unsafe { val.store(e, i * rl + x) };
                    }
                }
                // rows: tile element q of e[i] is phase q mod M at tile t + q / M
                let t_row = (im * (ty1 - ty0) + ty - ty0) * tw;
                for i in 0..A {
                    let ei = &e[i * rl..][..rl];
                    for tx in (0..tw).step_by(LANES) {
                        let out = T::bt(gather(|q| unsafe {
                            L::load(ei, (q % M) * pw + tx + q / M)
                        }));
                        for (k, val) in out.into_iter().enumerate() {
                            unsafe { val.store(v, ((i * A + k) * c_in + c) * ld + t_row + tx) };
                        }
                    }
                }
            }
        }
    }

    /// `Y = Aᵀ M A` for every output channel and tile of the block, plus the bias (and the
    /// residual), ReLU, written to the block's rows of `out` (`[c_out, h, w]`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn output<T: Tile<M, A>, const M: usize, const A: usize>(
        m: &[f32],
        c_out: usize,
        g: &Geometry,
        bias: &[f32],
        out: OutPtr,
        residual: Option<&[f32]>,
        relu: bool,
        s: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { output_avx2::<T, M, A>(m, c_out, g, bias, out, residual, relu, s) };
        }
        output_impl::<T, M, A>(m, c_out, g, bias, out, residual, relu, s)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn output_avx2<T: Tile<M, A>, const M: usize, const A: usize>(
        m: &[f32],
        c_out: usize,
        g: &Geometry,
        bias: &[f32],
        out: OutPtr,
        residual: Option<&[f32]>,
        relu: bool,
        s: &mut [f32],
    ) {
        output_impl::<T, M, A>(m, c_out, g, bias, out, residual, relu, s)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn output_impl<T: Tile<M, A>, const M: usize, const A: usize>(
        m: &[f32],
        c_out: usize,
        g: &Geometry,
        bias: &[f32],
        out: OutPtr,
        residual: Option<&[f32]>,
        relu: bool,
        s: &mut [f32],
    ) {
        let Geometry {
            h,
            w,
            images,
            ty0,
            ty1,
            tw,
            pw,
            ld,
        } = *g;
        // s[r][k]: Aᵀ applied to the columns, as rows over tiles; then rows[r]: output row r
        g.check::<M>();
        assert!(m.len() >= A * A * c_out * ld && s.len() >= (A + M) * M * pw);
        let (s, rows) = s.split_at_mut(M * A * pw);
        for (im, co) in (0..images).flat_map(|im| (0..c_out).map(move |co| (im, co))) {
            let b = bias[co];
            let plane = (im * c_out + co) * h * w;
            let res = residual.map(|r| &r[plane..][..h * w]);
            for ty in ty0..ty1 {
                let t_row = (im * (ty1 - ty0) + ty - ty0) * tw;
                for k in 0..A {
                    for tx in (0..tw).step_by(LANES) {
                        let col = T::at(gather(|i| {
                            // SAFETY: as in `input_impl`, tiles up to t_row + tx + LANES ≤ ld
                            unsafe { L::load(m, ((i * A + k) * c_out + co) * ld + t_row + tx) }
                        }));
                        for (r, val) in col.into_iter().enumerate() {
                            // SAFETY: s holds M·A rows of pw ≥ tx + LANES
                            unsafe { val.store(s, (r * A + k) * pw + tx) };
                        }
                    }
                }
                for r in 0..M {
                    let row = &mut rows[r * M * pw..][..M * pw];
                    for tx in (0..tw).step_by(LANES) {
                        let y = T::at(gather(|k| unsafe { L::load(s, (r * A + k) * pw + tx) }));
                        // interleave: output column M·(tx + l) + q
                        let dst = &mut row[M * tx..][..M * LANES];
                        for l in 0..LANES {
                            for (q, yq) in y.iter().enumerate() {
                                dst[M * l + q] = yq.0[l];
                            }
                        }
                    }
                }
                for r in 0..M {
                    let y = M * ty + r;
                    if y >= h {
                        break;
                    }
                    let src = &mut rows[r * M * pw..][..w];
                    match res {
                        Some(res) => {
                            for (s, x) in src.iter_mut().zip(&res[y * w..][..w]) {
                                *s = *s + b + x;
                            }
                        }
                        None => {
                            for s in src.iter_mut() {
                                *s += b;
                            }
                        }
                    }
                    if relu {
                        for s in src.iter_mut() {
                            *s = s.max(0.0);
                        }
                    }
                    // SAFETY: row y of this plane belongs to this block's span (see `Span`)
                    // and lies inside the output's allocation; a plain copy, because the
                    // output is not initialised before this write (see `run_t`).
                    unsafe {
                        std::ptr::copy_nonoverlapping(src.as_ptr(), out.ptr().add(plane + y * w), w)
                    };
                }
            }
        }
    }
}

/// A Winograd convolution applied as a candle op: `conv(x) + bias`, plus the second operand
/// (a residual) for [`CustomOp2`], then ReLU when `relu`.
pub(crate) struct WinogradOp<'a> {
    pub conv: &'a Winograd,
    pub tile: TileSize,
    pub relu: bool,
}

impl WinogradOp<'_> {
    fn apply(
        &self,
        s: &CpuStorage,
        l: &Layout,
        residual: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l)?;
        let (n, c, h, w) = l.shape().dims4()?;
        if c != self.conv.c_in {
            candle_core::bail!("conv expects {} input channels, got {c}", self.conv.c_in);
        }
        let shape = Shape::from((n, self.conv.c_out, h, w));
        let res = residual_f32(residual, &shape)?;
        let out = self.conv.run(self.tile, x, n, h, w, res, self.relu);
        Ok((CpuStorage::F32(out), shape))
    }
}

impl CustomOp1 for WinogradOp<'_> {
    fn name(&self) -> &'static str {
        "winograd-conv3x3-bias-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.apply(s, l, None)
    }
}

impl CustomOp2 for WinogradOp<'_> {
    fn name(&self) -> &'static str {
        "winograd-conv3x3-bias-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.apply(s1, l1, Some((s2, l2)))
    }
}

/// `p[r·pw + t] = src[M·t + r − 1]`, 0 outside `src` (the padding column on the left, the
/// right edge and the spare lanes).
#[inline(always)]
fn split_phases<const M: usize>(src: &[f32], p: &mut [f32], pw: usize) {
    let w = src.len();
    for r in 0..M {
        let ph = &mut p[r * pw..][..pw];
        // x = M·t + r − 1 ∈ [0, w): t from t0 (r = 0 starts in the padding) to t1
        let t0 = usize::from(r == 0);
        let t1 = (w + 1).saturating_sub(r).div_ceil(M).min(pw).max(t0);
        ph[..t0].fill(0.0);
        for (t, d) in ph[t0..t1].iter_mut().enumerate() {
            *d = src[M * (t + t0) + r - 1];
        }
        ph[t1..].fill(0.0);
    }
}

/// A block's tile matrices (transformed input and GEMM output), in floats.
const BLOCK_FLOATS: usize = 512 * 1024;

/// `U[ξ][co][ci] = (G g Gᵀ)[i][k]`, `ξ = i·A + k`, in f64.
fn transform_weights<T: Tile<M, A>, const M: usize, const A: usize>(
    weight: &[f32],
    c_in: usize,
    c_out: usize,
) -> Vec<f32> {
    assert_eq!(weight.len(), c_out * c_in * 9);
    let g = T::G;
    let mut u = vec![0f32; A * A * c_out * c_in];
    for co in 0..c_out {
        for ci in 0..c_in {
            let k = &weight[(co * c_in + ci) * 9..][..9];
            // gg = G · k (A x 3)
            let gk: [[f64; 3]; A] = std::array::from_fn(|i| {
                std::array::from_fn(|c| (0..3).map(|r| g[i][r] * k[r * 3 + c] as f64).sum())
            });
            for i in 0..A {
                for j in 0..A {
                    let val: f64 = (0..3).map(|c| gk[i][c] * g[j][c]).sum();
                    u[((i * A + j) * c_out + co) * c_in + ci] = val as f32;
                }
            }
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, D};

    #[test]
    fn winograd_matches_candle_conv() -> Result<()> {
        let dev = Device::Cpu;
        for tile in [TileSize::F2, TileSize::F4] {
            for (ci, co, h, w, n) in [
                (3, 5, 9, 7, 2),
                (4, 6, 1, 1, 1),
                (2, 3, 2, 5, 3),
                (8, 4, 17, 30, 1),
                (5, 7, 8, 6, 2),
            ] {
                let wt = Tensor::randn(0f32, 1., (co, ci, 3, 3), &dev)?;
                let b = Tensor::randn(0f32, 1., co, &dev)?;
                let x = Tensor::randn(0f32, 1., (n, ci, h, w), &dev)?;
                let r = Tensor::randn(0f32, 1., (n, co, h, w), &dev)?;
                let op = Winograd::new(
                    Arc::new(wt.flatten_all()?.to_vec1::<f32>()?),
                    Arc::new(b.to_vec1::<f32>()?),
                    ci,
                    co,
                );
                let xs = x.flatten_all()?.to_vec1::<f32>()?;
                let rs = r.flatten_all()?.to_vec1::<f32>()?;
                let base = x
                    .conv2d(&wt, 1, 1, 1, 1)?
                    .broadcast_add(&b.reshape((1, co, 1, 1))?)?;
                for (res, relu) in [(false, false), (true, true), (false, true)] {
                    let got = op.run(tile, &xs, n, h, w, res.then_some(&rs[..]), relu);
                    let got = Tensor::from_vec(got, (n, co, h, w), &dev)?;
                    let mut want = if res { (&base + &r)? } else { base.clone() };
                    if relu {
                        want = want.relu()?;
                    }
                    // relative to the output's magnitude: F(4x4) rounds at up to ~1e-5 of it
                    let scale = want.abs()?.flatten_all()?.max(D::Minus1)?;
                    let scale = scale.to_scalar::<f32>()?.max(1.0);
                    let err = (got - want)?.abs()?.flatten_all()?.max(D::Minus1)?;
                    let err = err.to_scalar::<f32>()? / scale;
                    assert!(err < 5e-5, "{tile:?} {ci} {co} {h}x{w} n={n}: {err}");
                }
            }
        }
        Ok(())
    }

    /// Timing of the kernels on HRNet-W32's shapes (batch 8), not a test:
    /// `cargo test --release --lib winograd_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn winograd_timing() -> Result<()> {
        use crate::nn::cpu_conv::CpuConv;
        use std::time::Instant;
        let dev = Device::Cpu;
        let n = 8;
        for (c, h, w) in [
            (32, 64, 48),
            (64, 64, 48),
            (64, 32, 24),
            (128, 16, 12),
            (256, 8, 6),
        ] {
            let wt: Vec<f32> = Tensor::randn(0f32, 1., (c, c, 3, 3), &dev)?
                .flatten_all()?
                .to_vec1()?;
            let b = vec![0.1f32; c];
            let x = Tensor::randn(0f32, 1., (n, c, h, w), &dev)?;
            let xs = x.flatten_all()?.to_vec1::<f32>()?;
            let direct = CpuConv::new(wt.clone(), b.clone(), c, c, 3, 1, 1, true);
            let wino = Winograd::new(Arc::new(wt.clone()), Arc::new(b.clone()), c, c);
            let time = |f: &dyn Fn()| {
                f();
                (0..15)
                    .map(|_| {
                        let t = Instant::now();
                        f();
                        t.elapsed().as_secs_f64() * 1e3
                    })
                    .fold(f64::INFINITY, f64::min)
            };
            let td = time(&|| {
                x.apply_op1_no_bwd(&direct).unwrap();
            });
            let t2 = time(&|| {
                wino.run(TileSize::F2, &xs, n, h, w, None, true);
            });
            let t4 = time(&|| {
                wino.run(TileSize::F4, &xs, n, h, w, None, true);
            });
            println!("{c}x{h}x{w}: direct {td:.2} ms, F2 {t2:.2} ms, F4 {t4:.2} ms");
        }
        Ok(())
    }
}
