// The pose crop on the GPU, the CUDA side of `CropOp` in src/pose/ops.rs: MMPose's
// TopdownAffine as OpenCV's warpAffine(INTER_LINEAR, border 0) computes it for 8-bit RGB, the
// result rounded to 8 bits, then the data preprocessor's (v - mean) / std, written planar, the
// flip-test copies mirrored left-right. One thread per output pixel (all three channels).
//
// Mirrors `warp_affine_linear` and `normalize_into` in src/pose/crop.rs expression by
// expression; the PTX is compiled with --fmad=false, so only the explicit fmaf calls fuse, as
// only the CPU's explicit mul_add calls do.

__constant__ float MEAN[3] = {123.675f, 116.28f, 103.53f};
__constant__ float STD[3] = {58.395f, 57.12f, 57.375f};

// OpenCV's vector loop covers 16 output pixels per step; the row's tail takes the scalar path.
#define STEP 16

extern "C" __global__ void pose_crop_f32(
    const unsigned char *frame,  // [src_h, src_w, 3] packed RGB
    const float *params,         // [n, 7]: the inverse affine map m0..m5 (f32), flip (0 or 1)
    float *out,                  // [n, 3, out_h, out_w]
    int n, int src_w, int src_h, int out_w, int out_h)
{
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long plane = (long long)out_w * out_h;
    if (idx >= (long long)n * plane) return;
    int i = (int)(idx / plane);
    int ox = (int)(idx % out_w);
    int y = (int)((idx / out_w) % out_h);
    const float *m = params + (long long)i * 7;
    int flip = m[6] != 0.0f;
    // the flipped copy's column ox is the crop's column out_w - 1 - ox
    int x = flip ? out_w - 1 - ox : ox;

    float v[3] = {0.0f, 0.0f, 0.0f};
    float xf = (float)x, yf = (float)y;
    float row_x = yf * m[1] + m[2];
    float row_y = yf * m[4] + m[5];
    int vector_end = out_w / STEP * STEP;
    float sx, sy;
    if (x < vector_end) {
        sx = fmaf(m[0], xf, row_x);
        sy = fmaf(m[3], xf, row_y);
    } else {
        sx = fmaf(xf, m[0], yf * m[1]) + m[2];
        sy = fmaf(xf, m[3], yf * m[4]) + m[5];
    }
    if (isfinite(sx) && isfinite(sy)) {
        float fx = floorf(sx), fy = floorf(sy);
        // all four neighbours outside: the border value (compared as floats, so that a huge
        // coordinate is never converted to an integer)
        if (!(fx + 1.0f < 0.0f || fy + 1.0f < 0.0f || fx >= (float)src_w || fy >= (float)src_h)) {
            int ix = (int)fx, iy = (int)fy;
            float a = sx - fx, b = sy - fy;
            for (int c = 0; c < 3; ++c) {
                float p[4];
                for (int t = 0; t < 4; ++t) {
                    int px = ix + (t & 1), py = iy + (t >> 1);
                    p[t] = (px >= 0 && py >= 0 && px < src_w && py < src_h)
                        ? (float)frame[((long long)py * src_w + px) * 3 + c]
                        : 0.0f;
                }
                float top = fmaf(a, p[1] - p[0], p[0]);
                float bottom = fmaf(a, p[3] - p[2], p[2]);
                float r = rintf(fmaf(b, bottom - top, top));
                v[c] = fminf(fmaxf(r, 0.0f), 255.0f);
            }
        }
    }
    for (int c = 0; c < 3; ++c) {
        out[((long long)i * 3 + c) * plane + (long long)y * out_w + ox] = (v[c] - MEAN[c]) / STD[c];
    }
}
