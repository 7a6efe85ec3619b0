#!/usr/bin/env python3
"""End-to-end reference of MMPose 1.3.2's own PoseTrack18 test loop, for vidpose's parity check.

Runs `mmengine.runner.Runner.from_cfg(cfg).test()` (what MMPose's tools/test.py does) on the
shared PoseTrack18 sample (/work/shared/data/posetrack18: 3 labeled frames), with the PoseTrack18
HRNet config loaded from MMPose's own config file and changed only where needed: data paths,
`load_from` (a random checkpoint), `work_dir` (a temporary folder), test dataloader batch size /
workers, and `test_evaluator.outfile_prefix` (so that PoseTrack18Metric writes its per-video
files into the output folder).  Two box modes, as MMPose's PoseTrack18 configs have them:

  gt   ground-truth boxes: `bbox_file` and `filter_cfg` removed (the config's comment says so)
  det  detection results: `bbox_file=annotations/test_posetrack18_human_detections.json`, the
       config's own `filter_cfg=dict(bbox_score_thr=0.4)`

For each mode, OUT/<mode>/ gets
  <seq>.json      PoseTrack18Metric's per-video prediction files (results2json).  MMPose writes
                  them with sort_keys and indent=4; they are re-written here without whitespace
                  (every number token unchanged: json.dumps(json.load(f), sort_keys=True,
                  indent=4) gives MMPose's bytes back, which is checked, and ap.json holds the
                  originals' sha256).  poseval's AP is computed on these files.
  instances.json  every instance the model ran on, in the order it ran, before the metric's
                  rescoring / OKS NMS: img_id, id, float32 bbox (xyxy, as the dataset made it),
                  bbox_score, bbox_center, bbox_scale (after TopdownAffine's aspect fix: what
                  gt_instances.bbox_scales holds), area (= prod(bbox_scale): what OKS NMS uses);
                  then what the metric did with it: score (rescored), kept (survived OKS NMS),
                  track_id (the index results2json gave it in its frame).  The model's keypoints
                  (17x2, image pixels) and keypoint_scores (17) are inline for instances NMS
                  dropped; for kept ones they are annotation number `annotation` of `file`
                  (keypoints[3k], [3k+1] = x, y; [3k+2] = score), checked equal, and not repeated
                  (keeps the fixture small).  `images` maps img_id to the image path.  Floats
                  are float(np.float32(v)), which parse back to the exact float32 value.
  ap.json         the numbers the metric returned, poseval's AP for the written files (per
                  joint, cumulative, table), counts, and the versions used.

Modes of this script:
  --small (default)  the narrow HRNet of scripts/make_hrnet_fixtures.py (stage-1 width 8,
                     branches 4/8/16/32, 1 block per branch, 1/1/2/2 modules, input 128x96)
                     with the committed checkpoint tests/fixtures/hrnet/hrnet_w4_zip.pth;
                     flip test on, as in the config.  Output: tests/fixtures/e2e/narrow/.
  --full w32|w48     a random full-size checkpoint written by make_hrnet_fixtures.py's own
                     `--full` code path (its main(), into --out), W32 at 256x192 or W48 at
                     384x288; outputs into --out/gt and --out/det.  Not committed.

poseval (github leonid-pishchulin/poseval, commit 4258a15) is not vendored: MMPose's
PoseTrack18Metric imports it at module import time, so pass its checkout with --poseval (the
folder holding poseval/); its AP path needs numpy, shapely, click, tqdm in the same Python.

    git --git-dir=<poseval mirror> archive 4258a15 | tar -x -C /tmp/poseval-4258a15
    ~/refenv/venv/bin/pip install --no-deps click
    ~/refenv/venv/bin/python scripts/make_e2e_fixtures.py --poseval /tmp/poseval-4258a15
    ~/refenv/venv/bin/python scripts/make_e2e_fixtures.py --poseval /tmp/poseval-4258a15 \\
        --full w32 --out /tmp/vidpose-e2e/w32
"""
import argparse
import contextlib
import glob
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = '/work/shared/data/posetrack18'
ANN_FILE = 'annotations/test_posetrack18_val.json'
DET_FILE = 'annotations/test_posetrack18_human_detections.json'
NARROW_DIR = os.path.join(REPO, 'tests', 'fixtures', 'hrnet')
NARROW_CKPT = os.path.join(NARROW_DIR, 'hrnet_w4_zip.pth')
POSEVAL_COMMIT = '4258a1575b9f2ddd0bdb85f74557235ab5df0f52'


