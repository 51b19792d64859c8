"""Video object segmentation metrics: region similarity J, boundary accuracy F, and their averaging.

Written from the definitions of the two toolkits that SAM 2's numbers come from, and equal to them:

- the DAVIS 2017 evaluation (``davis2017-evaluation``: ``metrics.py`` ``db_eval_iou``, ``db_eval_boundary``,
  ``f_measure``, ``_seg2bmap``; ``utils.py`` ``db_statistics``; ``evaluation.py``), and
- the SA-V evaluator of the official sam2 repository (``sav_dataset/sav_evaluator.py`` and
  ``sav_dataset/utils/sav_benchmark.py``, itself adapted from ``vos-benchmark``), which the SAM 2 paper uses for
  SA-V val/test and which also reads the DAVIS folder layout.

Conventions, each as the toolkits have it:

J (``region_similarity``)
  Intersection over union of the predicted and ground-truth masks. Both empty (union 0): J = 1. One empty: J = 0.
  Pixels of an optional void mask are left out of both counts (DAVIS' ``void_pixels``). In DAVIS 2017
  semi-supervised evaluation the void mask is in effect always empty: the toolkit maps label 255 to background when
  it reads the annotations, and derives its void mask from the already boolean masks.

F (``boundary_f_measure``)
  - Boundaries: ``seg2bmap`` (D. Martin, 2003) marks pixel ``(y, x)`` when the mask there differs from its right,
    lower or lower-right neighbour (outside the image counts as background for those three). In the last row only
    the right neighbour is compared, in the last column only the lower one, and the bottom-right pixel is never a
    boundary. So the boundary sits half a pixel towards the origin, a mask's edge along the image border is not a
    boundary, and a mask covering the whole image has no boundary at all.
  - Tolerance: ``r = ceil(bound_th * sqrt(H**2 + W**2))`` pixels with ``bound_th = 0.008`` (``bound_th >= 1`` is
    taken as pixels). The boundaries are dilated with the disk ``{(dy, dx): dy**2 + dx**2 <= r**2}``
    (``skimage.morphology.disk(r)`` fed to ``cv2.dilate``, whose border adds nothing). We compute the same set as
    the pixels at Euclidean distance <= r from a boundary pixel (``scipy.ndimage.distance_transform_edt``) on the
    crop of the image that holds both boundaries plus ``r``: pixels farther away cannot change a count.
  - Precision = predicted boundary pixels inside the dilated ground-truth boundary / predicted boundary pixels;
    recall the other way round. No predicted boundary and some ground-truth boundary: P = 1, R = 0. Some predicted
    and no ground-truth boundary: P = 0, R = 1. Neither: P = R = 1. F = 2PR / (P + R), and F = 0 when P + R = 0.
    So an empty prediction of a present object scores F = 0, and an object absent from both scores F = 1.

Per object and frame set (``VideoScorer``), two conventions:
  - ``"davis2017"`` (``evaluation.py`` semi-supervised): the objects are ids ``1 .. max id`` of the first
    ground-truth frame; every evaluated frame counts for every object, also frames where the object is absent from
    both masks (J = F = 1 there). Mean = ``nanmean`` over frames; recall = fraction of frames with a value > 0.5;
    decay = mean of the first minus mean of the last of 4 near-equal bins (``db_statistics``; bin edges
    ``round(linspace(1, n, 5) + 1e-10) - 1``; the toolkit casts the edges to uint8, which wraps for videos of more
    than 256 frames: we keep the edges in int64).
  - ``"sav"`` (``sav_benchmark.Evaluator``): an object counts from the first evaluated frame on which it is present
    in the ground truth *or* in the prediction; frames before that are not scored. Only objects that are present in
    the ground truth on some evaluated frame are reported (the official evaluator fails with an assertion on an SA-V
    object folder without any, we report and skip it). Mean = mean over the scored frames.
  Both toolkits skip the first and the last annotated frame in semi-supervised evaluation
  (``skip_first_and_last``); with sparse annotations (SA-V at 6 fps, YouTube-VOS) these are the first and last
  *annotated* frames, and only annotated frames are scored.

Dataset (``summarize``): J is the mean of the per-object means over all objects of all videos, likewise F, and
J&F = (J + F) / 2; both toolkits average objects, not videos. The SA-V evaluator reports on the 0-100 scale; we keep
[0, 1] internally and scale in reports. Per-video values (mean over the video's objects) are for reports only.
"""

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

