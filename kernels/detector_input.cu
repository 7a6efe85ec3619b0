// The detector's input on the GPU, the CUDA side of `DetectorInput` in
// src/detect/preprocess.rs: OpenCV's resize(INTER_LINEAR) of 8-bit RGB with 11-bit fixed-point
// weights (the taps come from the host, computed once per frame size), then MMDetection's
// (v - mean) / std, written planar with zeros in the bottom/right padding. One thread per
// padded output pixel (all three channels).
//
// Mirrors `resize_linear_u8` and `normalise_padded` in src/detect/preprocess.rs expression by
// expression: integer arithmetic, then one f32 subtraction and one IEEE division per value.

__constant__ float DET_MEAN[3] = {123.675f, 116.28f, 103.53f};
__constant__ float DET_STD[3] = {58.395f, 57.12f, 57.375f};

extern "C" __global__ void detector_input_f32(
    const unsigned char *frame,  // [h, w, 3] packed RGB
    const unsigned *taps,        // [nw + nh, 4]: two source indices, two weights (x, then y)
    float *out,                  // [3, ph, pw]
    int w, int h, int nw, int nh, int pw, int ph,
    int vectorised)              // OpenCV's SIMD rounding of the vertical pass (rows >= 16 values)
{
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long plane = (long long)pw * ph;
    if (idx >= plane) return;
    int x = (int)(idx % pw);
    int y = (int)(idx / pw);
    if (x >= nw || y >= nh) {
        for (int c = 0; c < 3; c++) out[c * plane + idx] = 0.0f;
        return;
    }
    const unsigned *xt = taps + 4 * x;
    const unsigned *yt = taps + 4 * (nw + y);
    int sx = (int)xt[0], sx1 = (int)xt[1], a0 = (int)xt[2], a1 = (int)xt[3];
    int b0 = (int)yt[2], b1 = (int)yt[3];
    const unsigned char *row0 = frame + (long long)yt[0] * w * 3;
    const unsigned char *row1 = frame + (long long)yt[1] * w * 3;
    for (int c = 0; c < 3; c++) {
        int r0 = (int)row0[sx * 3 + c] * a0 + (int)row0[sx1 * 3 + c] * a1;
        int r1 = (int)row1[sx * 3 + c] * a0 + (int)row1[sx1 * 3 + c] * a1;
        int v;
        if (vectorised) {
            int a = ((r0 >> 4) * b0) >> 16;
            int b = ((r1 >> 4) * b1) >> 16;
            v = (a + b + 2) >> 2;
        } else {
            v = (r0 * b0 + r1 * b1 + (1 << 21)) >> 22;
        }
        v = min(max(v, 0), 255);
        out[c * plane + idx] = ((float)v - DET_MEAN[c]) / DET_STD[c];
    }
}