def f32(v):
    """A float32 value as the Python float holding exactly that value (JSON round-trips it)."""
    import numpy as np
    return float(np.float32(v))


def f32list(a):
    import numpy as np
    a = np.asarray(a)
    assert a.dtype == np.float32, a.dtype
    return [f32(v) for v in a.reshape(-1)]


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# configs


def narrow_config(mhf):
    """The narrow model of make_hrnet_fixtures.py, checked against its reference.json."""
    ref = json.load(open(os.path.join(NARROW_DIR, 'reference.json')))
    width = ref['widths'][0]
    cfg = mhf.make_config(mhf.CFG_W32, stage1=ref['stage1_channels'], width=width,
                          input_size=tuple(ref['input_size']), shallow=True)
    extra = cfg.model.backbone.extra
    assert list(extra.stage4.num_channels) == ref['widths'], extra.stage4.num_channels
    assert [extra[f'stage{i}'].num_modules for i in range(1, 5)] == ref['num_modules']
    assert [extra[f'stage{i}'].num_blocks[0] for i in range(1, 5)] == ref['num_blocks']
    assert list(cfg.codec.heatmap_size) == ref['heatmap_size']
    assert cfg.codec.sigma == ref['sigma']
    return cfg


def test_config(cfg, mode, ckpt, out_dir, work_dir, batch_size):
    """The config's test loop, changed only where necessary."""
    cfg.launcher = 'none'  # as tools/test.py
    cfg.load_from = ckpt
    cfg.work_dir = work_dir
    dl = cfg.test_dataloader
    dl.batch_size = batch_size
    dl.num_workers = 0
    dl.persistent_workers = False
    ds = dl.dataset
    assert ds.type == 'PoseTrack18Dataset' and ds.data_mode == 'topdown' and ds.test_mode
    cfg_thr = ds.get('filter_cfg')
    assert cfg_thr == dict(bbox_score_thr=0.4), cfg_thr  # what the config says
    ds.data_root = DATA + '/'
    ds.ann_file = ANN_FILE
    assert ds.data_prefix == dict(img='')
    if mode == 'gt':
        # "comment `bbox_file` and `filter_cfg` if use gt bbox for evaluation"
        ds.pop('bbox_file')
        ds.pop('filter_cfg')
    else:
        ds.bbox_file = os.path.join(DATA, DET_FILE)  # used as given (not joined with data_root)
    ev = cfg.test_evaluator
    assert ev.type == 'PoseTrack18Metric' and set(ev.keys()) == {'type', 'ann_file'}, ev
    ev.ann_file = os.path.join(DATA, ANN_FILE)
    # results2json writes <dirname(outfile_prefix)>/<seq>.json
    ev.outfile_prefix = os.path.join(out_dir, 'results')
    return cfg


# ---------------------------------------------------------------------------------------------
# recording what the test loop does


