#!/usr/bin/env python3
"""Generates PoseTrack 2018 evaluation cases and the numbers the official evaluator gives for them.

The cases (ground truth + predictions, a few short synthetic sequences each) are written to
`tests/fixtures/eval/<case>/{gt,pred}/`, and poseval's results to `tests/fixtures/eval/<case>/expected.json`.
`tests/eval_parity.rs` checks that `vidpose`'s evaluator reproduces them.

poseval is not vendored: fetch it (github.com/leonid-pishchulin/poseval, commit 4258a15) and point
`--poseval` at the checkout; run this script with a Python that has poseval's dependencies
(motmetrics, shapely, numpy, pandas, scipy, click, tqdm):

    python3 -m venv ~/poseval-venv
    ~/poseval-venv/bin/pip install motmetrics shapely click tqdm numpy pandas scipy
    ~/poseval-venv/bin/python scripts/make_eval_fixtures.py --poseval /path/to/poseval

poseval lists the ground-truth folder with `glob`, whose order is the file system's; this script sorts
that listing so the sequence order (which poseval's tracking evaluation depends on in one corner case)
is the sorted file-name order that vidpose uses.
"""

import argparse
import contextlib
import glob
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys

# PoseTrack 2018 keypoint order; ears (3, 4) are never annotated.
NAMES = [
    "nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
]
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
            [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]
CATEGORY = {"supercategory": "person", "id": 1, "name": "person", "keypoints": NAMES, "skeleton": SKELETON}

# A standing person, in units of body height, origin at the top of the head.
TEMPLATE = [
    (0.0, 0.08), (0.0, 0.15), (0.0, 0.0), None, None, (0.12, 0.2), (-0.12, 0.2), (0.16, 0.35),
    (-0.16, 0.35), (0.18, 0.48), (-0.18, 0.48), (0.08, 0.52), (-0.08, 0.52), (0.09, 0.75),
    (-0.09, 0.75), (0.1, 0.97), (-0.1, 0.97),
]


def r2(v):
    return round(float(v), 2)


class Person:
    """A ground-truth person moving at constant speed."""

    def __init__(self, rng, track_id, x, y, height, vx=0.0, vy=0.0, missing=0.1):
        self.track_id = track_id
        self.x, self.y, self.h = x, y, height
        self.vx, self.vy = vx, vy
        self.jitter = [(rng.gauss(0, 0.02), rng.gauss(0, 0.02)) for _ in TEMPLATE]
        self.missing = missing

    def at(self, rng, t):
        """GT annotation dict (without ids) at frame t."""
        cx, top = self.x + self.vx * t, self.y + self.vy * t
        kps = []
        for k, tpl in enumerate(TEMPLATE):
            if tpl is None or (k > 2 and rng.random() < self.missing):
                kps += [0, 0, 0]
                continue
            jx, jy = self.jitter[k]
            kps += [r2(cx + (tpl[0] + jx) * self.h), r2(top + (tpl[1] + jy) * self.h), 1]
        hw, hh = 0.14 * self.h, 0.17 * self.h
        head = [r2(cx - hw / 2), r2(top - 0.01 * self.h), r2(hw), r2(hh)]
        xs = [kps[3 * k] for k in range(17) if kps[3 * k + 2]]
        ys = [kps[3 * k + 1] for k in range(17) if kps[3 * k + 2]]
        ex, ey = max(xs) - min(xs), max(ys) - min(ys)
        mx, my = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
        bbox = [r2(mx - 0.65 * ex), r2(my - 0.65 * ey), r2(1.3 * ex), r2(1.3 * ey)]
        return {"track_id": self.track_id, "keypoints": kps, "bbox": bbox, "bbox_head": head,
                "scores": [], "category_id": 1}


USED_SCORES = set()


def unique_score(rng):
    """Scores are distinct within a case: poseval sorts them with an unstable sort, so ties between a
    true and a false positive would make its AP depend on the sort algorithm."""
    while True:
        s = round(rng.uniform(0.05, 0.99), 6)
        if s not in USED_SCORES:
            USED_SCORES.add(s)
            return s


def head_size(ann):
    x, y, w, h = ann["bbox_head"]
    return 0.6 * math.hypot(w, h)


