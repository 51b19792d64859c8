"""Semi-supervised video object segmentation evaluation (paper §6.1.2 and §7, App. F.1.3), and scoring of a folder
of predicted PNGs against ground truth without a model (the official ``sav_evaluator.py --gt_root --pred_root``).

What the paper says (arXiv 2408.00714, §6.1.2 and the appendix "Semi-supervised VOS evaluation details", F.1.3 in
the numbering used here, E.1.3 in the ar5iv rendering), paraphrased: prompts are given on the first frame only: a
ground-truth mask (the standard VOS setting, §7), a box, or 1, 3 or 5 clicks sampled interactively on that frame,
the first at the object's centre and each later one at the centre of the error region, following SAM and RITM;
then the object is tracked. Every object must have a non-empty mask on its first frame; an object absent from the
first frame gets a separate video starting at the first frame where it appears. The metric is the standard J&F
(the official toolkit of a dataset where it has one; J alone on VOST, which we do not special-case). The paper does
not say how the box is made; we take the ground-truth mask's tight box.

Protocol, as the official ``tools/vos_inference.py`` followed by ``sav_evaluator.py``, with our choices stated:

- Prompts: each object is prompted once, on its first annotated frame where its ground truth is non-empty, with
  the ground-truth mask, or 1, 3 or 5 simulated clicks (``prompts.next_click``: the first at the mask's centre,
  each later one at the centre of the error between the ground truth and the model's mask for that frame after the
  clicks so far), or the mask's box (``prompts.mask_to_box``).
- Objects that appear later start on their own first annotated frame: the video is tracked forward in segments,
  the objects of a start frame being added there and every object of the state tracked together (one batched
  run); an object has an empty prediction before its start frame and never sees frames before it, as in the
  official per-object run for such datasets (``vos_separate_inference_per_object``). Nothing is tracked backward.
- Masks are the logits > ``score_thresh`` (0) at video resolution.
- Predictions are written, and scored, in an output layout: ``"davis"`` (one palette PNG per frame; overlapping
  masks are resolved as the official ``put_per_obj_mask``: the lowest object id wins) or ``"sav"`` (one binary PNG
  per object and frame, overlaps kept). By default the dataset's own layout (SA-V train: ``"sav"``).
- Only annotated frames are predicted to PNG and scored (sparse annotations: SA-V at 6 fps, YouTube-VOS); with
  ``skip_first_and_last`` (the semi-supervised default of both toolkits) an object's first and last annotated
  frames are not scored. The metrics and their averaging are ``metrics``' (``convention`` ``"sav"`` default).
- The objects of a video are every id its annotations hold (DAVIS palettes: every label on any annotated frame;
  SA-V: every object folder or masklet). The DAVIS 2017 toolkit takes ids ``1 .. max id`` of the first frame;
  on DAVIS 2017 every object is on the first frame, so the two agree there.
"""

import csv
import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from sam2_jax.datasets import vos
from sam2_jax.evaluation import metrics
from sam2_jax.evaluation.prompts import mask_to_box, next_click

log = logging.getLogger(__name__)

PROMPTS = ("mask", "click1", "click3", "click5", "box")
# With videos_per_step, each device group takes the dataset in windows of this many videos per slot of its batch:
# slots idle only at a window's end, while the last videos finish (a device group takes the next window then).
WINDOW_PER_SLOT = 8


@dataclasses.dataclass
class VOSEvalConfig:
    """How ``evaluate_vos`` runs.

    Attributes:
      prompt: ``mask``, ``click1``, ``click3``, ``click5`` or ``box``.
      convention: metric convention, ``sav`` or ``davis2017`` (see ``metrics``).
      skip_first_and_last: leave each object's first and last annotated frame out of the scores.
      score_thresh: mask logit threshold.
      output_layout: ``davis``, ``sav`` or None (the dataset's layout).
      output_dir: where CSVs, PNGs and plots go (None: nothing written).
      write_pngs: write the predicted masks.
      bound_th: F boundary tolerance.
      videos_per_step: videos tracked together in one program (``track_videos``: a slot of the batch takes the
        next video as soon as its video ends); 1: one at a time.
    """

    prompt: str = "mask"
    convention: str = "sav"
    skip_first_and_last: bool = True
    score_thresh: float = 0.0
    output_layout: str | None = None
    output_dir: str | None = None
    write_pngs: bool = True
    bound_th: float = metrics.BOUND_TH
    videos_per_step: int = 1


