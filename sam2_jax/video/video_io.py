"""Video frames for the video predictor: port of the frame loaders in ``sam2/utils/misc.py``
(``_load_img_as_tensor``, ``AsyncVideoFrameLoader``, ``load_video_frames``,
``load_video_frames_from_jpg_images``, ``load_video_frames_from_video_file``).

A ``VideoSource`` gives random access to the model inputs of a video: frame ``t`` is a float32 ``(image_size,
image_size, 3)`` numpy array, resized exactly as the official ``_load_img_as_tensor`` (PIL
``img.convert("RGB").resize((image_size, image_size))``, i.e. PIL's default bicubic filter, then ``/ 255``)
and normalised with the ImageNet mean and std in float32, so a frame equals the official tensor bit for bit.

Deviations from the official loaders:
- Frames are decoded on demand into a bounded LRU cache (``cache_size`` frames) instead of all at start-up:
  memory does not grow with the video's length (a video file or a live source also keeps its last
  ``cache_size`` decoded frames at video size). A frame that left the cache is decoded again when asked for.
  With ``async_loading_frames=True`` a background thread decodes the frames the consumer will ask for next
  (the next ``prefetch_depth`` frames in the direction of the last two reads, or those given to ``prefetch``),
  instead of the official thread that loads every frame of the video.
- The arithmetic is the official default path's (``float32(u8 / 255.0)``, then ``- mean`` and ``/ std`` in
  float32). The official ``async_loading_frames=True`` path normalises in float64 and rounds once at the model
  input; the two differ by at most one float32 ulp.
- ``offload_video_to_cpu`` is accepted and ignored: frames always live in host memory as numpy arrays; moving
  a frame to the accelerator is the caller's ``jax.device_put``. There is no ``compute_device``.
- More sources: a folder of ``<int>.<ext>`` frames with ext jpg/jpeg/png in any letter case (the official
  takes JPEG only), a video file of any container PyAV opens (or its bytes), a ``(T, H, W, 3)`` uint8 array or
  a sequence of ``(H, W, 3)`` uint8 frames, and a live iterator (a camera) whose length is unknown until it
  ends.
- Video files are decoded with PyAV at full size, and each frame is then resized with PIL exactly like a JPEG
  frame. The official uses decord, which resizes inside the decoder (ffmpeg's scaler), so its video-file
  frames are not bit-equal to ours nor to its own JPEG path; ours match the JPEG path of the same pixels.
  ``num_frames`` of a video file is its number of video packets, counted by a demux pass without decoding
  (header frame counts are missing or wrong in some containers, and the pass also gives the timestamps that
  seeking needs). PyAV is imported only when a video file is opened.
- ``video_height`` / ``video_width`` are frame 0's, and a frame of another size raises ``ValueError`` (the
  official reports the size of the last frame it loaded and silently resizes frames of any size).
- Bad input raises ``ValueError`` naming it: a missing path, an empty folder, a badly named frame file, a
  corrupt frame (with its path), a wrong array shape or dtype, a frame index out of range
  (``FrameIndexError``, also an ``IndexError``). The official raises ``RuntimeError``/``NotImplementedError``
  or fails inside PIL.
"""

import bisect
import collections
import functools
import io
import itertools
import operator
import os
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")

# The last bytes of a complete file of each format (a truncated frame lacks them).
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}

# Decoding forward beats a seek while the target's keyframe is fewer than this many frames past the decoder.
_SEEK_GAP = 8


class FrameIndexError(ValueError, IndexError):
    """A frame index outside the video (an ``IndexError`` too, so ``for``-style iteration stops on it)."""