def predict(rng, gt, track_id, noise=0.0, drop=0.0, shift=(0.0, 0.0), exact_joints=False):
    """A prediction made from a GT annotation: Gaussian noise in head sizes, joints dropped at random.

    Joints the GT lacks are predicted near the neck (false positives) unless `exact_joints`."""
    hs = head_size(gt)
    kps, scores = [], []
    for k in range(17):
        x, y, v = gt["keypoints"][3 * k: 3 * k + 3]
        s = unique_score(rng)
        if (x == 0 and y == 0 and v == 0) and k in (3, 4):
            # Ears: a model predicts them; poseval ignores them.
            x, y = gt["keypoints"][0] + 5, gt["keypoints"][1]
        if x == 0 and y == 0 and v == 0 and exact_joints:
            kps += [0, 0, 0]
            scores.append(s)
            continue
        if x == 0 and y == 0 and v == 0:
            x, y = gt["keypoints"][3] or gt["keypoints"][0], gt["keypoints"][4] or gt["keypoints"][1]
        if rng.random() < drop:
            kps += [0, 0, 0]
        else:
            kps += [r2(x + shift[0] + rng.gauss(0, noise) * hs), r2(y + shift[1] + rng.gauss(0, noise) * hs), s]
        scores.append(s)
    return {"track_id": track_id, "keypoints": kps, "scores": scores, "score": r2(rng.uniform(0.3, 1)),
            "category_id": 1}


def random_person_pred(rng, track_id, w=1920, h=1080):
    """A false detection somewhere in the image."""
    p = Person(rng, 0, rng.uniform(100, w - 100), rng.uniform(50, h - 450), rng.uniform(200, 400), missing=0)
    ann = p.at(rng, 0)
    return predict(rng, ann, track_id, noise=0.05)


class Sequence:
    def __init__(self, name, nframes):
        self.name = name  # e.g. 000001_mpii_test
        self.nframes = nframes
        num = int(name.split("_")[0])
        kind = {"mpii": 1, "bonn": 2, "mpiinew": 3}[name.split("_")[1]]
        self.ids = [kind * 10000000000 + num * 10000 + f for f in range(nframes)]
        self.gt = [[] for _ in range(nframes)]
        self.pred = [[] for _ in range(nframes)]
        self.ignore = [None] * nframes

    def images(self, with_ignore):
        out = []
        for f, iid in enumerate(self.ids):
            img = {"id": iid, "frame_id": iid, "vid_id": self.name[:6], "nframes": self.nframes,
                   "file_name": "images/val/%s/%06d.jpg" % (self.name, f),
                   "is_labeled": len(self.gt[f]) > 0, "has_no_densepose": True}
            if with_ignore and self.ignore[f]:
                img["ignore_regions_x"] = [[p[0] for p in poly] for poly in self.ignore[f]]
                img["ignore_regions_y"] = [[p[1] for p in poly] for poly in self.ignore[f]]
            out.append(img)
        return out

    def write(self, case_dir):
        for kind, frames in (("gt", self.gt), ("pred", self.pred)):
            anns = []
            for f, people in enumerate(frames):
                for n, p in enumerate(people):
                    a = dict(p)
                    a["image_id"] = self.ids[f]
                    a["id"] = self.ids[f] * 100 + n
                    anns.append(a)
            doc = {"images": self.images(kind == "gt"), "annotations": anns, "categories": [CATEGORY]}
            path = os.path.join(case_dir, kind, self.name + ".json")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                json.dump(doc, f, separators=(",", ":"))


def people_sequence(rng, name, nframes, npeople, spacing=400, speed=8.0):
    seq = Sequence(name, nframes)
    people = [Person(rng, t, 200 + spacing * t, rng.uniform(80, 300), rng.uniform(250, 400),
                     vx=rng.uniform(-speed, speed), vy=rng.uniform(-2, 2)) for t in range(npeople)]
    for f in range(nframes):
        seq.gt[f] = [p.at(rng, f) for p in people]
    return seq


# ---------------------------------------------------------------------------------------------
# Cases


def case_perfect(rng):
    seqs = [people_sequence(rng, "000101_mpii_test", 6, 3), people_sequence(rng, "000102_bonn_test", 5, 2)]
    for s in seqs:
        for f in range(s.nframes):
            s.pred[f] = [predict(rng, g, g["track_id"], exact_joints=True) for g in s.gt[f]]
    return seqs


def case_noisy(rng):
    seqs = [people_sequence(rng, "000201_mpii_test", 8, 3), people_sequence(rng, "000202_mpiinew_test", 7, 4)]
    for s in seqs:
        for f in range(s.nframes):
            s.pred[f] = [predict(rng, g, 10 + g["track_id"], noise=0.35, drop=0.1) for g in s.gt[f]]
    return seqs