@dataclasses.dataclass
class EvalResult:
    """Everything an evaluation run produced.

    Attributes:
      scores: per-object scores of every evaluated video.
      summary: dataset J, F, J&F (``metrics.summarize``).
      skipped: ``(video, reason)`` of the videos left out.
      num_frames: frames tracked (model runs) or scored (folder scoring).
      seconds: wall time of the run.
    """

    scores: list[metrics.ObjectScore]
    summary: dict[str, float]
    skipped: list[tuple[str, str]]
    num_frames: int = 0
    seconds: float = 0.0


def combine_davis(masks: np.ndarray, object_ids: Sequence[int]) -> np.ndarray:
    """``(O, H, W)`` masks -> ``(H, W)`` uint8 labels, the lowest id winning an overlap (``put_per_obj_mask``).

    Args:
      masks: per-object masks.
      object_ids: their ids, each in 1..255.

    Returns:
      the label map.
    """
    ids = [int(o) for o in object_ids]
    if any(not 1 <= o <= 255 for o in ids):
        raise ValueError(f"object ids {ids} do not fit a palette PNG (1..255); use the 'sav' output layout")
    lab = np.zeros(masks.shape[1:], np.uint8)
    for k in np.argsort(ids, kind="stable")[::-1]:
        lab[masks[k]] = ids[k]
    return lab


def as_layout(masks: np.ndarray, object_ids: Sequence[int], layout: str) -> np.ndarray:
    """The per-object masks a layout stores: disjoint for ``davis`` (``combine_davis``), as given for ``sav``."""
    if layout == "sav":
        return masks
    if layout == "davis":
        lab = combine_davis(masks, object_ids)
        return lab[None] == np.asarray(object_ids, np.int64)[:, None, None]
    raise ValueError(f"unknown layout {layout!r}, expected davis or sav")


def write_prediction(root: str, video: str, frame: str, masks: np.ndarray, object_ids: Sequence[int], layout: str):
    """Writes one frame's predicted masks: ``root/<video>/<frame>.png`` (davis) or
    ``root/<video>/<id:03d>/<frame>.png`` (sav)."""
    if layout == "davis":
        os.makedirs(os.path.join(root, video), exist_ok=True)
        vos.write_label_png(os.path.join(root, video, f"{frame}.png"), combine_davis(masks, object_ids))
    else:
        for k, oid in enumerate(object_ids):
            d = os.path.join(root, video, f"{int(oid):03d}")
            os.makedirs(d, exist_ok=True)
            vos.write_label_png(os.path.join(d, f"{frame}.png"), masks[k].astype(np.uint8))


def _score_video(
    video_id: str,
    object_ids: Sequence[int],
    frames: Sequence,
    pred_masks: Iterable[np.ndarray],
    gt_masks: Iterable[np.ndarray],
    annotated: np.ndarray,
    cfg: VOSEvalConfig,
) -> tuple[list[metrics.ObjectScore], list[int]]:
    """Scores annotated frames; ``annotated`` (A, O) tells which object has which frame, and the first and last
    of each object's annotated frames are skipped when the config says so."""
    keep = annotated.copy()
    if cfg.skip_first_and_last:
        for k in range(annotated.shape[1]):
            rows = np.flatnonzero(annotated[:, k])
            keep[rows[:1], k] = False
            keep[rows[-1:], k] = False
    scorer = metrics.VideoScorer(video_id, object_ids, cfg.convention, cfg.bound_th)
    for a, (name, pred, gt) in enumerate(zip(frames, pred_masks, gt_masks, strict=True)):
        if keep[a].any():
            scorer.add_frame(name, pred, gt, annotated=keep[a])
    return scorer.results(), scorer.unreported()


