// A grouped 2-D convolution on the GPU (ResNeXt's 3x3 layers: 64 groups of 4 to 32 channels),
// the CUDA side of `GroupedConvDirect` in src/nn/grouped_conv.rs. One thread per output value:
// it sums its group's input channels and kernel taps directly, then adds the (BN-folded) bias
// and applies the ReLU. candle runs a grouped convolution as one convolution per group plus a
// concatenation: 64 launches and copies per layer, where this is one launch.
//
// The sum runs in the CPU operator's order (channel, kernel row, kernel column), one rounding
// per multiply and per add (--fmad=false), so both give the same floats.

extern "C" __global__ void grouped_conv_f32(
    const float *x,       // [n, c_in, h, w]
    const float *weight,  // [c_out, c_in / groups, k, k]
    const float *bias,    // [c_out]
    float *out,           // [n, c_out, oh, ow]
    int n, int c_in, int h, int w, int c_out, int groups, int k, int stride, int pad,
    int oh, int ow, int relu)
{
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)n * c_out * oh * ow;
    if (idx >= total) return;
    int ox = (int)(idx % ow);
    int oy = (int)((idx / ow) % oh);
    int co = (int)((idx / ((long long)ow * oh)) % c_out);
    int img = (int)(idx / ((long long)ow * oh * c_out));
    int cig = c_in / groups;
    int g = co / (c_out / groups);
    const float *wt = weight + (long long)co * cig * k * k;
    const float *src = x + ((long long)img * c_in + (long long)g * cig) * h * w;
    float acc = 0.0f;
    for (int ci = 0; ci < cig; ci++) {
        const float *plane = src + (long long)ci * h * w;
        for (int ky = 0; ky < k; ky++) {
            int iy = oy * stride - pad + ky;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < k; kx++) {
                int ix = ox * stride - pad + kx;
                if (ix < 0 || ix >= w) continue;
                acc = acc + plane[(long long)iy * w + ix] * wt[(ci * k + ky) * k + kx];
            }
        }
    }
    float v = acc + bias[co];
    out[idx] = relu && v < 0.0f ? 0.0f : v;
}