def preprocess_frame(
    image: Image.Image | np.ndarray,
    image_size: int,
    img_mean: Sequence[float] = IMG_MEAN,
    img_std: Sequence[float] = IMG_STD,
) -> np.ndarray:
    """One frame as the model input: the official ``_load_img_as_tensor``, then the normalisation.

    Args:
      image: a PIL image (any mode) or an ``(H, W, 3)`` uint8 RGB array.
      image_size: side of the square model input.
      img_mean, img_std: per-channel normalisation of the [0, 1] pixels.

    Returns:
      float32 ``(image_size, image_size, 3)``.
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(_check_frame_array(image, "image"))
    if image.mode != "RGB":  # converting an RGB image only copies it
        image = image.convert("RGB")
    resized = np.asarray(image.resize((image_size, image_size)))
    lut = _normalisation_table(tuple(img_mean), tuple(img_std))
    out = np.empty(resized.shape, np.float32)
    for c in range(3):
        out[..., c] = lut[c][resized[..., c]]
    return out


@functools.lru_cache(maxsize=8)
def _normalisation_table(img_mean: tuple[float, ...], img_std: tuple[float, ...]) -> np.ndarray:
    """``(3, 256)`` float32: each channel's normalised value of every uint8 level.

    Every output pixel depends only on its level and channel, so looking it up gives the very bits of the
    official elementwise ``(float32(u / 255.0) - mean) / std`` (the division by 255 in float64, the rest in
    float32), at a third of the cost.
    """
    levels = (np.arange(256) / 255.0).astype(np.float32)
    mean, std = np.asarray(img_mean, np.float32), np.asarray(img_std, np.float32)
    return (levels[None, :] - mean[:, None]) / std[:, None]


def _check_frame_array(frame: Any, what: str) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        desc = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"{what} must be an (H, W, 3) uint8 RGB array, got {desc}")
    return frame


# Readers give the decoded frame at video size; they are not thread-safe (VideoSource serialises them).


class _FolderReader:
    """A folder of frames named ``<int>.<ext>``, in the order of the integers (the official sort)."""

    def __init__(self, folder: str):
        names = [n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in FRAME_EXTENSIONS]
        if not names:
            raise ValueError(f"no frames ({'/'.join(FRAME_EXTENSIONS)} files) found in folder {folder!r}")
        keyed = {}
        for n in names:
            stem = os.path.splitext(n)[0]
            if not stem.isdigit():
                raise ValueError(f"frame file {n!r} in {folder!r} is not named <int>.<ext> (e.g. 00000.jpg)")
            if int(stem) in keyed:
                raise ValueError(f"frame files {keyed[int(stem)]!r} and {n!r} in {folder!r} have the same number")
            keyed[int(stem)] = n
        self.paths = [os.path.join(folder, keyed[k]) for k in sorted(keyed)]
        self.num_frames: int | None = len(self.paths)

    def describe(self, index: int) -> str:
        return f"frame {index} ({self.paths[index]})"

    def check(self, progress: bool = False) -> str:
        """Every frame's header and file ending, without decoding: an unreadable header, a frame of another size
        than frame 0, or a file cut short (no JPEG end-of-image marker / PNG ``IEND`` in its last KiB) raises
        ``ValueError`` naming the frame. Returns what could not be checked this way."""
        first = None
        paths = self.paths
        if progress:
            from tqdm import tqdm

            paths = tqdm(paths, desc="frame check (headers)", file=sys.stderr)
        for i, path in enumerate(paths):
            try:
                with Image.open(path) as img:
                    size, fmt = img.size, img.format
            except (OSError, SyntaxError, ValueError) as e:
                raise ValueError(f"cannot read {self.describe(i)}: {e}") from e
            if first is None:
                first = size
            elif size != first:
                raise ValueError(
                    f"{self.describe(i)} is {size[0]}x{size[1]} but frame 0 is {first[0]}x{first[1]}: all frames "
                    "of a video must have one size"
                )
            end = _END_MARKERS.get(fmt)
            if end is not None:
                with open(path, "rb") as f:
                    f.seek(max(os.path.getsize(path) - 1024, 0))
                    if end not in f.read():
                        raise ValueError(f"{self.describe(i)} is cut short: its {fmt} end marker is missing")
        return "pixel data (decoded when a frame is first used)"

    def read(self, index: int) -> Image.Image:
        try:
            with Image.open(self.paths[index]) as img:
                img.load()  # decode now, so a truncated file fails here with its name
                return img
        except (OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"cannot read {self.describe(index)}: {e}") from e

    def close(self) -> None:
        pass


class _ArrayReader:
    """A ``(T, H, W, 3)`` uint8 array, or a sequence of ``(H, W, 3)`` uint8 frames (checked when read)."""

    def __init__(self, frames: np.ndarray | Sequence[np.ndarray]):
        if isinstance(frames, np.ndarray):
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(
                    f"a video array must be (T, H, W, 3) uint8 RGB, got {frames.dtype} of shape {frames.shape}"
                )
        if len(frames) == 0:
            raise ValueError("the video has no frames (empty array or sequence)")
        self.frames = frames
        self.num_frames: int | None = len(frames)

    def describe(self, index: int) -> str:
        return f"frame {index}"

    def check(self, progress: bool = False) -> str:
        """Every frame's shape and dtype against frame 0 (cheap: no copy); raises ``ValueError`` naming a frame."""
        del progress
        first = _check_frame_array(self.frames[0], "frame 0").shape
        for i in range(1, len(self.frames)):
            shape = _check_frame_array(self.frames[i], f"frame {i}").shape
            if shape != first:
                raise ValueError(
                    f"frame {i} is {shape[1]}x{shape[0]} but frame 0 is {first[1]}x{first[0]}: all frames of a "
                    "video must have one size"
                )
        return "nothing"

    def read(self, index: int) -> np.ndarray:
        return _check_frame_array(self.frames[index], f"frame {index}")

    def close(self) -> None:
        pass