def case_missed_false(rng):
    seqs = [people_sequence(rng, "000301_mpii_test", 9, 4)]
    s = seqs[0]
    for f in range(s.nframes):
        preds = []
        for g in s.gt[f]:
            if rng.random() < 0.25:
                continue  # missed person
            preds.append(predict(rng, g, g["track_id"], noise=0.15, drop=0.2))
        for k in range(rng.randint(0, 2)):
            preds.append(random_person_pred(rng, 50 + 10 * f + k))  # false detections
        if f == 4:
            # A duplicate of a person: one of the two is a false positive.
            preds.append(predict(rng, s.gt[f][0], 99, noise=0.2))
        s.pred[f] = preds
    return seqs


def case_id_switch(rng):
    s = Sequence("000401_mpii_test", 10)
    a = Person(rng, 0, 300, 200, 320, vx=40)
    b = Person(rng, 1, 1500, 220, 330, vx=-40)
    c = Person(rng, 2, 900, 600, 300)
    for f in range(s.nframes):
        s.gt[f] = [a.at(rng, f), b.at(rng, f), c.at(rng, f)]
        # The tracker swaps a and b after they cross; c gets a new id twice (fragmentation),
        # and once takes b's old id.
        ta, tb = (7, 8) if f < 5 else (8, 7)
        tc = 20 if f < 3 else (21 if f < 7 else 7 if f == 7 else 22)
        if f == 7:
            tb = 30
        s.pred[f] = [predict(rng, s.gt[f][0], ta, noise=0.1), predict(rng, s.gt[f][1], tb, noise=0.1),
                     predict(rng, s.gt[f][2], tc, noise=0.1)]
    return [s]


def case_ignore_regions(rng):
    s = people_sequence(rng, "000501_mpii_test", 7, 3)
    for f in range(s.nframes):
        g0 = s.gt[f][0]
        # A box around person 0's legs, one whole-person region for person 2 in frame 3,
        # and a triangle whose edge passes exactly through a GT knee (on the edge: not inside).
        lk = g0["keypoints"][3 * 13: 3 * 13 + 2]
        if lk[0] == 0:
            lk = [g0["keypoints"][3 * 11] or 600.0, g0["keypoints"][3 * 11 + 1] or 600.0]
        polys = [[(lk[0] - 30, lk[1] + 10), (lk[0] + 80, lk[1] + 10), (lk[0] + 80, lk[1] + 300),
                  (lk[0] - 30, lk[1] + 300)]]
        g1 = s.gt[f][1]
        kx, ky = g1["keypoints"][3 * 14], g1["keypoints"][3 * 14 + 1]
        if kx != 0:
            polys.append([(kx - 50, ky), (kx + 50, ky), (kx, ky + 60)])
        if f == 3:
            x, y, w, h = s.gt[f][2]["bbox"]
            polys.append([(x - 20, y - 20), (x + w + 20, y - 20), (x + w + 20, y + h + 20), (x - 20, y + h + 20)])
        s.ignore[f] = polys
        s.pred[f] = [predict(rng, g, g["track_id"], noise=0.2) for g in s.gt[f]]
        # A false detection inside the big region of frame 3 is ignored too.
        if f == 3:
            fp = predict(rng, s.gt[f][2], 40, noise=0.05, shift=(15, 0))
            s.pred[f].append(fp)
    # Frame 5: every GT person inside ignore regions (frame keeps its place but has no GT left).
    big = [(-10, -10), (1930, -10), (1930, 1090), (-10, 1090)]
    s.ignore[5] = [big]
    return [s]


def case_empty_frames(rng):
    # Sequence A: unlabeled frames (no GT persons) with predictions, frames with GT but no predictions,
    # GT track id 0 in the first sequence (poseval's placeholder id 0 then coincides with it).
    a = people_sequence(rng, "000601_mpii_test", 10, 2)
    for f in (1, 2, 6):
        a.gt[f] = []
    for f in range(a.nframes):
        if a.gt[f]:
            a.pred[f] = [predict(rng, g, g["track_id"], noise=0.12) for g in a.gt[f]]
        else:
            a.pred[f] = [random_person_pred(rng, 0)]
    a.pred[4] = []
    a.pred[8] = []
    # Sequence B: nothing labeled at all (dropped entirely), predictions anyway.
    b = Sequence("000602_bonn_test", 4)
    for f in range(b.nframes):
        b.pred[f] = [random_person_pred(rng, 3)]
    # Sequence C: labeled frames with gaps, predictions with ids shifted by 100.
    c = people_sequence(rng, "000603_mpiinew_test", 8, 3)
    for f in (0, 3, 7):
        c.gt[f] = []
    for f in range(c.nframes):
        c.pred[f] = [predict(rng, g, 100 + g["track_id"], noise=0.15, drop=0.15) for g in c.gt[f]]
    c.pred[5] = []
    return [a, b, c]


