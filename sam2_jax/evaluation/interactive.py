"""Interactive video segmentation: the offline and online protocols of the SAM 2 paper (§6.1.1, App. F.1.2).

Source: arXiv 2408.00714, §6.1.1 and the appendix "Interactive offline and online evaluation details" (F.1.2 in the
numbering used here; E.1.2 in the ar5iv rendering that was read). What the paper says, paraphrased, and what we do:

- Objects: with several objects in a video, each is inferred on its own (we reset the predictor's state between
  objects). N_click = 3 clicks on every interacted frame (``clicks_per_frame``).
- Clicks (paper): on the first pass, one click at the centre of the ground-truth mask on the first frame, then two
  more at the centre of the error region between the ground truth and the prediction on that frame; on every later
  interacted frame, three clicks at the centre of the error region on that frame. We do exactly that, each click
  computed from the model's mask after the clicks so far (``prompts.next_click``). The paper's footnote defining
  "centre" was not in the text we could read; App. F.1.3 says its click simulation follows SAM and RITM, whose
  centre is the pixel farthest from the region's boundary, which is what ``next_click`` takes.
- Offline (paper): several passes over the whole video. Pass 1 clicks on the first frame and segments the whole
  video; each next pass prompts the frame whose IoU with the ground truth is lowest, then segments the whole
  video again from all prompts so far, up to N_frame passes, one new prompted frame per pass. We: the candidates
  are the annotated frames not yet prompted ("one new prompted frame"; the paper does not say whether a prompted
  frame may be chosen again), the earliest on a tie; every pass tracks forward from the first prompted frame with
  all prompts (our predictor keeps each correction as a conditioning frame). The result with N interacted frames
  is the scores after pass N, N = 1 .. ``max_frames``.
- Online (paper): one pass. Click on the first frame and propagate, pausing at the first frame whose IoU with the
  ground truth is below 0.75 (``threshold``, strict); clicks there, then propagation resumes forward until the
  next such frame, while fewer than N_frame frames have been prompted. New prompts affect only the frames after
  the paused one. We: one run per N (a run that paused fewer times than it was allowed also stands for every
  larger N, being identical); frames before a pause keep their masks; only annotated frames can pause.
- Quality of a frame (``quality``): the paper uses IoU (``"j"``, the default) for both the offline choice and the
  online pause; ``"jf"``, (J + F) / 2, is our extension, not the paper's.
- Reported (paper): the J&F averaged over N_frame = 1 .. 8 interacted frames (``InteractiveResult.average_jf``),
  and J&F against the estimated annotation time. We: per object, J and F over all its annotated frames (the paper
  does not say to skip the first and last, so none is skipped), under the chosen metric convention; the dataset
  value for each N is the mean over objects (the paper does not say how objects and videos are weighted).
- Annotation time (paper, with T_loc and T_click from EVA-VOS, Delatolas et al. 2024): per interacted frame
  T_loc = 1 s to locate the object and T_click = 1.5 s per click; examining the results takes T_exam = 30 s for a
  300-frame video, in proportion to its length L (10 fps), once per round offline (which includes finding the worst
  frame) and once in total online (including the pauses):
  offline T = (T_exam L/300 + T_loc + N_click T_click) N_frame; online T = T_exam L/300 + (T_loc + N_click
  T_click) N_frame. The paper calls N_frame "the number of frames annotated"; we count the frames actually
  prompted (``interacted``): offline that is N unless the video runs out of frames; online it is below N when the
  model never fell below the threshold again (ambiguity: reading N_frame as the nominal N would charge clicks that
  were never made). As the paper notes, the estimate leaves out the model's own tracking time.
- Ambiguity: the paper clicks "on the first frame"; on its dense datasets every object is in frame 0. We start on
  the object's first annotated frame where it is present (frame 0 there); earlier annotated frames are scored
  against an empty prediction.
"""

import csv
import dataclasses
import logging
import os
import time
from collections.abc import Iterable

import numpy as np

from sam2_jax.datasets import vos
from sam2_jax.evaluation import metrics
from sam2_jax.evaluation.prompts import next_click

log = logging.getLogger(__name__)


