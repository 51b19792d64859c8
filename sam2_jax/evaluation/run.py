"""The library behind ``eval.py``: build the model and the dataset a run names, evaluate, report.

Tasks:
  ``vos``: semi-supervised VOS (``vos_eval.evaluate_vos``) on a dataset read from a folder in place, through its
    tfds builder (``--reader tfds``), or from the synthetic source.
  ``score``: score a folder of predicted PNGs against ground truth without a model (``vos_eval.score_folder``).
  ``image``: 1- and 5-click mIoU on SA-1B-format images (``image_eval.evaluate_images``).
  ``interactive``: the offline or online interactive protocol (``interactive.evaluate_interactive``).

Videos are spread over the local devices (``parallel``, ``--devices_per_video``) in the ``vos`` and ``interactive``
tasks.
"""

import dataclasses
import json
import logging
import os
import time

from sam2_jax.datasets import vos
from sam2_jax.evaluation import metrics, vos_eval
from sam2_jax.tracker.policies import POLICIES

log = logging.getLogger(__name__)

FORMATS = ("davis", "sav", "sav_train", "synthetic")


@dataclasses.dataclass
class RunConfig:
    """One ``eval.py`` run (each field is a flag of the same name).

    Attributes:
      task: ``vos``, ``score``, ``image`` or ``interactive``.
      dataset_format: ``davis`` (DAVIS / YouTube-VOS / MOSE), ``sav`` (SA-V val/test), ``sav_train``, ``synthetic``.
      data_root: the dataset folder (``vos``) or the SA-1B folder (``image``).
      split: the split (video list) to read.
      reader: ``folder`` (in place) or ``tfds`` (build array_record files in ``tfds_dir``, read them back).
      tfds_dir: where the tfds builders write.
      videos: explicit video names (comma-separated on the command line).
      max_videos: evaluate at most this many videos (0: all).
      num_synthetic: number of synthetic videos; ``synthetic_frames`` frames each, annotated every
        ``synthetic_stride`` frames, ``synthetic_size`` pixels square, ``synthetic_objects`` objects.
      model: config name or ``sam2_jax/configs/*.py`` path; ``image_size`` overrides its input size (0: keep).
      checkpoint: official ``.pt`` or orbax directory; empty for random weights (``seed``).
      dtype: compute dtype.
      prompt, convention, skip_first_and_last, score_thresh, output_layout: ``VOSEvalConfig``.
      gt_root, pred_root: the ``score`` task's folders.
      num_images: images of the ``image`` task (0: all).
      interactive_mode, max_frames, clicks_per_frame, interactive_threshold, interactive_quality: the
        ``interactive`` task's ``InteractiveConfig`` (mode, N_frame, clicks per frame, online pause threshold,
        quality ``j`` or ``jf``).
      devices_per_video: devices each video runs on; the local devices are split into groups of this many and
        each idle group takes the next video (``parallel``). 0: 1 when there are at least as many videos as
        devices, else devices // videos; the device count: one video at a time, its objects sharded over all.
      output_dir: results folder.
      progress: show progress bars.
      compilation_cache: persistent XLA compilation cache folder; ``default``: ``$SAM2_JAX_CACHE/xla`` (as every
        entry point, ``compile_cache.default_cache_dir``); empty: none. A second run skips the compiles.
      videos_per_step: ``vos`` task: videos tracked together in one compiled step (``vos_eval.track_videos``:
        fills an accelerator with a small model; a video ending frees its slot for the next); 1: one at a time.
      tracker: the video tracking policy, one of ``tracker.policies.POLICIES`` (``sam2``, ``samurai``,
        ``sam3_selection``, ``sam2long``)
        (``tracker/policies/``; its thresholds are the model config's ``tracker`` fields).
    """

    task: str = "vos"
    dataset_format: str = "davis"
    data_root: str = ""
    split: str = "val"
    reader: str = "folder"
    tfds_dir: str = ""
    videos: str = ""
    max_videos: int = 0
    num_synthetic: int = 20
    synthetic_frames: int = 9
    synthetic_stride: int = 1
    synthetic_size: int = 96
    synthetic_objects: int = 3
    model: str = "sam2.1_hiera_t"
    image_size: int = 0
    checkpoint: str = ""
    seed: int = 0
    dtype: str = "float32"
    prompt: str = "mask"
    convention: str = "sav"
    skip_first_and_last: bool = True
    score_thresh: float = 0.0
    output_layout: str = ""
    gt_root: str = ""
    pred_root: str = ""
    num_images: int = 0
    interactive_mode: str = "offline"
    max_frames: int = 8
    clicks_per_frame: int = 3
    interactive_threshold: float = 0.75
    interactive_quality: str = "j"
    devices_per_video: int = 0
    output_dir: str = "eval_out"
    progress: bool = True
    compilation_cache: str = "default"
    videos_per_step: int = 1
    tracker: str = dataclasses.field(default="sam2", metadata={"choices": POLICIES})