class _IteratorReader:
    """A live iterator of ``(H, W, 3)`` uint8 frames, pulled on demand; keeps the last ``window`` frames."""

    def __init__(self, frames: Iterable[np.ndarray], window: int):
        self._it = iter(frames)
        self._window: collections.deque[np.ndarray] = collections.deque(maxlen=window)
        self.num_pulled = 0
        self.num_frames: int | None = None

    def describe(self, index: int) -> str:
        return f"frame {index} of the live source"

    def check(self, progress: bool = False) -> str:
        del progress
        return "every frame (a live source's frames are checked as they arrive)"

    def read(self, index: int) -> np.ndarray:
        while index >= self.num_pulled:
            if self.num_frames is not None:
                raise FrameIndexError(f"frame index {index} is out of range: the video has {self.num_frames} frames")
            try:
                frame = next(self._it)
            except StopIteration:
                self.num_frames = self.num_pulled
                continue
            # Copy: a camera may reuse its buffer for the next frame.
            self._window.append(np.array(_check_frame_array(frame, self.describe(self.num_pulled))))
            self.num_pulled += 1
        oldest = self.num_pulled - len(self._window)
        if index < oldest:
            raise ValueError(
                f"{self.describe(index)} is no longer held: a live source keeps its last "
                f"{self._window.maxlen} "
                f"frames (now {oldest}..{self.num_pulled - 1}); raise cache_size to reach further back"
            )
        return self._window[index - oldest]

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


class FrameQueue:
    """A live source that the caller feeds: ``push(frame)`` appends one ``(H, W, 3)`` uint8 frame.

    Handed to ``VideoSource`` as its iterator; a read asks for the next pushed frame. Reading a frame that was not
    pushed yet raises ``ValueError`` (a push source never ends by itself, so nothing may read ahead of it).
    """

    def __init__(self) -> None:
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._first_shape: tuple[int, ...] | None = None
        self.num_pushed = 0

    def push(self, frame: np.ndarray) -> int:
        """Append a frame; returns its index in the stream.

        A bad frame (not ``(H, W, 3)`` uint8, or another size than frame 0) raises ``ValueError`` here and is not
        queued, so the stream's indices stay those of the good frames.
        """
        index = self.num_pushed
        frame = _check_frame_array(frame, f"frame {index} of the stream")
        if self._first_shape is None:
            self._first_shape = frame.shape
        elif frame.shape != self._first_shape:
            (h, w, _), (h0, w0, _) = frame.shape, self._first_shape
            raise ValueError(f"frame {index} of the stream is {w}x{h} but frame 0 is {w0}x{h0}")
        self._queue.append(frame)
        self.num_pushed += 1
        return index

    def __iter__(self) -> "FrameQueue":
        return self

    def __next__(self) -> np.ndarray:
        if not self._queue:
            raise ValueError(
                f"frame {self.num_pushed} of the stream has not been pushed yet (frames are fed one at a time by "
                "the caller, e.g. SAM2VideoPredictor.track_frame)"
            )
        return self._queue.popleft()