def _prompt_object(predictor, state, frame_idx: int, obj_id: int, gt: np.ndarray, prompt: str, thresh: float):
    """Adds one object's prompt on its start frame (module docstring)."""
    if prompt == "mask":
        predictor.add_new_mask(state, frame_idx, obj_id, gt)
    elif prompt == "box":
        predictor.add_new_points_or_box(state, frame_idx, obj_id, box=mask_to_box(gt))
    elif prompt.startswith("click"):
        pred = None
        for i in range(int(prompt[5:])):
            point, label = next_click(gt, pred)
            _, obj_ids, logits = predictor.add_new_points_or_box(
                state,
                frame_idx,
                obj_id,
                points=point[None],
                labels=np.array([label], np.int32),
                clear_old_points=i == 0,
            )
            pred = np.asarray(logits[list(obj_ids).index(obj_id), 0]) > thresh
    else:
        raise ValueError(f"unknown prompt {prompt!r}, expected one of {PROMPTS}")


class _VideoRun:
    """One video's tracking plan and its predictions (module docstring): segments that each start on a frame where
    objects are prompted, tracked forward up to the next one."""

    def __init__(self, predictor, video: vos.VOSVideo):
        self.video = video
        first = video.first_annotated()
        self.starts: dict[int, list[int]] = {}
        for k, a in enumerate(first):
            if a >= 0:
                self.starts.setdefault(int(video.mask_frames[a]), []).append(k)
        self.order = sorted(self.starts)
        self.out = np.zeros((len(video.mask_frames), len(video.object_ids), video.height, video.width), bool)
        self.tracked = 0
        self.row_of = {int(t): a for a, t in enumerate(video.mask_frames)}
        self.col_of = {int(o): k for k, o in enumerate(video.object_ids)}
        self.state = predictor.init_state(video.frames) if self.order else None
        if self.state is None:
            return
        n = self.state["num_frames"]
        if n is not None and n <= int(video.mask_frames[-1]):
            raise vos.DataError(
                f"video {video.video_id}: annotation on frame {int(video.mask_frames[-1])} but the video has {n} frames"
            )
        if (self.state["video_height"], self.state["video_width"]) != (video.height, video.width):
            raise vos.DataError(
                f"video {video.video_id}: frames are {self.state['video_width']}x{self.state['video_height']}, "
                f"annotations {video.width}x{video.height}"
            )

    def prompt(self, predictor, i: int, cfg: "VOSEvalConfig") -> tuple[int, int | None]:
        """Prompts the objects of segment ``i``; returns its ``(start_frame_idx, max_frame_num_to_track)``."""
        s = self.order[i]
        gts = self.video.masks(self.row_of[s])
        for k in self.starts[s]:
            _prompt_object(
                predictor, self.state, s, int(self.video.object_ids[k]), gts[k], cfg.prompt, cfg.score_thresh
            )
        return s, self.order[i + 1] - s - 1 if i + 1 < len(self.order) else None

    def record(self, t: int, obj_ids: Sequence[int], logits: np.ndarray, thresh: float) -> None:
        self.tracked += 1
        a = self.row_of.get(int(t))
        if a is None:
            return
        for j, oid in enumerate(obj_ids):
            self.out[a, self.col_of[int(oid)]] = np.asarray(logits[j, 0]) > thresh

    def keep_final_lineage(self, predictor, thresh: float) -> None:
        """SAM2Long: the annotated frames of the pass just tracked take the masks along the pathway that was best
        at its end (``final_lineage_masks``), the masks SAM2Long's ``tools/vos_inference.py`` scores; under the
        other policies that is empty and the per-frame masks stay, as they do for a predictor with only the
        official API (no ``final_lineage_masks``)."""
        final_lineage_masks = getattr(predictor, "final_lineage_masks", None)
        lineage = final_lineage_masks(self.state, self.row_of) if final_lineage_masks else {}
        if not lineage:
            return
        ids = list(self.state.obj_ids)
        for t, logits in lineage.items():
            for j, oid in enumerate(ids):
                self.out[self.row_of[int(t)], self.col_of[int(oid)]] = np.asarray(logits[j, 0]) > thresh


def track_video(predictor, video: vos.VOSVideo, cfg: VOSEvalConfig) -> tuple[np.ndarray, int]:
    """Tracks every object of a video in one batched run and returns the predictions on the annotated frames.

    Args:
      predictor: a ``SAM2VideoPredictor``.
      video: the video and its ground truth.
      cfg: prompt and threshold.

    Returns:
      ``(masks, tracked)``: ``(A, O, H, W)`` bool predictions on ``video.mask_frames`` (empty before an object's
      start frame and for objects never present), and the number of frames tracked.
    """
    run = _VideoRun(predictor, video)
    for i in range(len(run.order)):
        s, n = run.prompt(predictor, i, cfg)
        for t, obj_ids, logits in predictor.propagate_in_video(run.state, start_frame_idx=s, max_frame_num_to_track=n):
            run.record(t, obj_ids, logits, cfg.score_thresh)
        run.keep_final_lineage(predictor, cfg.score_thresh)
    return run.out, run.tracked