def build_model(cfg: RunConfig):
    """The ``SAM2Model`` a run names."""
    from sam2_jax.build_sam import build_sam2
    from sam2_jax.configs import get_config

    mcfg = get_config(cfg.model)
    if cfg.image_size:
        mcfg.model.image_size = cfg.image_size
    mcfg.tracker.policy = cfg.tracker
    return build_sam2(mcfg, cfg.checkpoint or None, dtype=cfg.dtype, seed=cfg.seed)


def synthetic_videos(cfg: RunConfig) -> list[vos.VOSVideo]:
    """The synthetic dataset of a run as ``VOSVideo``s (frames as arrays, annotated every ``synthetic_stride``)."""
    from sam2_jax.datasets.synthetic import SyntheticVideoDataset

    ds = SyntheticVideoDataset(
        num_videos=cfg.num_synthetic,
        seed=cfg.seed,
        num_frames=cfg.synthetic_frames,
        height=cfg.synthetic_size,
        width=cfg.synthetic_size,
        num_objects=cfg.synthetic_objects,
    )
    return [vos.vos_video_from_arrays(v.video_id, v.frames, v.masks, v.object_ids, cfg.synthetic_stride) for v in ds]


class _Limited:
    """A reader cut to its first ``n`` videos (``errors`` passed through)."""

    def __init__(self, reader, n: int):
        self.reader, self.n = reader, n
        self.errors = []

    def __len__(self) -> int:
        return min(self.n, len(self.reader))

    def __iter__(self):
        for i, v in enumerate(self.reader):
            if i >= self.n:
                break
            yield v
        self.errors = self.reader.errors


class _TfdsVideos:
    """The videos of a tfds data source, as ``VOSVideo``s, with the builder's skipped videos as ``errors``."""

    def __init__(self, source, skipped):
        self.source, self.errors = source, list(skipped)

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self):
        from sam2_jax.datasets.tfds_builders import vos_video_from_record

        for i in range(len(self.source)):
            yield vos_video_from_record(self.source[i])


def dataset_videos(cfg: RunConfig):
    """The iterable of ``VOSVideo``s a run names (with an ``errors`` list of skipped videos)."""
    if cfg.dataset_format not in FORMATS:
        raise ValueError(f"unknown dataset_format {cfg.dataset_format!r}, expected one of {FORMATS}")
    if cfg.dataset_format == "synthetic":
        videos = synthetic_videos(cfg)
        return videos[: cfg.max_videos] if cfg.max_videos else videos
    if not cfg.data_root:
        raise ValueError(f"--data_root is needed for dataset_format {cfg.dataset_format!r}")
    names = [v for v in cfg.videos.split(",") if v] or None
    if cfg.reader == "tfds":
        import tensorflow_datasets as tfds

        from sam2_jax.datasets.tfds_builders import VOSFolderBuilder

        builder = VOSFolderBuilder(
            config=cfg.dataset_format,
            split=cfg.split,
            videos=names,
            data_dir=cfg.tfds_dir or os.path.join(cfg.output_dir, "tfds"),
            file_format="array_record",
        )
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=cfg.data_root))
        skipped = builder.skipped
        if not skipped and os.path.exists(os.path.join(str(builder.data_dir), "skipped.json")):
            with open(os.path.join(str(builder.data_dir), "skipped.json")) as f:
                skipped = [tuple(x) for x in json.load(f)]
        videos = _TfdsVideos(builder.as_data_source()[cfg.split], skipped)
    elif cfg.reader == "folder":
        from sam2_jax.datasets.tfds_builders import make_reader

        kw = {"videos": names} if names else {}
        videos = make_reader(cfg.dataset_format, cfg.data_root, cfg.split, **kw)
    else:
        raise ValueError(f"unknown reader {cfg.reader!r}, expected folder or tfds")
    return _Limited(videos, cfg.max_videos) if cfg.max_videos else videos


