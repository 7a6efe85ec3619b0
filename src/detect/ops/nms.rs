//! Greedy non-maximum suppression with mmcv's conventions: areas without the legacy "+1"
//! (`(x2 - x1)·(y2 - y1)`), candidates visited by descending score, a box is dropped when its
//! IoU with a kept box is strictly greater than the threshold.
//!
//! Equal scores: the reference orders candidates with PyTorch's CPU `sort` (descending, not
//! stable), i.e. libstdc++'s introsort over (score, index) pairs. [`argsort_desc`] replays that
//! algorithm so that tied scores come out in the same order (checked against torch on
//! tie-heavy fixtures).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use crate::geometry::BBox;

/// Indices of the kept boxes, highest score first.
pub fn nms(boxes: &[BBox], scores: &[f32], iou_threshold: f32) -> Vec<usize> {
    let order = argsort_desc(scores);
    // unclamped, as mmcv computes them (not `BBox::area`, which is 0 for inverted boxes)
    let areas: Vec<f32> = boxes.iter().map(|b| b.width() * b.height()).collect();
    let mut alive = vec![true; order.len()];
    let mut keep = Vec::new();
    for a in 0..order.len() {
        if !alive[a] {
            continue;
        }
        let i = order[a];
        keep.push(i);
        let bi = boxes[i];
        for b in a + 1..order.len() {
            if !alive[b] {
                continue;
            }
            let j = order[b];
            let inter = bi.intersection(&boxes[j]);
            // 0/0 for two empty boxes is NaN, which (like in mmcv) suppresses nothing
            if inter / (areas[i] + areas[j] - inter) > iou_threshold {
                alive[b] = false;
            }
        }
    }
    keep
}

/// NMS within each class (`labels`), boxes of different classes never suppressing each other;
/// the kept indices are sorted by descending score. Follows mmcv's `batched_nms`: below
/// 10 000 boxes the classes are separated by shifting each box by `label·(max + 1)` and one
/// NMS runs over all of them; above, NMS runs class by class. The shift rounds the
/// coordinates in f32, so the two paths can differ in the last bit of an IoU, and matching
/// the reference means taking the same path.
pub fn batched_nms(
    boxes: &[BBox],
    scores: &[f32],
    labels: &[usize],
    iou_threshold: f32,
) -> Vec<usize> {
    if boxes.is_empty() {
        return Vec::new();
    }
    let max = boxes
        .iter()
        .flat_map(|b| [b.x1, b.y1, b.x2, b.y2])
        .fold(f32::NEG_INFINITY, f32::max);
    let shifted: Vec<BBox> = boxes
        .iter()
        .zip(labels)
        .map(|(b, &l)| {
            let off = l as f32 * (max + 1.0);
            BBox::new(b.x1 + off, b.y1 + off, b.x2 + off, b.y2 + off)
        })
        .collect();
    const SPLIT_THRESHOLD: usize = 10_000;
    if boxes.len() < SPLIT_THRESHOLD {
        return nms(&shifted, scores, iou_threshold);
    }
    let mut classes: Vec<usize> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let mut keep = Vec::new();
    for c in classes {
        let members: Vec<usize> = (0..boxes.len()).filter(|&i| labels[i] == c).collect();
        let b: Vec<BBox> = members.iter().map(|&i| shifted[i]).collect();
        let s: Vec<f32> = members.iter().map(|&i| scores[i]).collect();
        keep.extend(nms(&b, &s, iou_threshold).into_iter().map(|k| members[k]));
    }
    // the reference gathers the survivors in index order, then sorts them by score
    keep.sort_unstable();
    let kept_scores: Vec<f32> = keep.iter().map(|&i| scores[i]).collect();
    argsort_desc(&kept_scores)
        .into_iter()
        .map(|k| keep[k])
        .collect()
}

/// Indices that sort `scores` descending, equal scores ordered exactly as PyTorch's CPU
/// `sort(descending=True)` (libstdc++ `std::sort`) orders them; NaN first.
pub fn argsort_desc(scores: &[f32]) -> Vec<usize> {
    let mut v: Vec<(f32, usize)> = scores.iter().copied().zip(0..).collect();
    introsort(&mut v);
    v.into_iter().map(|(_, i)| i).collect()
}