def track_videos(predictor, videos: Sequence[vos.VOSVideo], cfg: VOSEvalConfig, done=None) -> list:
    """``track_video`` of several videos at once, ``cfg.videos_per_step`` in one program
    (``SAM2VideoPredictor.propagate_in_videos`` with continuous batching): a video is read and its first segment
    prompted when a slot of the batch frees up, and each later segment is prompted once the previous one has been
    tracked, then takes the next free slot; videos enter longest first. Predictions equal ``track_video``'s to float
    rounding.

    Args:
      done: called as ``done(index, result)`` when a video ends (its ``(masks, tracked)``, or the error it raised);
        its return value is kept instead of the result (``evaluate_videos`` scores there, so a video's masks are
        dropped as soon as it ends).
    Returns:
      per video, ``track_video``'s ``(masks, tracked)``, or the ``DataError`` / ``ValueError`` that video raised
      (a video that fails alone leaves the others of its batch tracked), through ``done`` if given.
    """
    results: dict[int, Any] = {}
    runs: dict[int, list] = {}  # pass index -> [dataset index, run, segment]

    def finish(k, value):
        results[k] = value if done is None else done(k, value)

    def passes():
        # longest first: the short videos fill in as slots free up, so the batch's tail (slots idle while the last
        # videos finish) is short; results keep the dataset's order
        for k in sorted(range(len(videos)), key=lambda k: -videos[k].num_frames):
            video = videos[k]
            try:
                run = _VideoRun(predictor, video)
                if not run.order:
                    finish(k, (run.out, run.tracked))
                    continue
                start, n = run.prompt(predictor, 0, cfg)
            except (vos.DataError, ValueError) as e:
                finish(k, e)
                continue
            runs[len(runs)] = [k, run, 0]
            yield run.state, start, n

    def next_pass(v):
        entry = runs[v]
        k, run, i = entry
        run.keep_final_lineage(predictor, cfg.score_thresh)
        if i + 1 < len(run.order):
            entry[2] = i + 1
            return run.prompt(predictor, i + 1, cfg)
        finish(k, (run.out, run.tracked))
        entry[1] = None  # the masks go with the run
        return None

    try:
        batch = predictor.propagate_in_videos(passes(), videos_per_step=cfg.videos_per_step, next_pass=next_pass)
        for v, t, obj_ids, logits in batch:
            runs[v][1].record(t, obj_ids, logits, cfg.score_thresh)
    except (vos.DataError, ValueError) as e:
        left = [k for k in range(len(videos)) if k not in results]
        log.warning("a batch of videos failed (%s); tracking the %d unfinished ones one at a time", e, len(left))
        for k in left:
            finish(k, _try(lambda k=k: track_video(predictor, videos[k], cfg)))
    return [results[k] for k in range(len(videos))]


def _try(fn):
    try:
        return fn()
    except (vos.DataError, ValueError) as e:
        return e