class _VideoFileReader:
    """A video file decoded with PyAV: one forward decoder, re-positioned by a keyframe seek when needed.

    A first pass demuxes the stream (no decoding) to count the frames and to list each frame's presentation
    timestamp and the keyframes. Reading the next frame costs one decode; reading backwards, or far ahead,
    costs a seek to the keyframe at or before the target plus the decode of every frame from it to the target
    (up to one group of pictures, e.g. 250 frames, about 1 s at 720p). The last ``window`` frames decoded on
    the way are kept (as ``(H, W, 3)`` uint8), so reading backwards frame by frame pays that once per
    ``window`` frames. Streams without timestamps fall back to decoding from the start for every backward
    read.
    """

    def __init__(self, video: str | bytes, window: int):
        try:
            import av
        except ImportError as e:
            raise ImportError("reading video files needs PyAV: pip install av") from e
        self._av = av
        self._video = video
        self._name = repr(video) if isinstance(video, str) else f"<{len(video)} bytes of video>"
        self._container = None
        container, stream = self._open()
        listed = stream.frames  # the container's own count (0 when it has none)
        try:
            pts, key_pts, end = [], [], 0
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream flush packet
                    continue
                pts.append(packet.pts)
                end = max(end, (packet.pos or 0) + packet.size)
                if packet.is_keyframe:
                    key_pts.append(packet.pts)
        finally:
            container.close()
        if not pts:
            raise ValueError(f"the video {self._name} has no frames")
        size = len(video) if isinstance(video, bytes) else os.path.getsize(video)
        if listed > len(pts) and end >= size:
            # The index lists frames whose data would lie past the end of the file: it was cut short.
            raise ValueError(
                f"the video {self._name} is truncated: its index lists {listed} frames but the file ends after "
                f"{len(pts)} of them"
            )
        self.num_frames: int | None = len(pts)
        # Packets come in decode order; frames leave the decoder in presentation (timestamp) order.
        self._index_of: dict[int, int] | None = None
        self._keyframes: list[int] = [0]
        if None not in pts and len(set(pts)) == len(pts):
            self._pts = sorted(pts)
            self._index_of = {p: i for i, p in enumerate(self._pts)}
            self._keyframes = sorted({self._index_of[p] for p in key_pts} | {0})
        self._frames: Iterator[tuple[int, Any]] | None = None
        self._next: int | None = None  # index of the frame the open decoder gives next
        self._recent: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._window = window

    def _open(self):
        src = io.BytesIO(self._video) if isinstance(self._video, bytes) else self._video
        try:
            container = self._av.open(src)
        except (self._av.error.FFmpegError, OSError) as e:
            raise ValueError(f"cannot open video {self._name}: {e}") from e
        if not container.streams.video:
            container.close()
            raise ValueError(f"{self._name} has no video stream")
        return container, container.streams.video[0]

    def describe(self, index: int) -> str:
        return f"frame {index} of video {self._name}"

    def check(self, progress: bool = False) -> str:
        """Checked when opened (the packet index against the container's frame count)."""
        del progress
        return "pixel data (decoded when a frame is first used)"

    def _indexed(self, frames: Iterator, first: int | None) -> Iterator[tuple[int, Any]]:
        """(index, frame) pairs; by timestamp, or by counting from ``first`` when timestamps are unknown."""
        for n, frame in enumerate(frames):
            if self._index_of is not None and frame.pts in self._index_of:
                yield self._index_of[frame.pts], frame
            elif first is not None:
                yield first + n, frame
            else:
                raise RuntimeError(f"decoded a frame with an unknown timestamp {frame.pts} after a seek")

    def _restart(self, keyframe: int) -> None:
        if self._container is None or keyframe == 0:
            if self._container is not None:
                self._container.close()
            self._container, self._stream = self._open()
            self._frames = self._indexed(self._container.decode(self._stream), 0)
        else:
            self._container.seek(self._pts[keyframe], stream=self._stream, backward=True, any_frame=False)
            self._frames = self._indexed(self._container.decode(self._stream), None)
        self._next = None

    def _decode_to(self, index: int, keep_from: int) -> np.ndarray | None:
        """Decode up to frame ``index``, keeping frames ``keep_from..index`` in the recent window."""
        assert self._frames is not None
        try:
            for i, frame in self._frames:
                self._next = i + 1
                if keep_from <= i <= index:
                    self._recent[i] = frame.to_ndarray(format="rgb24")
                    while len(self._recent) > self._window:
                        self._recent.popitem(last=False)
                if i == index:
                    return self._recent[i]
                if i > index:
                    break
        except (self._av.error.FFmpegError, RuntimeError):
            pass
        self._frames = None
        return None

    def read(self, index: int) -> np.ndarray:
        if index in self._recent:
            return self._recent[index]
        keyframe = self._keyframes[bisect.bisect_right(self._keyframes, index) - 1]
        forward = self._frames is not None and self._next is not None and self._next <= index
        keep_from = index
        if not (forward and keyframe - self._next < _SEEK_GAP):
            # After a seek the frames before the target are likely next (reverse tracking): keep them.
            keep_from = index - self._window + 1
            try:
                self._restart(keyframe)
            except self._av.error.FFmpegError:
                self._frames = None
        rgb = None if self._frames is None else self._decode_to(index, keep_from)
        if rgb is None and keyframe != 0:  # the seek missed (odd timestamps): decode from the start
            self._restart(0)
            rgb = self._decode_to(index, keep_from)
        if rgb is None:
            raise ValueError(f"cannot decode {self.describe(index)} (the stream lists {self.num_frames} frames)")
        return rgb

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._frames = None
        self._recent.clear()