def make_recorder(ckpt):
    import numpy as np
    import torch
    from mmengine.hooks import Hook

    class Recorder(Hook):
        priority = 'LOWEST'

        def __init__(self):
            self.instances = []
            self.images = {}
            self.final = None
            self.metrics = None
            self.dtypes = {}
            self.datalist = None

        def before_run(self, runner):
            # the test loop (dataset, evaluator) is built; the checkpoint is not loaded yet
            self.datalist = [runner.test_loop.dataloader.dataset.get_data_info(i)
                             for i in range(len(runner.test_loop.dataloader.dataset))]
            metric = runner.test_loop.evaluator.metrics[0]
            orig = metric.results2json

            def results2json(keypoints, outfile_prefix):
                # keypoints: img_id -> instances kept by NMS, in NMS order (score descending)
                self.final = {img_id: [(inst['id'], inst['score'], inst['area'])
                                       for inst in insts]
                              for img_id, insts in keypoints.items()}
                return orig(keypoints, outfile_prefix)

            metric.results2json = results2json

            # CocoMetric.compute_metrics calls the module-level oks_nms once per image with all
            # of that image's instances, rescored: record them (ids, scores, areas, keep order)
            from mmpose.evaluation.metrics import coco_metric
            orig_nms = coco_metric.oks_nms
            self.nms_calls = []

            def oks_nms(kpts_db, thr, sigmas=None, *a, **kw):
                keep = orig_nms(kpts_db, thr, sigmas, *a, **kw)
                self.nms_calls.append(dict(
                    thr=thr, sigmas=sigmas,
                    instances=[(k['img_id'], k['id'], k['score'], k['area']) for k in kpts_db],
                    keep=[int(i) for i in keep]))
                return keep

            coco_metric.oks_nms = oks_nms
            self.restore = lambda: setattr(coco_metric, 'oks_nms', orig_nms)

        def before_test(self, runner):
            # Runner.load_checkpoint is strict=False: check that every weight came from the file
            saved = torch.load(ckpt, map_location='cpu')['state_dict']
            model = runner.model
            sd = model.state_dict()
            names = {('head.' + k[len('keypoint_head.'):] if k.startswith('keypoint_head.') else k)
                     for k in saved}
            assert names == set(sd), (sorted(names ^ set(sd)))[:10]
            for k, v in sd.items():
                src = 'keypoint_head.' + k[5:] if k.startswith('head.') and k not in saved else k
                assert torch.equal(v, saved[src]), k

        def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            assert not runner.model.training
            for s in outputs:
                gi, pi = s.gt_instances, s.pred_instances
                assert len(pi.keypoints) == 1
                if not self.dtypes:
                    self.dtypes = {
                        'gt_instances.bboxes': str(gi.bboxes.dtype),
                        'gt_instances.bbox_scores': str(gi.bbox_scores.dtype),
                        'gt_instances.bbox_scales': str(gi.bbox_scales.dtype),
                        'metainfo.input_center': str(s.metainfo['input_center'].dtype),
                        'metainfo.input_size': repr(s.metainfo['input_size']),
                        'pred_instances.keypoints': str(pi.keypoints.dtype),
                        'pred_instances.keypoint_scores': str(pi.keypoint_scores.dtype),
                    }
                assert np.array_equal(gi.bbox_scales[0], s.metainfo['input_scale'])
                self.images[int(s.metainfo['img_id'])] = os.path.relpath(s.metainfo['img_path'],
                                                                         DATA)
                self.instances.append(dict(
                    img_id=int(s.metainfo['img_id']),
                    id=int(s.metainfo['id']),
                    bbox=f32list(gi.bboxes[0]),
                    bbox_score=f32(gi.bbox_scores[0]),
                    bbox_center=f32list(s.metainfo['input_center']),
                    bbox_scale=f32list(gi.bbox_scales[0]),
                    area=f32(np.prod(gi.bbox_scales, axis=1)[0]),
                    keypoints=[f32list(k) for k in pi.keypoints[0]],
                    keypoint_scores=f32list(pi.keypoint_scores[0]),
                ))

        def after_test_epoch(self, runner, metrics=None):
            self.metrics = metrics
            self.restore()

    return Recorder()


# ---------------------------------------------------------------------------------------------
# poseval


def poseval_ap(gt_dir, pred_dir):
    """poseval's AP for the written folder (loading, AP, table), as its evaluate.py runs it."""
    import numpy as np
    from poseval import eval_helpers
    from poseval.eval_helpers import Joint
    from poseval.evaluateAP import evaluateAP

    unsorted_glob = glob.glob
    eval_helpers.glob.glob = lambda pattern: sorted(unsorted_glob(pattern))
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            gt, pr = eval_helpers.load_data_dir(['', gt_dir.rstrip('/') + '/',
                                                 pred_dir.rstrip('/') + '/'])
            ap, pre, rec = evaluateAP(gt, pr, None, False, False)
            table = ''.join(eval_helpers.printTable(ap))
            cum = eval_helpers.getCum(ap)
    finally:
        eval_helpers.glob.glob = unsorted_glob

    def num(x):
        x = float(x)
        return None if math.isnan(x) else x

    names = Joint().name
    n = Joint().count
    cum_names = ['Head', 'Shou', 'Elb', 'Wri', 'Hip', 'Knee', 'Ankl', 'Total']
    return dict(
        joint_order=[names[i] for i in range(n)] + ['total'],
        ap=[num(v) for v in ap.flatten()],
        pre=[num(v) for v in pre.flatten()],
        rec=[num(v) for v in rec.flatten()],
        ap_by_joint={names[i]: num(ap[i, 0]) for i in range(n)},
        ap_cum=dict(zip(cum_names, [num(v) for v in cum])),
        table=table)


# ---------------------------------------------------------------------------------------------