def _write_csvs(out_dir: str, result: EvalResult, extra: dict[str, Any] | None = None) -> None:
    """per_object.csv, per_video.csv, per_frame.csv and summary.csv at full float precision (repr)."""
    os.makedirs(out_dir, exist_ok=True)
    r = repr
    with open(os.path.join(out_dir, "per_object.csv"), "w", newline="") as f:
        w = csv.writer(f)
        keys = ["J&F", "J", "F", "J_recall", "F_recall", "J_decay", "F_decay"]
        w.writerow(["video", "object", *keys, "num_frames"])
        for s in result.scores:
            st = s.stats()
            w.writerow([s.video, s.object_id, *[r(float(st[k])) for k in keys], len(s.frames)])
    with open(os.path.join(out_dir, "per_video.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "J&F", "J", "F", "num_objects"])
        for v, st in metrics.per_video(result.scores).items():
            w.writerow([v, r(st["J&F"]), r(st["J"]), r(st["F"]), st["num_objects"]])
    with open(os.path.join(out_dir, "per_frame.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "object", "frame", "J", "F"])
        for s in result.scores:
            for name, j, fv in zip(s.frames, s.j, s.f, strict=True):
                w.writerow([s.video, s.object_id, name, r(float(j)), r(float(fv))])
    with open(os.path.join(out_dir, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        row = {k: result.summary[k] for k in ("J&F", "J", "F", "J_recall", "F_recall", "J_decay", "F_decay")}
        row.update(
            num_videos=result.summary["num_videos"],
            num_objects=result.summary["num_objects"],
            num_skipped=len(result.skipped),
        )
        row.update(extra or {})
        w.writerow(list(row))
        w.writerow([r(v) if isinstance(v, float) else v for v in row.values()])
    with open(os.path.join(out_dir, "skipped.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "reason"])
        w.writerows(result.skipped)


def plot_per_frame(path: str, scores: Sequence[metrics.ObjectScore], max_videos: int = 20) -> None:
    """Per-frame J&F (mean over each video's objects scored on that frame) of up to ``max_videos`` videos."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    videos: dict[str, dict] = {}
    for s in scores:
        d = videos.setdefault(s.video, {})
        for name, j, f in zip(s.frames, s.j, s.f, strict=True):
            d.setdefault(name, []).append((j + f) / 2)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for v, d in list(videos.items())[:max_videos]:
        names = sorted(d, key=lambda n: int(n) if str(n).isdigit() else str(n))
        x = [int(n) if str(n).isdigit() else i for i, n in enumerate(names)]
        ax.plot(x, [100 * np.mean(d[n]) for n in names], marker=".", label=v)
    ax.set_xlabel("frame")
    ax.set_ylabel("J&F (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("per-frame J&F (mean over the objects scored on the frame)")
    if len(videos) <= 12:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_summary(result: EvalResult, title: str = "") -> str:
    """The printed summary table (0-100 scale, two decimals) and the skipped videos."""
    s = result.summary
    lines = [title] if title else []
    lines.append(f"{'':<24}{'J&F':>8}{'J':>8}{'F':>8}")
    for v, st in metrics.per_video(result.scores).items():
        lines.append(f"{v[:24]:<24}{100 * st['J&F']:>8.2f}{100 * st['J']:>8.2f}{100 * st['F']:>8.2f}")
    lines.append(f"{'dataset (mean of objects)':<24}{100 * s['J&F']:>8.2f}{100 * s['J']:>8.2f}{100 * s['F']:>8.2f}")
    lines.append(f"{s['num_videos']} videos, {s['num_objects']} objects scored, {len(result.skipped)} videos skipped")
    for v, why in result.skipped:
        lines.append(f"  skipped {v}: {why}")
    if result.num_frames and result.seconds:
        lines.append(
            f"{result.num_frames} frames in {result.seconds:.1f} s ({result.seconds / result.num_frames:.3f} s/frame)"
        )
    return "\n".join(lines)


def _finish(result: EvalResult, cfg: VOSEvalConfig, extra: dict | None = None) -> EvalResult:
    if cfg.output_dir:
        _write_csvs(cfg.output_dir, result, extra)
        if result.scores:
            plot_per_frame(os.path.join(cfg.output_dir, "per_frame_jf.png"), result.scores)
    return result


def evaluate_video(predictor, video: vos.VOSVideo, cfg: VOSEvalConfig):
    """Tracks, writes and scores one video (one step of ``evaluate_vos``).

    Args:
      predictor: a ``SAM2VideoPredictor``.
      video: the video and its ground truth.
      cfg: the run's settings.

    Returns:
      ``(scores, skipped, frames)``: the per-object scores, ``(video, reason)`` when the video is bad data (then no
      scores) or None, and the number of frames tracked.
    """
    return score_tracked(video, _try(lambda: track_video(predictor, video, cfg)), cfg)


def evaluate_videos(predictor, videos: Sequence[vos.VOSVideo], cfg: VOSEvalConfig) -> list:
    """``evaluate_video`` of videos tracked ``cfg.videos_per_step`` at a time (``track_videos``), each scored as
    it ends."""
    return track_videos(predictor, videos, cfg, done=lambda k, r: score_tracked(videos[k], r, cfg))


def score_tracked(video: vos.VOSVideo, tracked, cfg: VOSEvalConfig):
    """Writes and scores a video's predictions ``tracked`` (``track_video``'s result, or the error it raised)."""
    if isinstance(tracked, Exception):
        log.warning("skipping video %s: %s", video.video_id, tracked)
        return [], (video.video_id, str(tracked)), 0
    pred, n = tracked
    layout = cfg.output_layout or video.layout
    pred = np.stack([as_layout(p, video.object_ids, layout) for p in pred])
    names = [video.frame_names[t] for t in video.mask_frames]
    if cfg.output_dir and cfg.write_pngs:
        for a, name in enumerate(names):
            write_prediction(
                os.path.join(cfg.output_dir, "pred"), video.video_id, name, pred[a], video.object_ids, layout
            )
    gts = (video.masks(a) for a in range(len(names)))
    res, unreported = _score_video(video.video_id, video.object_ids, names, pred, gts, video.annotated, cfg)
    if unreported:
        log.info("video %s: objects %s never present in the scored ground truth", video.video_id, unreported)
    return res, None, n


def evaluate_vos(predictor, videos: Iterable[vos.VOSVideo], cfg: VOSEvalConfig, progress: bool = True) -> EvalResult:
    """Semi-supervised VOS over a dataset: track, write, score (module docstring).

    Args:
      predictor: a ``SAM2VideoPredictor``, or a list of them, one per device group (``parallel.group_predictors``):
        each idle one takes the next video; the result does not depend on how many there are.
      videos: ``VOSVideo``s (a reader; a reader's own skipped videos are added to the result's).
      cfg: the run's settings.
      progress: show a progress bar over videos.

    Returns:
      the ``EvalResult``; with ``cfg.output_dir`` also CSVs, ``pred/`` PNGs and ``per_frame_jf.png`` written there.
    """
    from sam2_jax.evaluation import parallel

    if cfg.prompt not in PROMPTS:
        raise ValueError(f"unknown prompt {cfg.prompt!r}, expected one of {PROMPTS}")
    start = time.perf_counter()
    scores: list[metrics.ObjectScore] = []
    skipped: list[tuple[str, str]] = []
    tracked = 0
    # Assembled in the dataset's order, whichever group ran each video (parallel module docstring).
    if cfg.videos_per_step < 1:
        raise ValueError(f"videos_per_step must be at least 1, got {cfg.videos_per_step}")
    if cfg.videos_per_step == 1:
        results = parallel.map_videos(lambda p, v: evaluate_video(p, v, cfg), videos, predictor, progress)
    else:  # the bar counts windows of WINDOW_PER_SLOT videos a slot, refilled continuously within a window
        batches = _batches(videos, cfg.videos_per_step * WINDOW_PER_SLOT)
        done = parallel.map_videos(lambda p, b: evaluate_videos(p, b, cfg), batches, predictor, progress)
        results = [r for batch in done for r in batch]
    for res, bad, n in results:
        scores.extend(res)
        skipped += [bad] if bad else []
        tracked += n
    skipped.extend(getattr(videos, "errors", []))
    result = EvalResult(scores, metrics.summarize(scores), skipped, tracked, time.perf_counter() - start)
    return _finish(result, cfg, {"prompt": cfg.prompt, "convention": cfg.convention})


def _batches(videos: Iterable, n: int):
    batch = []
    for v in videos:
        batch.append(v)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _gt_video_layout(gt_dir: str) -> str:
    names = os.listdir(gt_dir)
    if names and all(n.endswith(".png") for n in names):
        return "davis"
    return "sav"


def _read_pred(path: str, video: str, layout: str, shape: tuple[int, int]) -> np.ndarray:
    if not os.path.exists(path):
        raise vos.DataError(f"video {video}: prediction {path} not found")
    lab = vos.read_label_png(path)
    if lab.shape != shape:
        raise vos.DataError(
            f"video {video}: prediction {path} is {lab.shape[1]}x{lab.shape[0]}, ground truth {shape[1]}x{shape[0]}"
        )
    return lab


def score_video_folder(gt_root: str, pred_root: str, video: str, cfg: VOSEvalConfig):
    """Scores one video's predicted PNGs against its ground-truth PNGs (layout detected as the official
    evaluator does: a folder of PNGs is DAVIS, a folder of object folders SA-V).

    Args:
      gt_root: the ground-truth annotation root (``Annotations[/480p]`` or ``Annotations_6fps``).
      pred_root: the predictions in the same layout.
      video: the video folder name.
      cfg: convention, skipping, tolerance.

    Returns:
      ``(scores, num_frames)``.
    """
    gdir, pdir = os.path.join(gt_root, video), os.path.join(pred_root, video)
    if not os.path.isdir(pdir):
        raise vos.DataError(f"video {video}: no prediction folder {pdir}")
    if _gt_video_layout(gdir) == "davis":
        pngs = vos.int_stem_files(gdir, (".png",), "annotation")
        names = [os.path.splitext(pngs[n])[0] for n in sorted(pngs)]
        gts = [
            np.where((lab := vos.read_label_png(os.path.join(gdir, f"{n}.png"))) == vos.DAVIS_VOID, 0, lab)
            for n in names
        ]
        ids = np.unique(np.stack(gts))
        ids = ids[ids != 0]
        preds = []
        for n, g in zip(names, gts, strict=True):
            p = _read_pred(os.path.join(pdir, f"{n}.png"), video, "davis", g.shape)
            extra = np.setdiff1d(np.unique(p), np.concatenate([[0], ids]))
            if extra.size:
                raise vos.DataError(
                    f"video {video}: prediction {n}.png has object ids {extra.tolist()} that the ground truth "
                    f"(ids {ids.tolist()}) does not have"
                )
            preds.append(p[None] == ids[:, None, None])
        gt_masks = [g[None] == ids[:, None, None] for g in gts]
        annotated = np.ones((len(names), len(ids)), bool)
        res, _ = _score_video(video, ids, names, preds, gt_masks, annotated, cfg)
        return res, len(names)
    objs = sorted(d for d in os.listdir(gdir) if os.path.isdir(os.path.join(gdir, d)))
    res = []
    n_frames = 0
    for d in objs:
        if not d.isdigit():
            raise vos.DataError(f"video {video}: object folder {d} is not named by an integer id")
        pngs = vos.int_stem_files(os.path.join(gdir, d), (".png",), "annotation")
        names = [os.path.splitext(pngs[n])[0] for n in sorted(pngs)]
        gts, preds = [], []
        for n in names:
            g = vos.read_label_png(os.path.join(gdir, d, f"{n}.png")) > 0
            gts.append(g[None])
            preds.append(_read_pred(os.path.join(pdir, d, f"{n}.png"), video, "sav", g.shape)[None] > 0)
        r, _ = _score_video(video, [int(d)], names, preds, gts, np.ones((len(names), 1), bool), cfg)
        res.extend(r)
        n_frames = max(n_frames, len(names))
    return res, n_frames


def score_folder(
    gt_root: str, pred_root: str, cfg: VOSEvalConfig, videos: Sequence[str] | None = None, progress: bool = True
) -> EvalResult:
    """Scores a folder of predicted PNGs against ground truth, without a model (``sav_evaluator.py``).

    Args:
      gt_root: ground-truth annotations, one folder per video (DAVIS palette PNGs or SA-V object folders).
      pred_root: predictions, same layout and names.
      cfg: convention, skipping, tolerance, output folder (no PNGs are written).
      videos: the videos to score (default: every folder of ``gt_root``).
      progress: show a progress bar.

    Returns:
      the ``EvalResult``; videos with missing, mis-sized or mislabelled predictions are skipped with the reason.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    if videos is None:
        videos = sorted(v for v in os.listdir(gt_root) if os.path.isdir(os.path.join(gt_root, v)))
    scores, skipped, n = [], [], 0
    for v in tqdm(videos, disable=not progress, desc="videos", unit="video"):
        try:
            res, k = score_video_folder(gt_root, pred_root, v, cfg)
        except vos.DataError as e:
            log.warning("skipping video %s: %s", v, e)
            skipped.append((v, str(e)))
            continue
        scores.extend(res)
        n += k
    result = EvalResult(scores, metrics.summarize(scores), skipped, n, time.perf_counter() - start)
    return _finish(result, cfg, {"convention": cfg.convention})