def case_crowded(rng):
    # People close together: a predicted joint is often within threshold of two GT people,
    # so the PCK assignment and motmetrics' correspondence carry-over both matter.
    s = Sequence("000701_mpii_test", 9)
    people = [Person(rng, t, 600 + 45 * t, 200 + 10 * t, 300 + 5 * t, vx=rng.uniform(-5, 5)) for t in range(4)]
    for f in range(s.nframes):
        s.gt[f] = [p.at(rng, f) for p in people]
        preds = []
        for g in s.gt[f]:
            tid = g["track_id"] if not (f >= 5 and g["track_id"] in (1, 2)) else 3 - g["track_id"]
            preds.append(predict(rng, g, tid, noise=0.3, drop=0.05))
        if f % 3 == 1:
            preds.append(predict(rng, s.gt[f][1], 9, noise=0.4))
        s.pred[f] = preds
    return [s]


def case_mixed(rng):
    seqs = []
    for n, name in enumerate(["000801_mpii_test", "000802_bonn_test", "000803_mpiinew_test"]):
        s = people_sequence(rng, name, 12, 3 + n, spacing=300, speed=15)
        next_id = 0
        ids = {}
        for f in range(s.nframes):
            preds = []
            for g in s.gt[f]:
                if rng.random() < 0.1:
                    continue
                if g["track_id"] not in ids or rng.random() < 0.08:
                    ids[g["track_id"]] = next_id
                    next_id += 1
                preds.append(predict(rng, g, ids[g["track_id"]], noise=rng.choice([0.05, 0.2, 0.5]),
                                     drop=0.1))
            if rng.random() < 0.3:
                preds.append(random_person_pred(rng, 900 + f))
            rng.shuffle(preds)
            s.pred[f] = preds
            if rng.random() < 0.2:
                s.gt[f] = []
        seqs.append(s)
    return seqs


def case_id_reuse(rng):
    # Person 0 leaves after frame 3 and person 2 enters at frame 5; the prediction gives the newcomer
    # the leaver's id (a hypothesis moving to an object never matched before), and person 1's id
    # changes once and changes back.
    s = Sequence("000901_bonn_test", 10)
    a = Person(rng, 0, 300, 200, 320, vx=10)
    b = Person(rng, 1, 900, 220, 330, vx=-5)
    c = Person(rng, 2, 1500, 180, 300, vx=-10)
    for f in range(s.nframes):
        people = ([a.at(rng, f)] if f <= 3 else []) + [b.at(rng, f)] + ([c.at(rng, f)] if f >= 5 else [])
        s.gt[f] = people
        preds = []
        for g in people:
            tid = {0: 5, 1: 6 if f not in (4, 5) else 8, 2: 5}[g["track_id"]]
            preds.append(predict(rng, g, tid, noise=0.12, drop=0.05))
        s.pred[f] = preds
    return [s]


CASES = {
    "perfect": case_perfect,
    "noisy": case_noisy,
    "missed_false": case_missed_false,
    "id_switch": case_id_switch,
    "ignore_regions": case_ignore_regions,
    "empty_frames": case_empty_frames,
    "crowded": case_crowded,
    "mixed": case_mixed,
    "id_reuse": case_id_reuse,
}


# ---------------------------------------------------------------------------------------------
# Running poseval


def run_poseval(poseval_dir, gt_dir, pred_dir, tracking=True):
    """Runs poseval's own loading, AP and tracking evaluation; returns its totals and printed tables."""
    sys.path.insert(0, poseval_dir)
    from poseval import eval_helpers  # noqa: E402
    from poseval.evaluateAP import evaluateAP  # noqa: E402
    from poseval.evaluateTracking import evaluateTracking  # noqa: E402
    import numpy as np  # noqa: E402

    unsorted_glob = glob.glob
    eval_helpers.glob.glob = lambda pattern: sorted(unsorted_glob(pattern))
    out_dir = os.path.join(os.path.dirname(pred_dir.rstrip("/")), "_poseval_out")
    os.makedirs(out_dir, exist_ok=True)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            gt, pr = eval_helpers.load_data_dir(["", gt_dir.rstrip("/") + "/", pred_dir.rstrip("/") + "/"])
            ap, pre, rec = evaluateAP(gt, pr, out_dir, True, False)
            ap_table = "".join(eval_helpers.printTable(ap))
            result = {"ap": ap.flatten().tolist(), "ap_pre": pre.flatten().tolist(),
                      "ap_rec": rec.flatten().tolist(), "ap_table": ap_table}
            if tracking:
                gt, pr = eval_helpers.load_data_dir(["", gt_dir.rstrip("/") + "/", pred_dir.rstrip("/") + "/"])
                mot = evaluateTracking(gt, pr, out_dir, True, False)
                metrics = np.zeros([15 + 4, 1])
                for i in range(16):
                    metrics[i, 0] = mot["mota"][0, i]
                metrics[16, 0] = mot["motp"][0, 15]
                metrics[17, 0] = mot["pre"][0, 15]
                metrics[18, 0] = mot["rec"][0, 15]
                result["mot_table"] = "".join(eval_helpers.printTable(metrics, motHeader=True))
                for k in ("mota", "motp", "pre", "rec"):
                    result[k] = mot[k].flatten().tolist()
    finally:
        eval_helpers.glob.glob = unsorted_glob
        shutil.rmtree(out_dir, ignore_errors=True)
    # JSON has no NaN: store null.
    for k, v in result.items():
        if isinstance(v, list):
            result[k] = [None if (x is None or math.isnan(x)) else x for x in v]
    return result