class _FrameStore:
    """The LRU cache of model-input frames and the prefetch worker; shared by a VideoSource and its thread.

    The worker holds this object, not the VideoSource, so a dropped VideoSource is collected and its finaliser
    stops the worker.
    """

    def __init__(self, reader, image_size: int, img_mean, img_std, cache_size: int):
        self.reader = reader
        self.image_size = image_size
        self.img_mean, self.img_std = tuple(img_mean), tuple(img_std)
        self.cache_size = cache_size
        self.cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self.cond = threading.Condition()  # guards cache, pending, queue, closed
        self.read_lock = threading.Lock()  # readers hold a decoder state
        self.pending: set[int] = set()
        self.queue: collections.deque[int] = collections.deque()
        self.closed = False
        self.num_decoded = 0
        self.video_hw: tuple[int, int] | None = None
        self.thread: threading.Thread | None = None

    def check_index(self, index: int) -> int:
        index = operator.index(index)
        n = self.reader.num_frames
        # Negative indices are refused, not wrapped: an off-by-one -1 must not give the last frame.
        if index < 0 or (n is not None and index >= n):
            raise FrameIndexError(f"frame index {index} is out of range: the video has {n} frames")
        return index

    def raw(self, index: int) -> Image.Image | np.ndarray:
        with self.read_lock:
            if self.closed:
                raise ValueError("the video source is closed")
            raw = self.reader.read(index)
        w, h = raw.size if isinstance(raw, Image.Image) else (raw.shape[1], raw.shape[0])
        if self.video_hw is None:
            self.video_hw = (h, w)
        elif self.video_hw != (h, w):
            raise ValueError(
                f"{self.reader.describe(index)} is {w}x{h} but frame 0 is "
                f"{self.video_hw[1]}x{self.video_hw[0]}: "
                "all frames of a video must have one size"
            )
        return raw

    def get(self, index: int, from_worker: bool = False) -> np.ndarray:
        with self.cond:
            while True:
                if self.closed:
                    raise ValueError("the video source is closed")
                if index in self.cache:
                    if not from_worker:  # prefetching must not make a frame look recently used
                        self.cache.move_to_end(index)
                    return self.cache[index]
                if index not in self.pending:
                    self.pending.add(index)
                    break
                self.cond.wait()  # the other thread is decoding this very frame
        try:
            frame = preprocess_frame(self.raw(index), self.image_size, self.img_mean, self.img_std)
        except BaseException:
            with self.cond:
                self.pending.discard(index)
                self.cond.notify_all()
            raise
        # Cache and un-pend in one step, so a waiting reader finds the frame instead of decoding it again.
        with self.cond:
            self.pending.discard(index)
            self.num_decoded += 1
            self.cache[index] = frame
            self.cache.move_to_end(index)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
            self.cond.notify_all()
        return frame

    def request(self, indices: list[int]) -> None:
        with self.cond:
            self.queue.clear()
            self.queue.extend(indices)
            self.cond.notify_all()

    def work(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.closed:
                    self.cond.wait()
                if self.closed:
                    return
                index = self.queue.popleft()
            try:
                self.get(self.check_index(index), from_worker=True)
            except Exception:
                # A frame that fails here fails again, with its message, when the consumer asks for it.
                with self.cond:
                    self.queue.clear()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.queue.clear()
            self.cache.clear()
            self.cond.notify_all()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=5.0)
        # A worker blocked on a live source that never yields keeps the lock: leave that reader to the GC.
        if self.read_lock.acquire(timeout=5.0):
            try:
                self.reader.close()
            finally:
                self.read_lock.release()


