"""``sam2_jax.video.video_io``: frames equal to the official ``load_video_frames`` (``sam2/utils/misc.py``),
video files decoded by PyAV (sequential and random access equal to a full decode), array and live-iterator
sources, the bounded cache and prefetch thread, and the errors a user can hit."""

import time

import numpy as np
import pytest
from PIL import Image

from sam2_jax.video.video_io import (
    IMG_MEAN,
    IMG_STD,
    FrameIndexError,
    VideoSource,
    load_video_frames,
)
from tests.reference import DATA, requires_data, requires_torch
from tests.video_reference import link_frames

DOG = DATA / "videos" / "01_dog.mp4"


def expected(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
    """The official recipe spelled out: PIL default (bicubic) resize, /255 in float64, float32, normalise."""
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    x = np.float32(np.asarray(img.convert("RGB").resize((size, size)), np.uint8) / 255.0)
    return (x - np.float32(IMG_MEAN)) / np.float32(IMG_STD)


def synthetic(t: int = 6, h: int = 20, w: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


@requires_torch
@requires_data
def test_folder_equals_official_loader(tmp_path):
    import torch
    from sam2.utils.misc import load_video_frames as official_load

    clip = link_frames(tmp_path / "clip", range(5))
    ref, ref_h, ref_w = official_load(str(clip), 1024, True, compute_device=torch.device("cpu"))
    ref = ref.numpy().transpose(0, 2, 3, 1)  # (T, 3, S, S) -> (T, S, S, 3)
    src, h, w = load_video_frames(clip, 1024)
    ours = np.stack(list(src))
    assert (h, w, len(src), ours.shape, ours.dtype) == (ref_h, ref_w, 5, (5, 1024, 1024, 3), np.float32)
    # Same PIL calls and the same float32 operations: bit for bit (measured max |diff| 0).
    np.testing.assert_array_equal(ours, ref)
    # The official lazy loader normalises in float64: one float32 ulp apart (measured 2.4e-7).
    lazy, _, _ = official_load(str(clip), 1024, True, async_loading_frames=True, compute_device=torch.device("cpu"))
    for t in range(5):
        np.testing.assert_allclose(ours[t], lazy[t].float().numpy().transpose(1, 2, 0), rtol=0, atol=1e-6)


def test_folder_order_png_and_original_frames(tmp_path):
    frames = synthetic(4)
    # Sorted by the integer in the name, not lexicographically; PNG and any letter case are frames too.
    for t, name in enumerate(["1.png", "2.PNG", "10.png", "0011.png"]):
        Image.fromarray(frames[t]).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a frame")
    src = VideoSource(tmp_path, 16)
    assert (src.num_frames, src.video_height, src.video_width) == (4, 20, 30)
    for t in range(4):
        np.testing.assert_array_equal(src.original_frame(t), frames[t])
        np.testing.assert_array_equal(src[t], expected(frames[t], 16))


def test_array_and_sequence_sources():
    frames = synthetic(5)
    for video in (frames, list(frames)):
        src = VideoSource(video, 24)
        assert (len(src), src.num_frames, src.video_height, src.video_width, src.is_live) == (
            5,
            5,
            20,
            30,
            False,
        )
        for t in (4, 0, 2):
            assert src[t].shape == (24, 24, 3) and src[t].dtype == np.float32
            np.testing.assert_array_equal(src[t], expected(frames[t], 24))


def test_iterator_source_pulls_on_demand():
    frames = synthetic(10)
    pulled = []

    def camera():
        for t, f in enumerate(frames):
            pulled.append(t)
            yield f.copy()

    src = VideoSource(camera(), 16, cache_size=3)
    assert src.is_live and src.num_frames is None and pulled == [0]
    with pytest.raises(TypeError, match="no length"):
        len(src)
    np.testing.assert_array_equal(src[4], expected(frames[4], 16))
    assert pulled == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(src[3], expected(frames[3], 16))  # still within the last 3 pulled
    with pytest.raises(ValueError, match=r"frame 1 of the live source is no longer held.*\(now 2\.\.4\)"):
        src[1]
    rest = [src[t] for t in range(5, 10)]
    np.testing.assert_array_equal(rest[-1], expected(frames[9], 16))
    assert src.num_frames is None  # the end is only known once a read runs past it
    with pytest.raises(FrameIndexError, match="frame index 10 is out of range: the video has 10 frames"):
        src[10]
    assert src.num_frames == 10 and len(src) == 10
    assert len(list(VideoSource(iter(frames), 8))) == 10


@pytest.mark.parametrize("async_loading", [False, True])
def test_cache_is_bounded(async_loading):
    frames = synthetic(100, 8, 8)
    bound = 5
    src = VideoSource(frames, 16, cache_size=bound, async_loading_frames=async_loading, prefetch_depth=3)
    sizes = []
    for t in list(range(100)) + list(range(99, -1, -7)):
        x = src[t]
        sizes.append(len(src.cached_indices))
        np.testing.assert_array_equal(x, expected(frames[t], 16))
    assert max(sizes) <= bound and max(sizes) == bound
    if not async_loading:
        # A new frame costs one decode, a held frame none, an evicted one a decode again.
        n = src.num_decoded
        src[src.cached_indices[0]]
        assert src.num_decoded == n
        src[50]
        assert src.num_decoded == n + 1
    src.close()
    with pytest.raises(ValueError, match="closed"):
        src[0]


def test_prefetch_thread_decodes_ahead():
    frames = synthetic(30, 8, 8)
    src = VideoSource(frames, 16, cache_size=8, async_loading_frames=True, prefetch_depth=0)
    src.prefetch([20, 21, 22])
    deadline = time.monotonic() + 20.0
    while not {20, 21, 22} <= set(src.cached_indices) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert {20, 21, 22} <= set(src.cached_indices)
    n = src.num_decoded
    np.testing.assert_array_equal(src[21], expected(frames[21], 16))
    assert src.num_decoded == n  # served from what the thread decoded
    src.close()


@requires_data
def test_video_file_matches_full_decode():
    import av

    wanted = {0, 1, 2, 250, 251, 288, *range(118, 131)}
    with av.open(str(DOG)) as c:
        count, kept, first = 0, {}, None
        for frame in c.decode(video=0):
            if count == 0:
                first = frame.to_image()
            if count in wanted:
                kept[count] = frame.to_ndarray(format="rgb24")
            count += 1
    src = VideoSource(DOG, 1024, cache_size=4)
    assert (src.num_frames, src.video_height, src.video_width) == (count, 720, 1280) == (289, 720, 1280)
    assert src[0].shape == (1024, 1024, 3) and src[0].dtype == np.float32
    np.testing.assert_array_equal(src[0], expected(first, 1024))
    # Forward, back across the keyframe at 250, far jumps, back to the start: all equal the full decode.
    for t in [1, 2, 288, 251, 250, 120, 0, 251]:
        np.testing.assert_array_equal(src.original_frame(t), kept[t], err_msg=f"frame {t}")
    # Reading backwards frame by frame (reverse tracking) stays exact.
    for t in range(130, 118, -1):
        np.testing.assert_array_equal(src.original_frame(t), kept[t], err_msg=f"frame {t}")
    small = VideoSource(DOG.read_bytes(), 64)
    np.testing.assert_array_equal(small[0], expected(first, 64))


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        VideoSource(tmp_path / "missing", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no frames"):
        VideoSource(tmp_path / "empty", 16)
    bad = tmp_path / "badname"
    bad.mkdir()
    Image.fromarray(synthetic(1)[0]).save(bad / "frame_a.jpg")
    with pytest.raises(ValueError, match="'frame_a.jpg'.*not named <int>"):
        VideoSource(bad, 16)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    Image.fromarray(synthetic(1)[0]).save(corrupt / "00000.jpg")
    (corrupt / "00001.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    src = VideoSource(corrupt, 16)
    with pytest.raises(ValueError, match=r"cannot read frame 1 \(.*00001.jpg\)"):
        src[1]
    sizes = tmp_path / "sizes"
    sizes.mkdir()
    Image.fromarray(synthetic(1)[0]).save(sizes / "0.png")
    Image.fromarray(synthetic(1, 10, 10)[0]).save(sizes / "1.png")
    with pytest.raises(ValueError, match="frame 1 .* is 10x10 but frame 0 is 30x20"):
        VideoSource(sizes, 16)[1]
    (tmp_path / "x.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="cannot open video"):
        VideoSource(tmp_path / "x.mp4", 16)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\) uint8.*float32 of shape \(2, 4, 4, 3\)"):
        VideoSource(np.zeros((2, 4, 4, 3), np.float32), 16)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\) uint8.*uint8 of shape \(4, 4, 3\)"):
        VideoSource(np.zeros((4, 4, 3), np.uint8), 16)
    with pytest.raises(ValueError, match=r"frame 1 of the live source must be an \(H, W, 3\) uint8"):
        VideoSource(iter([synthetic(1)[0], np.zeros((4, 4), np.uint8)]), 16)[1]
    with pytest.raises(ValueError, match="no frames"):
        VideoSource(iter([]), 16)
    src = VideoSource(synthetic(3), 16)
    for t in (3, -1):
        with pytest.raises(FrameIndexError, match=f"frame index {t} is out of range: the video has 3 frames"):
            src[t]
    with pytest.raises(ValueError, match="cache_size must be an int >= 1, got 0"):
        VideoSource(synthetic(3), 16, cache_size=0)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        VideoSource(synthetic(3), 0)


def test_frame_queue_is_fed_by_the_caller():
    from sam2_jax.video.video_io import FrameQueue

    frames = synthetic(3)
    queue = FrameQueue()
    assert queue.push(frames[0]) == 0
    src = VideoSource(queue, 16)
    assert src.num_frames is None
    with pytest.raises(ValueError, match="frame 1 of the stream has not been pushed yet"):
        src[1]
    assert queue.push(frames[1]) == 1
    np.testing.assert_array_equal(src.original_frame(1), frames[1])
    np.testing.assert_array_equal(src[1], VideoSource(frames, 16)[1])
    with pytest.raises(ValueError, match="frame 2 of the stream is 10x10 but frame 0 is 30x20"):
        queue.push(synthetic(1, 10, 10)[0])
    with pytest.raises(ValueError, match=r"frame 2 of the stream must be an \(H, W, 3\) uint8"):
        queue.push(frames[2].astype(np.float32))
    assert queue.push(frames[2]) == 2  # rejected frames take no index
    np.testing.assert_array_equal(src.original_frame(2), frames[2])