def versions(poseval_dir):
    import motmetrics
    import numpy
    import pandas
    import scipy
    import shapely
    try:
        commit = subprocess.run(["git", "-C", poseval_dir, "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "4258a15"
    except OSError:
        commit = "4258a15"
    return {"poseval": commit, "python": sys.version.split()[0], "motmetrics": motmetrics.__version__,
            "numpy": numpy.__version__, "pandas": pandas.__version__, "scipy": scipy.__version__,
            "shapely": shapely.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--poseval", required=True, help="poseval checkout (the folder holding poseval/)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "eval"))
    ap.add_argument("--seed", type=int, default=2018)
    ap.add_argument("--real-gt", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                      "posetrack18", "annotations", "val"),
                    help="real PoseTrack18 GT folder for the AP-only perturbed case (skipped when absent)")
    args = ap.parse_args()

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    meta = versions(args.poseval)
    for name, make in CASES.items():
        rng = random.Random("%d-%s" % (args.seed, name))
        USED_SCORES.clear()
        case_dir = os.path.join(out, name)
        shutil.rmtree(case_dir, ignore_errors=True)
        for seq in make(rng):
            seq.write(case_dir)
        expected = run_poseval(args.poseval, os.path.join(case_dir, "gt"), os.path.join(case_dir, "pred"))
        expected["generated_by"] = meta
        with open(os.path.join(case_dir, "expected.json"), "w") as f:
            json.dump(expected, f, indent=1)
        print("%-16s AP %6.2f  MOTA %6.2f  MOTP %6.2f" % (name, expected["ap"][15], expected["mota"][15] or float("nan"),
                                                         expected["motp"][15] or float("nan")))

    # AP-only case on the real GT files: predictions are the GT with noise (single labeled frame per
    # sequence, so poseval's tracking evaluation cannot run). Only predictions and numbers are stored.
    real = os.path.abspath(args.real_gt)
    if os.path.isdir(real):
        rng = random.Random("%d-real" % args.seed)
        USED_SCORES.clear()
        case_dir = os.path.join(out, "real_perturbed")
        shutil.rmtree(case_dir, ignore_errors=True)
        os.makedirs(os.path.join(case_dir, "pred"))
        for fn in sorted(os.listdir(real)):
            if not fn.endswith(".json"):
                continue
            with open(os.path.join(real, fn)) as f:
                doc = json.load(f)
            anns = []
            for n, g in enumerate(doc["annotations"]):
                if n % 4 == 3:
                    continue  # a missed person
                p = predict(rng, g, g["track_id"], noise=0.3, drop=0.1)
                p["image_id"], p["id"] = g["image_id"], g["id"]
                anns.append(p)
            anns.append(dict(random_person_pred(rng, 77), image_id=doc["images"][0]["id"]))
            pred = {"images": [{"id": i["id"], "file_name": i["file_name"]} for i in doc["images"]],
                    "annotations": anns, "categories": doc["categories"]}
            with open(os.path.join(case_dir, "pred", fn), "w") as f:
                json.dump(pred, f, separators=(",", ":"))
        expected = run_poseval(args.poseval, real, os.path.join(case_dir, "pred"), tracking=False)
        expected["generated_by"] = meta
        with open(os.path.join(case_dir, "expected.json"), "w") as f:
            json.dump(expected, f, indent=1)
        print("%-16s AP %6.2f" % ("real_perturbed", expected["ap"][15]))


if __name__ == "__main__":
    main()