BOUND_TH = 0.008
CONVENTIONS = ("sav", "davis2017")


def region_similarity(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> np.ndarray | float:
    """J: intersection over union, 1 where both masks are empty.

    Args:
      pred: ``(..., H, W)`` predicted mask (nonzero = object).
      gt: ground-truth mask of the same shape.
      void: optional mask of pixels left out of both counts, same shape.

    Returns:
      a float for 2-D masks, else an array of the leading shape.
    """
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    keep = np.ones_like(gt) if void is None else ~np.asarray(void, bool)
    inter = np.sum(pred & gt & keep, axis=(-2, -1))
    union = np.sum((pred | gt) & keep, axis=(-2, -1))
    j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return float(j) if j.ndim == 0 else j


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """The one-pixel boundary map of a mask, offset half a pixel towards the origin (see the module docstring).

    Args:
      seg: ``(H, W)`` mask, nonzero = object.

    Returns:
      ``(H, W)`` bool boundary map.
    """
    seg = np.asarray(seg).astype(bool)
    if seg.ndim != 2:
        raise ValueError(f"seg2bmap takes a 2-D mask, got shape {seg.shape}")
    right = np.zeros_like(seg)
    down = np.zeros_like(seg)
    diag = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    down[:-1, :] = seg[1:, :]
    diag[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ right) | (seg ^ down) | (seg ^ diag)
    b[-1, :] = seg[-1, :] ^ right[-1, :]
    b[:, -1] = seg[:, -1] ^ down[:, -1]
    b[-1, -1] = False
    return b


def boundary_radius(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """Tolerance in pixels: ``ceil(bound_th * diagonal)`` for ``bound_th < 1``, else ``bound_th`` itself.

    Args:
      height, width: image size.
      bound_th: fraction of the diagonal, or pixels when >= 1.

    Returns:
      the disk radius.
    """
    if bound_th >= 1:
        return int(bound_th)
    # np.linalg.norm as in the toolkits (math.hypot may differ in the last bit).
    return int(np.ceil(bound_th * np.linalg.norm((height, width))))


def disk(radius: int) -> np.ndarray:
    """``(2r+1, 2r+1)`` bool disk ``dy**2 + dx**2 <= r**2`` (``skimage.morphology.disk`` with its defaults)."""
    r = np.arange(-radius, radius + 1)
    return r[:, None] ** 2 + r[None, :] ** 2 <= radius**2


def dilate(bmap: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by ``disk(radius)``; outside the image adds nothing (as ``cv2.dilate``'s default border).

    Args:
      bmap: ``(H, W)`` bool.
      radius: disk radius in pixels.

    Returns:
      ``(H, W)`` bool.
    """
    if not bmap.any():
        return np.zeros_like(bmap, dtype=bool)
    # Distance to the nearest set pixel; sqrt(k) <= r exactly when k <= r**2 for integers k, r.
    return ndimage.distance_transform_edt(~bmap) <= radius


def boundary_precision_recall(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = BOUND_TH
) -> tuple[float, float]:
    """Boundary precision and recall of one frame (conventions in the module docstring).

    Args:
      pred: ``(H, W)`` predicted mask.
      gt: ``(H, W)`` ground-truth mask.
      void: optional ``(H, W)`` mask of pixels removed from both masks before their boundaries are taken.
      bound_th: tolerance as a fraction of the diagonal, or pixels when >= 1.

    Returns:
      (precision, recall).
    """
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"need two (H, W) masks of one shape, got {pred.shape} and {gt.shape}")
    if void is not None:
        pred, gt = pred & ~void, gt & ~void
    fg_b, gt_b = seg2bmap(pred), seg2bmap(gt)
    n_fg, n_gt = int(fg_b.sum()), int(gt_b.sum())
    if n_fg == 0 and n_gt == 0:
        return 1.0, 1.0
    if n_fg == 0:
        return 1.0, 0.0
    if n_gt == 0:
        return 0.0, 1.0
    radius = boundary_radius(*pred.shape, bound_th)
    # Crop to both boundaries plus the radius: a count only looks at boundary pixels and at their r-neighbourhoods.
    ys, xs = np.nonzero(fg_b | gt_b)
    y0, y1 = max(0, ys.min() - radius), min(pred.shape[0], ys.max() + radius + 1)
    x0, x1 = max(0, xs.min() - radius), min(pred.shape[1], xs.max() + radius + 1)
    fg_b, gt_b = fg_b[y0:y1, x0:x1], gt_b[y0:y1, x0:x1]
    precision = np.sum(fg_b & dilate(gt_b, radius)) / n_fg
    recall = np.sum(gt_b & dilate(fg_b, radius)) / n_gt
    return float(precision), float(recall)


def boundary_f_measure(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = BOUND_TH
) -> np.ndarray | float:
    """F: the boundary F-measure of the DAVIS 2017 toolkit.

    Args:
      pred: ``(H, W)`` or ``(N, H, W)`` predicted masks.
      gt: ground-truth masks of the same shape.
      void: optional void pixels of the same shape.
      bound_th: tolerance as a fraction of the diagonal, or pixels when >= 1.

    Returns:
      a float for one frame, else an ``(N,)`` array.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    if pred.ndim == 3:
        voids = [None] * len(pred) if void is None else void
        return np.array([boundary_f_measure(p, g, v, bound_th) for p, g, v in zip(pred, gt, voids, strict=True)])
    p, r = boundary_precision_recall(pred, gt, void, bound_th)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def db_statistics(per_frame: Sequence[float]) -> tuple[float, float, float]:
    """DAVIS mean, recall (fraction > 0.5) and decay of one object's per-frame values.

    Args:
      per_frame: the values of the evaluated frames (NaN ignored by mean and recall).

    Returns:
      (mean, recall, decay); NaN for an empty sequence.
    """
    v = np.asarray(per_frame, np.float64)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(np.nanmean(v))
    recall = float(np.nanmean(v > 0.5))
    ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.int64)
    bins = [v[ids[i] : ids[i + 1] + 1] for i in range(4)]
    with np.errstate(invalid="ignore"):
        first = np.nanmean(bins[0]) if bins[0].size else math.nan
        last = np.nanmean(bins[3]) if bins[3].size else math.nan
    return mean, recall, float(first - last)


@dataclasses.dataclass
class ObjectScore:
    """Per-frame J and F of one object of one video, over its scored frames.

    Attributes:
      video: video name.
      object_id: the object's id in the annotation.
      frames: names (or indices) of the scored frames.
      j, f: per-frame values, ``(len(frames),)`` float64 in [0, 1].
    """

    video: str
    object_id: int
    frames: list
    j: np.ndarray
    f: np.ndarray

    @property
    def j_mean(self) -> float:
        return db_statistics(self.j)[0]

    @property
    def f_mean(self) -> float:
        return db_statistics(self.f)[0]

    @property
    def jf_mean(self) -> float:
        return (self.j_mean + self.f_mean) / 2

    def stats(self) -> dict[str, float]:
        """J and F mean, recall and decay (``db_statistics``) and J&F mean."""
        jm, jr, jd = db_statistics(self.j)
        fm, fr, fd = db_statistics(self.f)
        return {
            "J&F": (jm + fm) / 2,
            "J": jm,
            "F": fm,
            "J_recall": jr,
            "F_recall": fr,
            "J_decay": jd,
            "F_decay": fd,
        }


class VideoScorer:
    """Accumulates per-object J and F over the frames of one video, under one convention.

    Feed the frames to score in order (already without the first and last annotated frame where the protocol skips
    them, see ``frames_to_score``), then call ``results``.

    Args:
      video: video name.
      object_ids: the ids of the objects to score, one per mask row.
      convention: ``"sav"`` or ``"davis2017"`` (module docstring).
      bound_th: boundary tolerance.
    """

    def __init__(self, video: str, object_ids: Sequence[int], convention: str = "sav", bound_th: float = BOUND_TH):
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown convention {convention!r}, expected one of {CONVENTIONS}")
        self.video = video
        self.object_ids = [int(o) for o in object_ids]
        self.convention = convention
        self.bound_th = bound_th
        n = len(self.object_ids)
        self._started = np.zeros(n, bool)  # sav: scored from the first frame present in gt or prediction
        self._in_gt = np.zeros(n, bool)
        self._frames: list[list] = [[] for _ in range(n)]
        self._j: list[list[float]] = [[] for _ in range(n)]
        self._f: list[list[float]] = [[] for _ in range(n)]

    def add_frame(self, frame, pred: np.ndarray, gt: np.ndarray, annotated: np.ndarray | None = None) -> None:
        """Scores one frame.

        Args:
          frame: the frame's name or index (kept in the results).
          pred: ``(O, H, W)`` predicted masks, row k for ``object_ids[k]``.
          gt: ``(O, H, W)`` ground-truth masks.
          annotated: optional ``(O,)`` bool, False for objects with no annotation on this frame (SA-V objects
            whose folders list different frames): those are not scored here.
        """
        pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
        if pred.shape != gt.shape or pred.shape[0] != len(self.object_ids):
            raise ValueError(
                f"{self.video} frame {frame}: prediction {pred.shape} and ground truth {gt.shape} must both be "
                f"({len(self.object_ids)}, H, W)"
            )
        for k in range(len(self.object_ids)):
            if annotated is not None and not annotated[k]:
                continue
            gt_present, pred_present = bool(gt[k].any()), bool(pred[k].any())
            self._in_gt[k] |= gt_present
            if self.convention == "sav":
                self._started[k] |= gt_present or pred_present
                if not self._started[k]:
                    continue
            self._frames[k].append(frame)
            self._j[k].append(region_similarity(pred[k], gt[k]))
            self._f[k].append(boundary_f_measure(pred[k], gt[k], bound_th=self.bound_th))

    def results(self) -> list[ObjectScore]:
        """One ``ObjectScore`` per reported object (under ``"sav"``: those present in the ground truth)."""
        out = []
        for k, oid in enumerate(self.object_ids):
            if self.convention == "sav" and not self._in_gt[k]:
                continue
            out.append(ObjectScore(self.video, oid, list(self._frames[k]), np.array(self._j[k]), np.array(self._f[k])))
        return out

    def unreported(self) -> list[int]:
        """Ids of objects left out of ``results`` (``"sav"``: never present in the scored ground truth)."""
        if self.convention != "sav":
            return []
        return [oid for k, oid in enumerate(self.object_ids) if not self._in_gt[k]]


def frames_to_score(frames: Sequence, skip_first_and_last: bool = True) -> list:
    """The annotated frames a semi-supervised protocol scores: all but the first and last when skipping.

    Args:
      frames: the annotated frames in temporal order.
      skip_first_and_last: both toolkits' semi-supervised setting.

    Returns:
      the frames to score.
    """
    frames = list(frames)
    return frames[1:-1] if skip_first_and_last else frames


def summarize(scores: Sequence[ObjectScore]) -> dict[str, float]:
    """Dataset J, F and J&F: means over all objects of all videos (both toolkits' averaging), on [0, 1].

    Args:
      scores: the per-object results.

    Returns:
      ``{"J&F", "J", "F", "J_recall", "F_recall", "J_decay", "F_decay", "num_objects", "num_videos"}``;
      NaN values when there is no object.
    """
    stats = [s.stats() for s in scores]
    out = {}
    for key in ("J", "F", "J_recall", "F_recall", "J_decay", "F_decay"):
        out[key] = float(np.mean([s[key] for s in stats])) if stats else math.nan
    out["J&F"] = (out["J"] + out["F"]) / 2
    out["num_objects"] = len(scores)
    out["num_videos"] = len({s.video for s in scores})
    return out


def per_video(scores: Sequence[ObjectScore]) -> dict[str, dict[str, float]]:
    """Per-video J, F and J&F: means over each video's objects (for reports; datasets average objects).

    Args:
      scores: the per-object results.

    Returns:
      ``{video: {"J&F", "J", "F", "num_objects"}}`` in first-seen order.
    """
    videos: dict[str, list[ObjectScore]] = {}
    for s in scores:
        videos.setdefault(s.video, []).append(s)
    out = {}
    for v, ss in videos.items():
        j = float(np.mean([s.j_mean for s in ss]))
        f = float(np.mean([s.f_mean for s in ss]))
        out[v] = {"J&F": (j + f) / 2, "J": j, "F": f, "num_objects": len(ss)}
    return out