def vos_config(cfg: RunConfig) -> vos_eval.VOSEvalConfig:
    """The ``VOSEvalConfig`` of a run."""
    return vos_eval.VOSEvalConfig(
        prompt=cfg.prompt,
        convention=cfg.convention,
        skip_first_and_last=cfg.skip_first_and_last,
        score_thresh=cfg.score_thresh,
        output_layout=cfg.output_layout or None,
        output_dir=cfg.output_dir or None,
        videos_per_step=cfg.videos_per_step,
    )


def video_predictors(cfg: RunConfig, videos) -> list:
    """One ``SAM2VideoPredictor`` per device group (``parallel``), sized for the dataset ``videos``."""
    from sam2_jax.evaluation import parallel

    groups = parallel.device_groups(cfg.devices_per_video, len(videos) if hasattr(videos, "__len__") else None)
    log.info("videos spread over %d device groups: %s", len(groups), [[d.id for d in g] for g in groups])
    predictors = parallel.group_predictors(build_model(cfg), groups)
    for p in predictors:
        p.progress = False  # the run's bar counts videos; one bar per tracked segment would bury it
    return predictors


def run(cfg: RunConfig):
    """Runs the task of ``cfg``, prints the summary and writes the outputs to ``cfg.output_dir``.

    Args:
      cfg: the run.

    Returns:
      the task's result (``vos_eval.EvalResult`` or ``image_eval.ImageEvalResult``).
    """
    start = time.perf_counter()
    if cfg.compilation_cache and cfg.task != "score":
        from sam2_jax.utils.compile_cache import enable_compilation_cache

        folder = None if cfg.compilation_cache == "default" else os.path.expanduser(cfg.compilation_cache)
        enable_compilation_cache(folder)
    if cfg.convention not in metrics.CONVENTIONS:
        raise ValueError(f"unknown convention {cfg.convention!r}, expected one of {metrics.CONVENTIONS}")
    if cfg.task == "score":
        if not cfg.gt_root or not cfg.pred_root:
            raise ValueError("the score task needs --gt_root and --pred_root")
        names = [v for v in cfg.videos.split(",") if v] or None
        result = vos_eval.score_folder(cfg.gt_root, cfg.pred_root, vos_config(cfg), names, cfg.progress)
        print(vos_eval.format_summary(result, f"scores of {cfg.pred_root} against {cfg.gt_root}"))
    elif cfg.task == "vos":
        videos = dataset_videos(cfg)
        result = vos_eval.evaluate_vos(video_predictors(cfg, videos), videos, vos_config(cfg), cfg.progress)
        title = f"semi-supervised VOS, prompt {cfg.prompt}, {cfg.dataset_format} {cfg.split} ({cfg.convention} metrics)"
        print(vos_eval.format_summary(result, title))
    elif cfg.task == "image":
        from sam2_jax.evaluation import image_eval

        result = image_eval.run_image_task(cfg, build_model(cfg))
    elif cfg.task == "interactive":
        from sam2_jax.evaluation import interactive

        icfg = interactive.InteractiveConfig(
            mode=cfg.interactive_mode,
            max_frames=cfg.max_frames,
            clicks_per_frame=cfg.clicks_per_frame,
            threshold=cfg.interactive_threshold,
            quality=cfg.interactive_quality,
            convention=cfg.convention,
            score_thresh=cfg.score_thresh,
            output_dir=cfg.output_dir or None,
        )
        videos = dataset_videos(cfg)
        result = interactive.evaluate_interactive(video_predictors(cfg, videos), videos, icfg, cfg.progress)
        print(interactive.format_interactive_summary(result, cfg.interactive_mode))
    else:
        raise ValueError(f"unknown task {cfg.task!r}, expected vos, score, image or interactive")
    if cfg.output_dir:
        print(f"results in {cfg.output_dir} ({time.perf_counter() - start:.1f} s)")
    return result