class VideoSource:
    """Random access to a video's model-input frames, decoded on demand into a bounded LRU cache.

    ``source[t]`` is frame ``t`` as float32 ``(image_size, image_size, 3)``, normalised; ``len(source)`` and
    ``num_frames`` give the frame count (``num_frames`` is None for a live iterator until it has ended, and
    ``len`` raises ``TypeError`` then). Frame 0 is decoded at construction, for ``video_height`` /
    ``video_width`` and because it is where a user clicks first.
    """

    def __init__(
        self,
        video: str | os.PathLike | bytes | np.ndarray | Sequence[np.ndarray] | Iterable[np.ndarray],
        image_size: int = 1024,
        *,
        offload_video_to_cpu: bool = True,
        img_mean: Sequence[float] = IMG_MEAN,
        img_std: Sequence[float] = IMG_STD,
        async_loading_frames: bool = False,
        cache_size: int = 16,
        prefetch_depth: int | None = None,
    ):
        """
        Args:
          video: a folder of ``<int>.jpg|jpeg|png`` frames, a video file path (any container PyAV opens) or
            its bytes, a ``(T, H, W, 3)`` uint8 array or a sequence of ``(H, W, 3)`` uint8 frames, or an
            iterator of ``(H, W, 3)`` uint8 frames (a live source: frames are pulled when first asked for, and
            frames older than the last ``cache_size`` pulled can no longer be read).
          image_size: side of the square model input.
          offload_video_to_cpu: accepted for the official signature; frames always stay in host memory.
          img_mean, img_std: normalisation of the [0, 1] pixels.
          async_loading_frames: decode the next frames on a background thread, ahead of the reads.
          cache_size: how many model-input frames are held (each is ``image_size**2 * 12`` bytes, 12.6 MB at
            1024).
          prefetch_depth: how many frames the background thread reads ahead (default ``cache_size // 2``; at
            most ``cache_size - 1``, so prefetched frames do not evict each other).
        """
        del offload_video_to_cpu  # host memory always; see the module docstring
        if not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError(f"cache_size must be an int >= 1, got {cache_size!r}")
        depth = cache_size // 2 if prefetch_depth is None else prefetch_depth
        if not 0 <= depth <= cache_size - 1:
            raise ValueError(f"prefetch_depth must be in [0, cache_size - 1 = {cache_size - 1}], got {depth}")
        self.image_size = image_size
        self.prefetch_depth = depth
        self.is_live = False
        if isinstance(video, (str, os.PathLike)):
            path = os.fspath(video)
            if os.path.isdir(path):
                reader = _FolderReader(path)
            elif os.path.isfile(path):
                reader = _VideoFileReader(path, window=cache_size)
            else:
                raise ValueError(f"video path {path!r} does not exist")
        elif isinstance(video, bytes):
            reader = _VideoFileReader(video, window=cache_size)
        elif isinstance(video, (np.ndarray, list, tuple)):
            reader = _ArrayReader(video)
        elif isinstance(video, Iterable):
            reader = _IteratorReader(video, window=cache_size)
            self.is_live = True
        else:
            raise ValueError(
                "video must be a folder or video-file path, video bytes, a (T, H, W, 3) uint8 array or an "
                f"iterator of (H, W, 3) uint8 frames; got {type(video).__name__}"
            )
        self._store = _FrameStore(reader, image_size, img_mean, img_std, cache_size)
        self._finalizer = weakref.finalize(self, self._store.close)
        self._last_index: int | None = None
        try:
            self[0]
        except FrameIndexError:
            self.close()
            raise ValueError("the video has no frames (the iterator ended at once)") from None
        except BaseException:
            self.close()
            raise
        self.video_height, self.video_width = self._store.video_hw
        if async_loading_frames:
            self._store.thread = threading.Thread(target=self._store.work, name="VideoSource-prefetch", daemon=True)
            self._store.thread.start()

    def check_frames(self, progress: bool = False) -> str:
        """What can be checked of every frame without decoding it: a folder's frame headers, sizes and file endings;
        an array's frame shapes (a video file's packet index against its container's frame count is checked when
        it is opened). Raises ``ValueError`` naming the first bad frame.

        Returns:
          What was not checked (decoded when a frame is first used).
        """
        with self._store.read_lock:
            return self._store.reader.check(progress)

    @property
    def num_frames(self) -> int | None:
        """The number of frames; None for a live source that has not ended yet."""
        return self._store.reader.num_frames

    @property
    def cached_indices(self) -> list[int]:
        """Indices of the frames held now, least recently used first."""
        with self._store.cond:
            return list(self._store.cache)

    @property
    def num_decoded(self) -> int:
        """How many frames were decoded and preprocessed so far (each cache miss costs one)."""
        return self._store.num_decoded

    def __len__(self) -> int:
        if self.num_frames is None:
            raise TypeError("a live video source has no length until it has ended; use num_frames")
        return self.num_frames

    def __getitem__(self, index: int) -> np.ndarray:
        """Frame ``index``, float32 ``(image_size, image_size, 3)``; ``FrameIndexError`` when out of range."""
        index = self._store.check_index(index)
        frame = self._store.get(index)
        if self._store.thread is not None and self.prefetch_depth:
            step = -1 if self._last_index == index + 1 else 1
            ahead = [index + step * k for k in range(1, self.prefetch_depth + 1)]
            n = self.num_frames
            self._store.request([i for i in ahead if i >= 0 and (n is None or i < n)])
        self._last_index = index
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        """The frames in order (for a live source: until it ends)."""
        for t in itertools.count():
            try:
                yield self[t]
            except FrameIndexError:
                return

    def prefetch(self, frame_indices: Iterable[int]) -> None:
        """Ask the background thread to decode these frames next (replacing earlier requests).

        Only the first ``cache_size - 1`` are kept, so they do not evict each other. A no-op without
        ``async_loading_frames``. The next read replaces the request with its own read-ahead unless
        ``prefetch_depth`` is 0.
        """
        if self._store.thread is None:
            return
        wanted = [self._store.check_index(i) for i in frame_indices]
        self._store.request(wanted[: self._store.cache_size - 1])

    def original_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` at video size as ``(video_height, video_width, 3)`` uint8 RGB (not cached)."""
        raw = self._store.raw(self._store.check_index(index))
        return np.asarray(raw.convert("RGB")) if isinstance(raw, Image.Image) else np.array(raw)

    def close(self) -> None:
        """Stop the prefetch thread and release the decoder (also done when the source is collected)."""
        self._finalizer()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_video_frames(
    video_path: str | os.PathLike | bytes | np.ndarray | Iterable[np.ndarray],
    image_size: int,
    offload_video_to_cpu: bool = True,
    img_mean: Sequence[float] = IMG_MEAN,
    img_std: Sequence[float] = IMG_STD,
    async_loading_frames: bool = False,
    cache_size: int = 16,
) -> tuple[VideoSource, int, int]:
    """The official entry point's signature and results: ``(frames, video_height, video_width)``.

    ``frames`` is a ``VideoSource`` (indexable, ``len``), not a preloaded tensor; see ``VideoSource`` for the
    args.
    """
    source = VideoSource(
        video_path,
        image_size,
        offload_video_to_cpu=offload_video_to_cpu,
        img_mean=img_mean,
        img_std=img_std,
        async_loading_frames=async_loading_frames,
        cache_size=cache_size,
    )
    return source, source.video_height, source.video_width