@dataclasses.dataclass
class InteractiveConfig:
    """Settings of the interactive protocols (module docstring).

    Attributes:
      mode: ``offline`` or ``online``.
      max_frames: most interacted frames (the paper's N_frame = 1 .. 8).
      clicks_per_frame: clicks on each interacted frame.
      threshold: online pause when a frame's quality is strictly below this (the paper's IoU < 0.75).
      quality: ``j`` or ``jf``.
      convention: metric convention.
      score_thresh: mask logit threshold.
      t_loc, t_click, t_exam: the paper's annotation-time model T_loc, T_click, T_exam, seconds (``t_exam`` for a
        300-frame video, in proportion to its length).
      output_dir: where CSVs and plots go (None: nothing written).
    """

    mode: str = "offline"
    max_frames: int = 8
    clicks_per_frame: int = 3
    threshold: float = 0.75
    quality: str = "j"
    convention: str = "sav"
    score_thresh: float = 0.0
    t_loc: float = 1.0
    t_click: float = 1.5
    t_exam: float = 30.0
    output_dir: str | None = None


@dataclasses.dataclass
class InteractiveObjectResult:
    """One object's scores for N = 1 .. max_frames: ``j``, ``f`` ``(max_frames,)`` means over its annotated
    frames, ``interacted`` frames actually used and ``seconds`` of modelled annotation time per N."""

    video: str
    object_id: int
    j: np.ndarray
    f: np.ndarray
    interacted: np.ndarray
    seconds: np.ndarray


@dataclasses.dataclass
class InteractiveResult:
    """Per-object results, the dataset curve (means over objects per N), skipped videos, wall time."""

    objects: list[InteractiveObjectResult]
    jf: np.ndarray
    seconds: np.ndarray
    skipped: list[tuple[str, str]]
    wall_seconds: float = 0.0

    @property
    def average_jf(self) -> float:
        """J&F averaged over N = 1 .. max_frames (the paper's reported number)."""
        return float(np.mean(self.jf))


def _quality(pred: np.ndarray, gt: np.ndarray, kind: str) -> float:
    j = metrics.region_similarity(pred, gt)
    if kind == "j":
        return j
    if kind == "jf":
        return (j + metrics.boundary_f_measure(pred, gt)) / 2
    raise ValueError(f"unknown quality {kind!r}, expected j or jf")


def _clicks(predictor, state, t: int, obj_id: int, gt: np.ndarray, pred, n: int, thresh: float) -> np.ndarray:
    """``n`` clicks on frame ``t`` for one object, each from the error left by the previous (module docstring)."""
    for i in range(n):
        point, label = next_click(gt, pred)
        _, ids, logits = predictor.add_new_points_or_box(
            state, t, obj_id, points=point[None], labels=np.array([label], np.int32), clear_old_points=i == 0
        )
        pred = np.asarray(logits[list(ids).index(obj_id), 0]) > thresh
    return pred


def _scores(video, k: int, preds: dict[int, np.ndarray], cfg: InteractiveConfig) -> tuple[float, float]:
    scorer = metrics.VideoScorer(video.video_id, [int(video.object_ids[k])], cfg.convention)
    empty = np.zeros((video.height, video.width), bool)
    for a, t in enumerate(video.mask_frames):
        if video.annotated[a, k]:
            scorer.add_frame(int(t), preds.get(int(t), empty)[None], video.masks(a)[k][None])
    res = scorer.results()
    if not res:
        return float("nan"), float("nan")
    return res[0].j_mean, res[0].f_mean


def _propagate(predictor, state, start: int, thresh: float, into: dict[int, np.ndarray]):
    """Tracks forward from ``start``, yielding ``(t, mask)`` and storing each mask in ``into``."""
    for t, _ids, logits in predictor.propagate_in_video(state, start_frame_idx=start):
        m = np.asarray(logits[0, 0]) > thresh
        into[int(t)] = m
        yield int(t), m


