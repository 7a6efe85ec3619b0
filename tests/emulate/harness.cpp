// Runs vidpose's CUDA kernels on the host, thread by thread, for tests/kernels_emulated.rs:
// a few definitions stand in for CUDA's, then the kernel sources are included as they are.
// Compiled with -ffp-contract=off, as build.rs compiles the PTX with --fmad=false; C++20 for
// std::barrier.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <barrier>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

struct Dim3 { unsigned x, y, z; };
static thread_local Dim3 blockIdx, threadIdx;
static Dim3 blockDim;
#define __global__
#define __device__
#define __constant__ static const
using std::isfinite;
using std::isnan;
using std::max;
using std::min;

static float __int_as_float(int v) {
    float f;
    std::memcpy(&f, &v, sizeof f);
    return f;
}

// A warp's shuffles: its 32 lanes are 32 host threads that meet at a barrier.
static std::barrier<> *warp_barrier;
static unsigned warp_slots[32];
template <class T> static T __shfl_down_sync(unsigned, T v, int off) {
    unsigned lane = threadIdx.x % 32, bits;
    std::memcpy(&bits, &v, sizeof bits);
    warp_slots[lane] = bits;
    warp_barrier->arrive_and_wait();
    T r = v;
    if (lane + off < 32) std::memcpy(&r, &warp_slots[lane + off], sizeof r);
    warp_barrier->arrive_and_wait();
    return r;
}

#include "../../kernels/roi_align.cu"
#include "../../kernels/pose_crop.cu"
#include "../../kernels/heatmap.cu"
#include "../../kernels/detector_input.cu"
#include "../../kernels/grouped_conv.cu"

template <class T> static std::vector<T> load(const char *path) {
    FILE *f = std::fopen(path, "rb");
    if (!f) { std::perror(path); std::exit(2); }
    std::vector<T> v;
    T x;
    while (std::fread(&x, sizeof x, 1, f) == 1) v.push_back(x);
    std::fclose(f);
    return v;
}

static void save(const char *path, const std::vector<float> &v) {
    FILE *f = std::fopen(path, "wb");
    std::fwrite(v.data(), sizeof(float), v.size(), f);
    std::fclose(f);
}

// every thread of a one-dimensional grid of `total` threads, in blocks of 256
template <class F> static void grid(long long total, F kernel) {
    blockDim = {256, 1, 1};
    for (long long b = 0; b * 256 < total; ++b)
        for (unsigned t = 0; t < 256; ++t) {
            blockIdx = {(unsigned)b, 0, 0};
            threadIdx = {t, 0, 0};
            kernel();
        }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    std::string what = argv[1];
    auto i = [&](int k) { return std::atoi(argv[k]); };
    if (what == "roi" && argc == 14) {
        // roi FEATS ROIS OUT k c h w pooled scale sampling aligned n
        auto feats = load<float>(argv[2]);
        auto rois = load<float>(argv[3]);
        int k = i(5), c = i(6), h = i(7), w = i(8), pooled = i(9), sampling = i(11), aligned = i(12);
        float scale = std::strtof(argv[10], nullptr);
        std::vector<float> out((size_t)k * c * pooled * pooled);
        grid(out.size(), [&] {
            roi_align_f32(feats.data(), rois.data(), out.data(), k, c, h, w, pooled, scale, sampling, aligned);
        });
        save(argv[4], out);
    } else if (what == "crop" && argc == 10) {
        // crop FRAME PARAMS OUT n src_w src_h out_w out_h
        auto frame = load<unsigned char>(argv[2]);
        auto params = load<float>(argv[3]);
        int n = i(5), sw = i(6), sh = i(7), ow = i(8), oh = i(9);
        std::vector<float> out((size_t)n * 3 * ow * oh);
        grid((long long)n * ow * oh, [&] {
            pose_crop_f32(frame.data(), params.data(), out.data(), n, sw, sh, ow, oh);
        });
        save(argv[4], out);
    } else if (what == "detin" && argc == 12) {
        // detin FRAME TAPS OUT w h nw nh pw ph vectorised
        auto frame = load<unsigned char>(argv[2]);
        auto taps = load<unsigned>(argv[3]);
        int w = i(5), h = i(6), nw = i(7), nh = i(8), pw = i(9), ph = i(10), vec = i(11);
        std::vector<float> out((size_t)3 * pw * ph);
        grid((long long)pw * ph, [&] {
            detector_input_f32(frame.data(), taps.data(), out.data(), w, h, nw, nh, pw, ph, vec);
        });
        save(argv[4], out);
    } else if (what == "gconv" && argc == 17) {
        // gconv X WEIGHT BIAS OUT n c_in h w c_out groups k stride pad oh ow relu
        auto x = load<float>(argv[2]);
        auto wt = load<float>(argv[3]);
        auto bias = load<float>(argv[4]);
        int n = i(6), c_in = i(7), h = i(8), w = i(9), c_out = i(10), groups = i(11), k = i(12),
            stride = i(13), pad = i(14), oh = i(15), ow = i(16);
        std::vector<float> out((size_t)n * c_out * oh * ow);
        int relu = 1;
        grid(out.size(), [&] {
            grouped_conv_f32(x.data(), wt.data(), bias.data(), out.data(), n, c_in, h, w, c_out,
                             groups, k, stride, pad, oh, ow, relu);
        });
        save(argv[5], out);
    } else if (what == "flip" && argc == 9) {
        // flip HEATMAPS FLIP_IDX OUT n k h w
        auto hm = load<float>(argv[2]);
        auto flip = load<unsigned>(argv[3]);
        int n = i(5), k = i(6), h = i(7), w = i(8);
        std::vector<float> out((size_t)n * k * h * w);
        grid(out.size(), [&] { flip_merge_f32(hm.data(), flip.data(), out.data(), n, k, h, w); });
        save(argv[4], out);
    } else if (what == "msra" && argc == 7) {
        // msra HEATMAPS OUT m h w
        auto hm = load<float>(argv[2]);
        int m = i(4), h = i(5), w = i(6);
        std::vector<float> out((size_t)m * 3);
        blockDim = {256, 1, 1};
        std::barrier<> bar(32);
        warp_barrier = &bar;
        for (int warp = 0; warp < m; ++warp) {
            std::vector<std::thread> lanes;
            for (unsigned lane = 0; lane < 32; ++lane)
                lanes.emplace_back([&, lane] {
                    unsigned id = (unsigned)warp * 32 + lane;
                    blockIdx = {id / 256, 0, 0};
                    threadIdx = {id % 256, 0, 0};
                    msra_peaks_f32(hm.data(), out.data(), m, h, w);
                });
            for (auto &t : lanes) t.join();
        }
        save(argv[3], out);
    } else {
        std::fprintf(stderr, "bad arguments\n");
        return 2;
    }
    return 0;
}