/// "a goes before b" for a descending sort with NaN first (PyTorch's comparator).
fn before(a: f32, b: f32) -> bool {
    (a.is_nan() && !b.is_nan()) || a > b
}

/// libstdc++'s `std::sort`: introsort with median-of-three pivots, a heap sort when the
/// recursion gets too deep, then one insertion sort over runs of up to 16.
fn introsort(v: &mut [(f32, usize)]) {
    const THRESHOLD: usize = 16;
    fn lt(v: &[(f32, usize)], i: usize, j: usize) -> bool {
        before(v[i].0, v[j].0)
    }
    fn move_median_to_first(v: &mut [(f32, usize)], r: usize, a: usize, b: usize, c: usize) {
        let m = if lt(v, a, b) {
            if lt(v, b, c) {
                b
            } else if lt(v, a, c) {
                c
            } else {
                a
            }
        } else if lt(v, a, c) {
            a
        } else if lt(v, b, c) {
            c
        } else {
            b
        };
        v.swap(r, m);
    }
    fn partition(v: &mut [(f32, usize)], mut first: usize, mut last: usize, pivot: usize) -> usize {
        loop {
            while lt(v, first, pivot) {
                first += 1;
            }
            last -= 1;
            while lt(v, pivot, last) {
                last -= 1;
            }
            if first >= last {
                return first;
            }
            v.swap(first, last);
            first += 1;
        }
    }
    fn adjust_heap(
        v: &mut [(f32, usize)],
        base: usize,
        mut hole: usize,
        len: usize,
        val: (f32, usize),
    ) {
        let top = hole;
        let mut child = hole;
        while child < (len.saturating_sub(1)) / 2 {
            child = 2 * (child + 1);
            if before(v[base + child].0, v[base + child - 1].0) {
                child -= 1;
            }
            v[base + hole] = v[base + child];
            hole = child;
        }
        if len.is_multiple_of(2) && child == (len.saturating_sub(2)) / 2 && len >= 2 {
            child = 2 * (child + 1);
            v[base + hole] = v[base + child - 1];
            hole = child - 1;
        }
        // push_heap
        let mut parent = hole.saturating_sub(1) / 2;
        while hole > top && before(v[base + parent].0, val.0) {
            v[base + hole] = v[base + parent];
            hole = parent;
            parent = hole.saturating_sub(1) / 2;
        }
        v[base + hole] = val;
    }
    fn heap_sort(v: &mut [(f32, usize)], first: usize, last: usize) {
        let len = last - first;
        if len < 2 {
            return;
        }
        let mut parent = (len - 2) / 2;
        loop {
            let val = v[first + parent];
            adjust_heap(v, first, parent, len, val);
            if parent == 0 {
                break;
            }
            parent -= 1;
        }
        let mut end = last;
        while end - first > 1 {
            end -= 1;
            let val = v[end];
            v[end] = v[first];
            adjust_heap(v, first, 0, end - first, val);
        }
    }
    fn loop_(v: &mut [(f32, usize)], first: usize, mut last: usize, mut depth: usize) {
        while last - first > THRESHOLD {
            if depth == 0 {
                heap_sort(v, first, last);
                return;
            }
            depth -= 1;
            let mid = first + (last - first) / 2;
            move_median_to_first(v, first, first + 1, mid, last - 1);
            let cut = partition(v, first + 1, last, first);
            loop_(v, cut, last, depth);
            last = cut;
        }
    }
    fn linear_insert(v: &mut [(f32, usize)], mut last: usize) {
        let val = v[last];
        while before(val.0, v[last - 1].0) {
            v[last] = v[last - 1];
            last -= 1;
        }
        v[last] = val;
    }
    fn insertion_sort(v: &mut [(f32, usize)], first: usize, last: usize) {
        for i in first + 1..last {
            if before(v[i].0, v[first].0) {
                let val = v[i];
                v.copy_within(first..i, first + 1);
                v[first] = val;
            } else {
                linear_insert(v, i);
            }
        }
    }
    let n = v.len();
    if n < 2 {
        return;
    }
    loop_(v, 0, n, 2 * (usize::BITS - 1 - n.leading_zeros()) as usize);
    if n > THRESHOLD {
        insertion_sort(v, 0, THRESHOLD);
        for i in THRESHOLD..n {
            linear_insert(v, i);
        }
    } else {
        insertion_sort(v, 0, n);
    }
}