def offline_object(predictor, state, video, k: int, cfg: InteractiveConfig) -> InteractiveObjectResult:
    """The offline protocol for object ``k`` of ``video`` (state already holding the video, reset)."""
    oid = int(video.object_ids[k])
    rows = {int(t): a for a, t in enumerate(video.mask_frames)}
    a0 = int(video.first_annotated()[k])
    t0 = int(video.mask_frames[a0])
    _clicks(predictor, state, t0, oid, video.masks(a0)[k], None, cfg.clicks_per_frame, cfg.score_thresh)
    interacted = [t0]
    js, fs, used = [], [], []
    for n in range(1, cfg.max_frames + 1):
        preds: dict[int, np.ndarray] = {}
        for _ in _propagate(predictor, state, t0, cfg.score_thresh, preds):
            pass
        j, f = _scores(video, k, preds, cfg)
        js.append(j)
        fs.append(f)
        used.append(len(interacted))
        if n == cfg.max_frames:
            break
        worst, worst_q = None, None
        for t, a in rows.items():
            if t in interacted or not video.annotated[a, k] or t < t0:
                continue
            q = _quality(preds.get(t, np.zeros((video.height, video.width), bool)), video.masks(a)[k], cfg.quality)
            if worst_q is None or q < worst_q:
                worst, worst_q = t, q
        if worst is None:
            continue
        interacted.append(worst)
        _clicks(
            predictor,
            state,
            worst,
            oid,
            video.masks(rows[worst])[k],
            preds.get(worst),
            cfg.clicks_per_frame,
            cfg.score_thresh,
        )
    used = np.array(used)
    per_frame = cfg.t_loc + cfg.clicks_per_frame * cfg.t_click
    review = cfg.t_exam * video.num_frames / 300
    seconds = used * (review + per_frame)
    return InteractiveObjectResult(video.video_id, oid, np.array(js), np.array(fs), used, seconds)


def online_object(predictor, state, video, k: int, cfg: InteractiveConfig) -> InteractiveObjectResult:
    """The online protocol for object ``k`` of ``video``, one run per N (state reset by the caller first)."""
    oid = int(video.object_ids[k])
    rows = {int(t): a for a, t in enumerate(video.mask_frames)}
    a0 = int(video.first_annotated()[k])
    t0 = int(video.mask_frames[a0])
    js, fs, used = [], [], []
    for n in range(1, cfg.max_frames + 1):
        if used and used[-1] < n - 1:  # the last run paused fewer times than it could: larger N change nothing
            js.append(js[-1])
            fs.append(fs[-1])
            used.append(used[-1])
            continue
        predictor.reset_state(state)
        preds: dict[int, np.ndarray] = {}
        preds[t0] = _clicks(predictor, state, t0, oid, video.masks(a0)[k], None, cfg.clicks_per_frame, cfg.score_thresh)
        count, start = 1, t0
        while True:
            paused = None
            for t, m in _propagate(predictor, state, start, cfg.score_thresh, preds):
                a = rows.get(t)
                if t == start or a is None or not video.annotated[a, k] or count >= n:
                    continue
                if _quality(m, video.masks(a)[k], cfg.quality) < cfg.threshold:
                    paused = t
                    break
            if paused is None:
                break
            count += 1
            preds[paused] = _clicks(
                predictor,
                state,
                paused,
                oid,
                video.masks(rows[paused])[k],
                preds[paused],
                cfg.clicks_per_frame,
                cfg.score_thresh,
            )
            start = paused
        j, f = _scores(video, k, preds, cfg)
        js.append(j)
        fs.append(f)
        used.append(count)
    used = np.array(used)
    seconds = cfg.t_exam * video.num_frames / 300 + used * (cfg.t_loc + cfg.clicks_per_frame * cfg.t_click)
    return InteractiveObjectResult(video.video_id, oid, np.array(js), np.array(fs), used, seconds)


def evaluate_video(predictor, video: vos.VOSVideo, cfg: InteractiveConfig):
    """The protocol for every object of one video (one step of ``evaluate_interactive``).

    Args:
      predictor: a ``SAM2VideoPredictor``.
      video: the video and its ground truth.
      cfg: the settings.

    Returns:
      ``(objects, skipped)``: the ``InteractiveObjectResult``s of the objects with scores, and ``(video, reason)``
      when the video is bad data (then no objects) or None.
    """
    run_object = offline_object if cfg.mode == "offline" else online_object
    try:
        state = predictor.init_state(video.frames)
        res = []
        for k in np.flatnonzero(video.first_annotated() >= 0):
            predictor.reset_state(state)
            res.append(run_object(predictor, state, video, int(k), cfg))
    except (vos.DataError, ValueError) as e:
        log.warning("skipping video %s: %s", video.video_id, e)
        return [], (video.video_id, str(e))
    return [r for r in res if not np.isnan(r.j).any()], None