def versions():
    import cv2
    import mmcv
    import mmengine
    import numpy
    import torch

    import mmpose
    out = dict(mmpose=mmpose.__version__, mmengine=mmengine.__version__, mmcv=mmcv.__version__,
               torch=torch.__version__, numpy=numpy.__version__, cv2=cv2.__version__,
               python=sys.version.split()[0], poseval=POSEVAL_COMMIT)
    try:
        import shapely
        out['shapely'] = shapely.__version__
    except ImportError:
        pass
    return out


def detection_notes():
    """How the config's score filter treats the detection file (float32 compare)."""
    import numpy as np
    dets = json.load(open(os.path.join(DATA, DET_FILE)))
    person = [d for d in dets if d['category_id'] == 1]
    kept32 = [d for d in person if not np.array(d['score'], np.float32).reshape(1) < 0.4]
    kept64 = [d for d in person if not d['score'] < 0.4]
    return dict(detections=len(dets), person_detections=len(person),
                kept_by_bbox_score_thr=len(kept32), kept_if_compared_in_float64=len(kept64))


def dump_lines(doc, list_key=None, levels=1):
    """JSON with one line per key down to `levels` of nesting and one line per element of
    doc[list_key]: small and still readable."""
    def dump(d, level):
        pad = ' ' * level
        parts = []
        for k, v in d.items():
            if k == list_key and level == 1:
                items = ',\n'.join(pad + ' ' + json.dumps(i, separators=(',', ':')) for i in v)
                parts.append(f'{pad}{json.dumps(k)}: [\n{items}\n{pad}]')
            elif isinstance(v, dict) and v and level < levels:
                parts.append(f'{pad}{json.dumps(k)}: {dump(v, level + 1)}')
            else:
                parts.append(f'{pad}{json.dumps(k)}: {json.dumps(v, separators=(", ", ": "))}')
        return '{\n' + ',\n'.join(parts) + '\n' + ' ' * (level - 1) + '}'
    text = dump(doc, 1) + '\n'
    assert json.loads(text) == doc
    return text