/// NMS as a candle op: input `[n, 5]` f32 rows `(x1, y1, x2, y2, score)`, output the kept row
/// indices `[k]` (u32), highest score first, on the input's device.
///
/// On CUDA this is a host step: the rows (20 bytes a box) are copied back, the CPU code runs,
/// the indices go up again. The greedy pass is sequential and the candidates' order must
/// replay PyTorch's CPU sort on ties, so a kernel would only parallelise the IoU matrix, and
/// the detector's proposals and final boxes are on the host anyway.
#[derive(Debug, Clone, Copy)]
pub struct Nms {
    /// A box is dropped when its IoU with a kept, higher-scoring box exceeds this.
    pub iou_threshold: f32,
}

impl CustomOp1 for Nms {
    fn name(&self) -> &'static str {
        "nms"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        check_rows(layout)?;
        let data = storage.as_slice::<f32>()?;
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::msg("nms input must be contiguous"))?;
        let keep = self.keep(&data[start..end]);
        let k = keep.len();
        Ok((CpuStorage::U32(keep), Shape::from(k)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use crate::nn::cuda;
        use candle_core::backend::BackendStorage;
        check_rows(layout)?;
        let dev = storage.device().clone();
        let rows = cuda::to_host(&dev, &cuda::view::<f32>(storage, layout, "nms")?)?;
        let keep = self.keep(&rows);
        let k = keep.len();
        let dst = cuda::to_device(&dev, &keep)?;
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(dst, dev),
            Shape::from(k),
        ))
    }
}

impl Nms {
    /// Kept row indices of `(x1, y1, x2, y2, score)` rows.
    fn keep(&self, rows: &[f32]) -> Vec<u32> {
        let boxes: Vec<BBox> = rows
            .chunks_exact(5)
            .map(|r| BBox::new(r[0], r[1], r[2], r[3]))
            .collect();
        let scores: Vec<f32> = rows.chunks_exact(5).map(|r| r[4]).collect();
        nms(&boxes, &scores, self.iou_threshold)
            .into_iter()
            .map(|i| i as u32)
            .collect()
    }
}

fn check_rows(layout: &Layout) -> Result<()> {
    let (n, five) = layout.shape().dims2()?;
    if five != 5 {
        candle_core::bail!("nms expects [n, 5] rows (x1, y1, x2, y2, score), got [{n}, {five}]");
    }
    Ok(())
}

/// Runs [`Nms`] on `[n, 5]` detections, returning the kept indices.
pub fn nms_tensor(dets: &Tensor, iou_threshold: f32) -> Result<Tensor> {
    dets.contiguous()?.apply_op1_no_bwd(&Nms { iou_threshold })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32) -> BBox {
        BBox::new(x1, y1, x2, y2)
    }

    #[test]
    fn suppresses_strictly_above_threshold() {
        // IoU of the first two is exactly 0.5: kept at threshold 0.5, dropped below
        let boxes = [
            b(0.0, 0.0, 2.0, 1.0),
            b(1.0, 0.0, 3.0, 1.0),
            b(0.0, 0.0, 2.0, 1.0),
        ];
        let boxes2 = [b(0.0, 0.0, 3.0, 1.0), b(1.0, 0.0, 4.0, 1.0)];
        assert_eq!(nms(&boxes2, &[0.9, 0.8], 0.5), vec![0, 1]);
        assert_eq!(nms(&boxes2, &[0.9, 0.8], 0.4), vec![0]);
        assert_eq!(nms(&boxes, &[0.5, 0.1, 0.6], 0.7), vec![2, 1]);
    }

    #[test]
    fn classes_do_not_interact() {
        let boxes = [
            b(0.0, 0.0, 10.0, 10.0),
            b(0.0, 0.0, 10.0, 10.0),
            b(1.0, 1.0, 10.0, 10.0),
        ];
        let keep = batched_nms(&boxes, &[0.3, 0.9, 0.5], &[0, 1, 0], 0.5);
        assert_eq!(keep, vec![1, 2]);
    }
}