def evaluate_interactive(
    predictor, videos: Iterable[vos.VOSVideo], cfg: InteractiveConfig, progress: bool = True
) -> InteractiveResult:
    """The offline or online interactive protocol over a dataset (module docstring).

    Args:
      predictor: a ``SAM2VideoPredictor``, or a list of them, one per device group (``parallel.group_predictors``):
        each idle one takes the next video; the result does not depend on how many there are.
      videos: ``VOSVideo``s (a reader's ``errors`` join the skipped ones).
      cfg: the settings.
      progress: progress bar over videos.

    Returns:
      the ``InteractiveResult``; with ``cfg.output_dir`` also ``interactive_<mode>_per_object.csv``,
      ``interactive_<mode>_summary.csv`` and ``interactive_<mode>.png`` (J&F against N and against time).
    """
    from sam2_jax.evaluation import parallel

    if cfg.mode not in ("offline", "online"):
        raise ValueError(f"unknown interactive mode {cfg.mode!r}, expected offline or online")
    start = time.perf_counter()
    objects, skipped = [], []
    # Assembled in the dataset's order, whichever group ran each video (parallel module docstring).
    for res, bad in parallel.map_videos(lambda p, v: evaluate_video(p, v, cfg), videos, predictor, progress):
        objects += res
        skipped += [bad] if bad else []
    skipped += getattr(videos, "errors", [])
    if objects:
        jf = np.mean([(o.j + o.f) / 2 for o in objects], axis=0)
        secs = np.mean([o.seconds for o in objects], axis=0)
    else:
        jf = secs = np.full(cfg.max_frames, np.nan)
    result = InteractiveResult(objects, jf, secs, skipped, time.perf_counter() - start)
    if cfg.output_dir:
        _write(cfg, result)
    return result


def _write(cfg: InteractiveConfig, result: InteractiveResult) -> None:
    os.makedirs(cfg.output_dir, exist_ok=True)
    base = os.path.join(cfg.output_dir, f"interactive_{cfg.mode}")
    with open(base + "_per_object.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "object", "N", "J&F", "J", "F", "interacted", "annotation_seconds"])
        for o in result.objects:
            for n in range(len(o.j)):
                jf = (o.j[n] + o.f[n]) / 2
                w.writerow(
                    [
                        o.video,
                        o.object_id,
                        n + 1,
                        repr(float(jf)),
                        repr(float(o.j[n])),
                        repr(float(o.f[n])),
                        int(o.interacted[n]),
                        repr(float(o.seconds[n])),
                    ]
                )
    with open(base + "_summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["N", "J&F", "annotation_seconds"])
        for n in range(len(result.jf)):
            w.writerow([n + 1, repr(float(result.jf[n])), repr(float(result.seconds[n]))])
        w.writerow(["average", repr(result.average_jf), ""])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    n = np.arange(1, len(result.jf) + 1)
    a1.plot(n, 100 * result.jf, marker="o")
    a1.set_xlabel("interacted frames")
    a1.set_ylabel("J&F (%)")
    a2.plot(result.seconds, 100 * result.jf, marker="o")
    a2.set_xlabel("estimated annotation time (s)")
    a2.set_ylabel("J&F (%)")
    fig.suptitle(f"interactive {cfg.mode}: average J&F over N=1..{len(result.jf)} = {100 * result.average_jf:.2f}")
    fig.tight_layout()
    fig.savefig(base + ".png", dpi=100)
    plt.close(fig)


def format_interactive_summary(result: InteractiveResult, mode: str) -> str:
    """The printed summary (0-100 scale, two decimals)."""
    lines = [f"interactive {mode}: J&F per number of interacted frames (mean over {len(result.objects)} objects)"]
    for n in range(len(result.jf)):
        lines.append(f"  N={n + 1}: J&F {100 * result.jf[n]:.2f}   time {result.seconds[n]:.1f} s")
    lines.append(f"average over N=1..{len(result.jf)}: {100 * result.average_jf:.2f}")
    lines.append(f"{len(result.skipped)} videos skipped")
    lines += [f"  skipped {v}: {why}" for v, why in result.skipped]
    return "\n".join(lines)
