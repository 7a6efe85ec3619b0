// Heatmap post-processing on the GPU, the CUDA side of `FlipMerge` and `MsraPeaks` in
// src/pose/ops.rs: the flip test's merge and MMPose's MSRA decoding (argmax, quarter-pixel
// shift), so that only 3 numbers per keypoint come back to the host.
//
// Mirrors `merge_flipped` and `decode(.., Decoding::Msra)` in src/pose/codec.rs.

// out[i, c, y, x] = (plain[i, c, y, x] + mirrored[i, flip[c], y, w - 1 - max(x - 1, 0)]) / 2,
// where the batch holds the n plain heatmaps then the n mirrored ones.
extern "C" __global__ void flip_merge_f32(
    const float *hm,               // [2n, k, h, w]
    const unsigned int *flip_idx,  // [k]
    float *out,                    // [n, k, h, w]
    int n, int k, int h, int w)
{
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long plane = (long long)h * w;
    if (idx >= (long long)n * k * plane) return;
    int x = (int)(idx % w);
    int y = (int)((idx / w) % h);
    int c = (int)((idx / plane) % k);
    int i = (int)(idx / (plane * k));
    int u = x > 0 ? x - 1 : 0;
    float f = hm[(((long long)(n + i) * k + flip_idx[c]) * h + y) * w + (w - 1 - u)];
    out[idx] = (hm[idx] + f) * 0.5f;
}

// An argmax candidate: the CPU scan keeps the first maximum, NaN never wins, except that a NaN
// in the first cell is never beaten. So the order is: a NaN first cell, then larger values,
// then smaller indices.
__device__ bool beats(float v, int i, float bv, int bi)
{
    if (bi < 0) return true;
    if (bi == 0 && isnan(bv)) return false;
    if (i == 0 && isnan(v)) return true;
    return v > bv || (v == bv && i < bi);
}

__device__ float sign_of(float v)
{
    return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
}

// One warp per (instance, keypoint): argmax of the channel, then the MSRA shift. Writes
// (x, y, score) in heatmap pixels; (-1, -1) when the maximum is not above 0.
extern "C" __global__ void msra_peaks_f32(
    const float *hm,  // [m, h, w] (m = instances * keypoints)
    float *out,       // [m, 3]
    int m, int h, int w)
{
    int warp = (int)(((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32);
    int lane = threadIdx.x % 32;
    if (warp >= m) return;
    const float *ch = hm + (long long)warp * h * w;
    int size = h * w;
    float bv = 0.0f;
    int bi = -1;
    for (int i = lane; i < size; i += 32) {
        float v = ch[i];
        if ((i == 0 || !isnan(v)) && beats(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    for (int off = 16; off > 0; off /= 2) {
        float ov = __shfl_down_sync(0xffffffffu, bv, off);
        int oi = __shfl_down_sync(0xffffffffu, bi, off);
        if (oi >= 0 && beats(ov, oi, bv, bi)) {
            bv = ov;
            bi = oi;
        }
    }
    if (lane != 0) return;
    float score = bi >= 0 ? bv : __int_as_float(0x7fc00000);
    int x = -1, y = -1;
    if (bi >= 0 && score > 0.0f) {
        x = bi % w;
        y = bi / w;
    }
    float px = (float)x, py = (float)y;
    // MMPose 1.x bounds: the lower bound is 1 (not 0) on the refined axis
    if (1 < x && x < w - 1 && 0 < y && y < h) {
        px += 0.25f * sign_of(ch[y * w + x + 1] - ch[y * w + x - 1]);
    }
    if (1 < y && y < h - 1 && 0 < x && x < w) {
        py += 0.25f * sign_of(ch[(y + 1) * w + x] - ch[(y - 1) * w + x]);
    }
    out[(long long)warp * 3] = px;
    out[(long long)warp * 3 + 1] = py;
    out[(long long)warp * 3 + 2] = score;
}