def run_mode(mode, base_cfg_fn, ckpt, out_dir, batch_size, model_info):
    import numpy as np
    from mmengine.runner import Runner

    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    work_dir = tempfile.mkdtemp(prefix=f'vidpose-e2e-{mode}-')
    try:
        cfg = test_config(base_cfg_fn(), mode, ckpt, out_dir, work_dir, batch_size)
        filter_cfg = cfg.test_dataloader.dataset.get('filter_cfg')
        filter_cfg = dict(filter_cfg) if filter_cfg else None
        recorder = make_recorder(ckpt)
        runner = Runner.from_cfg(cfg)
        runner.register_hook(recorder, 'LOWEST')
        t0 = time.time()
        metrics = runner.test()
        seconds = time.time() - t0
        metric_obj = runner.test_loop.evaluator.metrics[0]
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    # what happened to each instance in the metric: the rescored scores and NMS as MMPose ran them
    rescored, kept, ties, score_types = {}, {}, [], set()
    sigmas = None
    for call in recorder.nms_calls:
        sigmas = call['sigmas']
        scores = [sc for _, _, sc, _ in call['instances']]
        score_types.update(type(sc).__name__ for sc in scores)
        if len(set(float(sc) for sc in scores)) != len(scores):
            ties.append(call['instances'][0][0])
        for img_id, iid, sc, area in call['instances']:
            rescored[(img_id, iid)] = (sc, area)
        for track_id, i in enumerate(call['keep']):
            img_id, iid = call['instances'][i][:2]
            kept[(img_id, iid)] = track_id
    # results2json got exactly the kept instances, in NMS keep order (= track_id)
    for img_id, insts in recorder.final.items():
        assert [kept[(img_id, iid)] for iid, _, _ in insts] == list(range(len(insts)))
    for inst in recorder.instances:
        key = (inst['img_id'], inst['id'])
        score, area = rescored[key]
        assert float(area) == inst['area'], (area, inst['area'])
        # cross-check of the rule (score_mode 'bbox_keypoint', keypoint_score_thr 0.2): every
        # operation stays float32 under numpy 2 (python int 0 start, python int count)
        ks = np.asarray(inst['keypoint_scores'], np.float32)
        valid = ks[ks > np.float32(0.2)]
        acc = np.float32(0)
        for k in valid:
            acc = np.float32(acc + k)
        mean = np.float32(acc / np.float32(len(valid))) if len(valid) else np.float32(0)
        assert float(np.float32(np.float32(inst['bbox_score']) * mean)) == float(score), (key, score)
        inst['score'] = f32(score)
        inst['kept'] = key in kept
        inst['track_id'] = kept.get(key)
    score_dtype = sorted(score_types)
    # every instance the dataset produced ran through the model, in dataset order
    assert [d['id'] for d in recorder.datalist] == [i['id'] for i in recorder.instances]

    seq_files = sorted(f for f in os.listdir(out_dir) if f.endswith('.json'))
    expected_seqs = sorted(f for f in os.listdir(os.path.join(DATA, 'annotations', 'val'))
                           if f.endswith('.json'))
    assert seq_files == expected_seqs, (seq_files, expected_seqs)
    # MMPose's files, re-written without whitespace: every number token stays as MMPose wrote it,
    # and json.dumps(json.load(f), sort_keys=True, indent=4) gives MMPose's bytes back (checked)
    originals = {}
    where = {}
    written = 0
    for fn in seq_files:
        path = os.path.join(out_dir, fn)
        with open(path, 'rb') as f:
            raw = f.read()
        data = json.loads(raw)
        assert json.dumps(data, sort_keys=True, indent=4).encode() == raw, fn
        originals[fn] = dict(bytes=len(raw), sha256=hashlib.sha256(raw).hexdigest())
        with open(path, 'w') as f:
            f.write(json.dumps(data, sort_keys=True, separators=(',', ':')) + '\n')
        counter = {}
        for n, ann in enumerate(data['annotations']):
            t = counter.get(ann['image_id'], 0)
            assert ann['track_id'] == t  # enumeration index within the frame
            counter[ann['image_id']] = t + 1
            where[(ann['image_id'], ann['track_id'])] = (fn, n, ann)
        written += len(data['annotations'])
    # each kept instance is one annotation of those files: keep its keypoints there only
    for inst in recorder.instances:
        if not inst['kept']:
            continue
        fn, n, ann = where.pop((inst['img_id'], inst['track_id']))
        kp = ann['keypoints']
        assert kp[0::3] == [x for x, _ in inst['keypoints']]
        assert kp[1::3] == [y for _, y in inst['keypoints']]
        assert kp[2::3] == inst['keypoint_scores'] == ann['scores']
        assert ann['score'] == inst['score']
        del inst['keypoints'], inst['keypoint_scores']
        inst['file'] = fn
        inst['annotation'] = n
    assert not where, where

    ap = poseval_ap(os.path.join(DATA, 'annotations', 'val'), out_dir)
    metric = {k: float(v) for k, v in metrics.items()}
    total = metric['posetrack18/AP']
    assert abs(total - ap['ap_cum']['Total']) < 1e-12, (total, ap['ap_cum'])

    doc = dict(
        mode=mode,
        model=model_info,
        data_root='shared/data/posetrack18',
        ann_file=ANN_FILE,
        bbox_file=DET_FILE if mode == 'det' else None,
        filter_cfg=filter_cfg,
        metric=dict(type='PoseTrack18Metric', score_mode=metric_obj.score_mode,
                    keypoint_score_thr=metric_obj.keypoint_score_thr,
                    nms_mode=metric_obj.nms_mode, nms_thr=metric_obj.nms_thr,
                    oks_sigmas=f32list(sigmas)),
        dtypes=dict(recorder.dtypes, metric_score=score_dtype),
        counts=dict(instances=len(recorder.instances),
                    kept_after_nms=sum(i['kept'] for i in recorder.instances),
                    written=written,
                    images_with_score_ties_after_rescoring=ties),
        images={str(k): v for k, v in sorted(recorder.images.items())},
        instances=recorder.instances,
    )
    if mode == 'det':
        doc['counts'].update(detection_notes())
    with open(os.path.join(out_dir, 'instances.json'), 'w') as f:
        f.write(dump_lines(doc, 'instances'))
    out = dict(mode=mode, model=model_info,
               metric_returned=metric,
               mmpose_files=originals,
               poseval=ap,
               counts=doc['counts'],
               versions=versions())
    with open(os.path.join(out_dir, 'ap.json'), 'w') as f:
        f.write(dump_lines(out, levels=2))
    print(f'[{mode}] {len(recorder.instances)} instances, {written} written, '
          f'test loop {seconds:.1f} s, AP {total:.4f}')
    print(ap['table'], end='')
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument('--small', action='store_true', help='narrow model (default)')
    g.add_argument('--full', choices=['w32', 'w48'])
    ap.add_argument('--out', help='output folder (default tests/fixtures/e2e/narrow for --small; '
                                  'required for --full)')
    ap.add_argument('--poseval', default=os.environ.get('POSEVAL'),
                    help='poseval checkout (the folder holding poseval/), commit 4258a15')
    ap.add_argument('--batch-size', type=int, default=4)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--modes', default='gt,det', help='box modes, comma-separated')
    ap.add_argument('--reuse-checkpoint', action='store_true',
                    help='--full: use the checkpoint already in --out')
    args = ap.parse_args()
    if args.full and not args.out:
        ap.error('--full needs --out')
    out = os.path.abspath(args.out or os.path.join(REPO, 'tests', 'fixtures', 'e2e', 'narrow'))

    # PoseTrack18Metric decides at import time whether poseval is there
    if args.poseval:
        os.environ['POSEVAL'] = args.poseval
        sys.path.insert(0, os.path.abspath(args.poseval))
    try:
        import poseval.evaluateAP  # noqa: F401
    except ImportError as e:
        sys.exit(f'poseval is not importable ({e}); pass --poseval (see --help)')

    sys.path.insert(0, HERE)
    import make_hrnet_fixtures as mhf  # runs refenv_compat.setup() before importing mmpose
    import torch

    torch.set_num_threads(args.threads)
    os.makedirs(out, exist_ok=True)
    if args.full and not args.reuse_checkpoint:
        # make_hrnet_fixtures.py's own --full code path writes the random checkpoint
        argv = sys.argv
        sys.argv = ['make_hrnet_fixtures.py', '--full', args.full, '--out', out,
                    '--threads', str(args.threads)]
        try:
            mhf.main()
        finally:
            sys.argv = argv
    if args.full:
        torch.set_num_threads(args.threads)
        ckpt = os.path.join(out, f'hrnet_{args.full}_zip.pth')
        base = mhf.CFG_W32 if args.full == 'w32' else mhf.CFG_W48

        def cfg_fn():
            return mhf.make_config(base)
        model_info = dict(name=f'HRNet-{args.full.upper()} random (make_hrnet_fixtures.py --full)',
                          config=base, checkpoint=os.path.basename(ckpt))
    else:
        ckpt = NARROW_CKPT

        def cfg_fn():
            return narrow_config(mhf)
        model_info = dict(name='narrow HRNet (make_hrnet_fixtures.py small mode)',
                          config=mhf.CFG_W32 + ' narrowed by make_hrnet_fixtures.make_config',
                          checkpoint='tests/fixtures/hrnet/hrnet_w4_zip.pth')
    cfg = cfg_fn()
    extra = cfg.model.backbone.extra
    model_info.update(
        checkpoint_sha256=sha256(ckpt),
        input_size=list(cfg.codec.input_size), heatmap_size=list(cfg.codec.heatmap_size),
        stage1_channels=extra.stage1.num_channels[0],
        widths=list(extra.stage4.num_channels),
        num_modules=[extra[f'stage{i}'].num_modules for i in range(1, 5)],
        num_blocks=[extra[f'stage{i}'].num_blocks[0] for i in range(1, 5)],
        test_cfg=dict(cfg.model.test_cfg),
        batch_size=args.batch_size)
    modes = args.modes.split(',')
    if len(modes) == 1:
        run_mode(modes[0], cfg_fn, ckpt, os.path.join(out, modes[0]), args.batch_size, model_info)
        return
    # one process per test loop, as tools/test.py: mmengine keeps global singletons (the
    # visualizer, with its save folder; the message hub) that a second Runner would reuse
    t0 = time.time()
    for mode in modes:
        cmd = [sys.executable, os.path.abspath(__file__), '--modes', mode, '--out', out,
               '--batch-size', str(args.batch_size), '--threads', str(args.threads),
               '--poseval', os.path.abspath(args.poseval) if args.poseval else '']
        if args.full:
            cmd += ['--full', args.full, '--reuse-checkpoint']
        subprocess.run(cmd, check=True)
    print(f'all modes, with poseval: {time.time() - t0:.1f} s; wrote {out}')


if __name__ == '__main__':
    main()
