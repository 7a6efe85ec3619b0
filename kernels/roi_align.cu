// RoIAlign (average pooling) with mmcv's semantics, the CUDA side of `RoiAlign` in
// src/detect/ops/roi_align.rs. One thread per output value (roi, channel, bin row, bin column).
//
// The arithmetic repeats the CPU op's expressions in the same order; the PTX is compiled with
// --fmad=false so that no multiply-add is fused where the CPU rounds twice. The host has
// already checked every RoI (batch index in range, no negative size), as the CPU op does.

extern "C" __global__ void roi_align_f32(
    const float *feats,  // [n, c, h, w]
    const float *rois,   // [k, 5]: batch, x1, y1, x2, y2 in input pixels
    float *out,          // [k, c, pooled, pooled]
    int k, int c, int h, int w, int pooled,
    float spatial_scale, int sampling_ratio, int aligned)
{
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)k * c * pooled * pooled;
    if (idx >= total) return;
    int pw = (int)(idx % pooled);
    int ph = (int)((idx / pooled) % pooled);
    int ch = (int)((idx / ((long long)pooled * pooled)) % c);
    int r = (int)(idx / ((long long)pooled * pooled * c));

    const float *roi = rois + (long long)r * 5;
    int b = (int)roi[0];
    float offset = aligned ? 0.5f : 0.0f;
    float start_w = roi[1] * spatial_scale - offset;
    float start_h = roi[2] * spatial_scale - offset;
    float end_w = roi[3] * spatial_scale - offset;
    float end_h = roi[4] * spatial_scale - offset;
    float roi_w = end_w - start_w;
    float roi_h = end_h - start_h;
    if (!aligned) {
        roi_w = fmaxf(roi_w, 1.0f);
        roi_h = fmaxf(roi_h, 1.0f);
    }
    float bin_h = roi_h / (float)pooled;
    float bin_w = roi_w / (float)pooled;
    int grid_h = sampling_ratio > 0 ? sampling_ratio : (int)ceilf(roi_h / (float)pooled);
    int grid_w = sampling_ratio > 0 ? sampling_ratio : (int)ceilf(roi_w / (float)pooled);
    int count = grid_h * grid_w;
    float count_f = (float)(count > 1 ? count : 1);

    const float *plane = feats + ((long long)b * c + ch) * h * w;
    float hf = (float)h, wf = (float)w;
    float acc = 0.0f;
    for (int iy = 0; iy < grid_h; ++iy) {
        float yy = start_h + (float)ph * bin_h + ((float)iy + 0.5f) * bin_h / (float)grid_h;
        for (int ix = 0; ix < grid_w; ++ix) {
            float xx = start_w + (float)pw * bin_w + ((float)ix + 0.5f) * bin_w / (float)grid_w;
            // more than one pixel outside: a zero-weight sample of pixel 0 (as the CPU's
            // default tap), still counted in the mean
            if (h == 0 || w == 0) continue;
            if (yy < -1.0f || yy > hf || xx < -1.0f || xx > wf) {
                float p0 = plane[0];
                acc += 0.0f * p0 + 0.0f * p0 + 0.0f * p0 + 0.0f * p0;
                continue;
            }
            float y = fmaxf(yy, 0.0f), x = fmaxf(xx, 0.0f);
            int y_low = (int)y, x_low = (int)x, y_high, x_high;
            if (y_low >= h - 1) {
                y_low = y_high = h - 1;
                y = (float)y_low;
            } else {
                y_high = y_low + 1;
            }
            if (x_low >= w - 1) {
                x_low = x_high = w - 1;
                x = (float)x_low;
            } else {
                x_high = x_low + 1;
            }
            float ly = y - (float)y_low, lx = x - (float)x_low;
            float hy = 1.0f - ly, hx = 1.0f - lx;
            float w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
            acc += w1 * plane[y_low * w + x_low] + w2 * plane[y_low * w + x_high]
                 + w3 * plane[y_high * w + x_low] + w4 * plane[y_high * w + x_high];
        }
    }
    out[idx] = acc / count_f;
}
