"""A seeded synthetic source of videos and images with exact masks, for tests, examples and training smoke runs.

No official counterpart: SAM 2 trains and evaluates on SA-1B, SA-V, DAVIS, YouTube-VOS and MOSE, none of which can
be downloaded on the project's machines. This module makes data with the same structure in pure numpy:

- a textured background (a few random colour sinusoids plus fixed per-pixel noise) that pans slowly;
- ``num_objects`` textured shapes (ellipse, rectangle, regular polygon, ring, cross), each with its own colour,
  stripe texture and noise, moving with constant velocity (bouncing off a band a little wider than the frame, so a
  shape can leave the frame partly and come back), rotating and breathing in size;
- a fixed depth order: a shape drawn later hides the ones below it, and each mask is the *visible* part of its
  shape, so the masks of a frame never overlap (as in the DAVIS / SA-V ground truth);
- with ``hide_prob`` a shape vanishes for a few frames in the middle of the video and reappears; with
  ``late_start_prob`` it enters only at a later frame (objects that appear later, as in YouTube-VOS and SA-V).

Everything is a function of the seed (``np.random.default_rng``), so the same call gives the same pixels on every
machine; ``SyntheticVideoDataset`` derives item ``i``'s seed from ``(seed, i)`` so any item can be made alone, in
any order.
"""

import dataclasses
from collections.abc import Iterator

import numpy as np

SHAPES = ("ellipse", "rectangle", "polygon", "ring", "cross")


@dataclasses.dataclass(frozen=True)
class SyntheticVideo:
    """One synthetic video.

    Attributes:
      frames: ``(T, H, W, 3)`` uint8 RGB frames.
      masks: ``(T, O, H, W)`` bool visible masks, ``masks[t, k]`` of the object ``object_ids[k]``; masks of one
        frame are disjoint. An object's mask is empty on frames where it is hidden, not yet entered or out of frame.
      object_ids: ``(O,)`` int32 object ids, ``1 .. O`` (0 is the background in palette PNGs).
      video_id: a name, ``"synthetic_<seed>"`` unless given.
    """

    frames: np.ndarray
    masks: np.ndarray
    object_ids: np.ndarray
    video_id: str


@dataclasses.dataclass(frozen=True)
class SyntheticImage:
    """One synthetic image: ``image`` ``(H, W, 3)`` uint8, ``masks`` ``(O, H, W)`` bool, ``object_ids`` ``(O,)``."""

    image: np.ndarray
    masks: np.ndarray
    object_ids: np.ndarray
    image_id: str


def _background(rng: np.random.Generator, height: int, width: int, pad: int) -> np.ndarray:
    """A ``(height + 2 pad, width + 2 pad, 3)`` float32 texture in [0, 255]: colour sinusoids plus noise."""
    h, w = height + 2 * pad, width + 2 * pad
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, size=3).astype(np.float32)
    img = np.broadcast_to(base, (h, w, 3)).copy()
    for _ in range(3):
        freq = rng.uniform(0.02, 0.15)
        angle = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(10, 35, size=3).astype(np.float32)
        wave = np.sin(freq * (x * np.cos(angle) + y * np.sin(angle)) + phase)
        img += wave[..., None] * amp
    img += rng.normal(0, 8, size=(h, w, 3)).astype(np.float32)
    return np.clip(img, 0, 255)


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray, a: float, b: float, sides: int) -> np.ndarray:
    """Inside test in the shape's own (rotated) coordinates ``u, v`` with half-axes ``a, b``."""
    if kind == "ellipse":
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if kind == "rectangle":
        return (np.abs(u) <= a) & (np.abs(v) <= b)
    if kind == "polygon":
        # A regular polygon of circumradius a: inside all half-planes at the edge normals' angles.
        inside = np.ones(u.shape, bool)
        for k in range(sides):
            phi = 2 * np.pi * (k + 0.5) / sides
            inside &= u * np.cos(phi) + v * np.sin(phi) <= a * np.cos(np.pi / sides)
        return inside
    if kind == "ring":
        r = (u / a) ** 2 + (v / b) ** 2
        return (r <= 1.0) & (r >= 0.45)
    if kind == "cross":
        arm = 0.35 * min(a, b)
        return ((np.abs(u) <= a) & (np.abs(v) <= arm)) | ((np.abs(v) <= b) & (np.abs(u) <= arm))
    raise ValueError(f"unknown shape {kind!r}, expected one of {SHAPES}")


@dataclasses.dataclass(frozen=True)
class _Track:
    kind: str
    sides: int
    colour: np.ndarray
    stripe_freq: float
    stripe_angle: float
    noise: np.ndarray  # (2R+1, 2R+1) texture noise in the object's frame
    pos: np.ndarray  # (T, 2) centre (y, x)
    angle: np.ndarray  # (T,)
    scale: np.ndarray  # (T, 2) half-axes (a, b)
    visible: np.ndarray  # (T,) bool: drawn at all on this frame


def _tracks(
    rng: np.random.Generator,
    num_frames: int,
    height: int,
    width: int,
    num_objects: int,
    hide_prob: float,
    late_start_prob: float,
) -> list[_Track]:
    size = min(height, width)
    tracks = []
    for _ in range(num_objects):
        kind = SHAPES[rng.integers(len(SHAPES))]
        a0 = rng.uniform(0.1, 0.22) * size
        b0 = a0 * rng.uniform(0.5, 1.0)
        # Start well inside the frame and move 1-4 % of the frame size per frame.
        p = np.array([rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width])
        speed = rng.uniform(0.01, 0.04) * size
        heading = rng.uniform(0, 2 * np.pi)
        vel = speed * np.array([np.sin(heading), np.cos(heading)])
        lo = np.array([-0.1 * height, -0.1 * width])
        hi = np.array([1.1 * height, 1.1 * width])
        pos = np.empty((num_frames, 2))
        for t in range(num_frames):
            pos[t] = p
            p = p + vel
            # Bounce off the band [-10 %, 110 %] of the frame: shapes may leave the frame partly and return.
            for d in range(2):
                if p[d] < lo[d] or p[d] > hi[d]:
                    vel[d] = -vel[d]
                    p[d] = np.clip(p[d], lo[d], hi[d])
        t_idx = np.arange(num_frames)
        angle = rng.uniform(0, np.pi) + rng.uniform(-0.08, 0.08) * t_idx
        breathe = 1.0 + 0.15 * np.sin(rng.uniform(0.1, 0.4) * t_idx + rng.uniform(0, 2 * np.pi))
        scale = np.stack([a0 * breathe, b0 * breathe], axis=1)
        visible = np.ones(num_frames, bool)
        if num_frames >= 4 and rng.random() < late_start_prob:
            visible[: rng.integers(1, num_frames // 2 + 1)] = False
        if num_frames >= 6 and rng.random() < hide_prob:
            first = int(np.argmax(visible))
            length = int(rng.integers(1, max(2, num_frames // 4) + 1))
            start = int(rng.integers(first + 1, max(first + 2, num_frames - length)))
            visible[start : start + length] = False
        radius = int(np.ceil(1.2 * max(a0, b0) * 1.15)) + 1
        tracks.append(
            _Track(
                kind=kind,
                sides=int(rng.integers(3, 7)),
                colour=rng.uniform(0, 255, size=3).astype(np.float32),
                stripe_freq=float(rng.uniform(0.3, 1.2)),
                stripe_angle=float(rng.uniform(0, np.pi)),
                noise=rng.normal(0, 12, size=(2 * radius + 1, 2 * radius + 1, 3)).astype(np.float32),
                pos=pos,
                angle=angle,
                scale=scale,
                visible=visible,
            )
        )
    return tracks


def _render(
    tracks: list[_Track], background: np.ndarray, pad: int, pan: np.ndarray, t: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``t`` as ``(H, W, 3)`` uint8 and its ``(O, H, W)`` visible masks."""
    oy, ox = int(pan[t, 0]), int(pan[t, 1])
    img = background[pad + oy : pad + oy + height, pad + ox : pad + ox + width].copy()
    label = np.zeros((height, width), np.int32)  # 0 = background, k + 1 = track k on top
    for k, tr in enumerate(tracks):
        if not tr.visible[t]:
            continue
        cy, cx = tr.pos[t]
        a, b = tr.scale[t]
        r = int(np.ceil(max(a, b) * 1.2)) + 1
        # Work on the bounding box only: shapes are small next to the frame.
        y0, y1 = max(0, int(cy) - r), min(height, int(cy) + r + 1)
        x0, x1 = max(0, int(cx) - r), min(width, int(cx) + r + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy - cy, xx - cx
        c, s = np.cos(tr.angle[t]), np.sin(tr.angle[t])
        u, v = c * dx + s * dy, -s * dx + c * dy
        inside = _shape_mask(tr.kind, u, v, a, b, tr.sides)
        if not inside.any():
            continue
        stripes = np.sin(tr.stripe_freq * (u * np.cos(tr.stripe_angle) + v * np.sin(tr.stripe_angle)))
        # The noise moves with the object (indexed by its own rounded coordinates), so the texture is trackable.
        nr = (tr.noise.shape[0] - 1) // 2
        ui = np.clip(np.rint(u).astype(np.int64) + nr, 0, 2 * nr)
        vi = np.clip(np.rint(v).astype(np.int64) + nr, 0, 2 * nr)
        tex = tr.colour * (0.8 + 0.2 * stripes[..., None]) + tr.noise[vi, ui]
        region = img[y0:y1, x0:x1]
        region[inside] = tex[inside]
        label[y0:y1, x0:x1][inside] = k + 1
    masks = label[None] == np.arange(1, len(tracks) + 1)[:, None, None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), masks


def synthetic_video(
    seed: int,
    num_frames: int = 16,
    height: int = 96,
    width: int = 128,
    num_objects: int = 3,
    hide_prob: float = 0.5,
    late_start_prob: float = 0.25,
    video_id: str | None = None,
) -> SyntheticVideo:
    """A synthetic video with moving, occluding, vanishing and reappearing textured shapes.

    Args:
      seed: the only source of randomness; the same arguments give the same arrays.
      num_frames: T.
      height, width: frame size in pixels.
      num_objects: O, object ids ``1 .. O`` in depth order (a higher id is drawn in front).
      hide_prob: chance that an object vanishes for 1 to T/4 frames after it entered (needs T >= 6).
      late_start_prob: chance that an object enters only at a frame in ``1 .. T/2`` (needs T >= 4).
      video_id: the name to give; ``"synthetic_<seed>"`` if None.

    Returns:
      a ``SyntheticVideo`` (frames ``(T, H, W, 3)`` uint8, masks ``(T, O, H, W)`` bool, object ids ``(O,)``).
    """
    if num_frames < 1 or height < 8 or width < 8 or num_objects < 0:
        raise ValueError(
            f"need num_frames >= 1, height and width >= 8 and num_objects >= 0, got {num_frames}, {height}, "
            f"{width}, {num_objects}"
        )
    rng = np.random.default_rng(seed)
    pad = max(4, int(0.1 * max(height, width)))
    background = _background(rng, height, width, pad)
    # The camera pans along a slow random walk within the padding.
    pan = np.clip(np.cumsum(rng.integers(-1, 2, size=(num_frames, 2)), axis=0), -pad, pad)
    pan[0] = 0
    tracks = _tracks(rng, num_frames, height, width, num_objects, hide_prob, late_start_prob)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    masks = np.empty((num_frames, num_objects, height, width), bool)
    for t in range(num_frames):
        frames[t], masks[t] = _render(tracks, background, pad, pan, t, height, width)
    return SyntheticVideo(
        frames=frames,
        masks=masks,
        object_ids=np.arange(1, num_objects + 1, dtype=np.int32),
        video_id=video_id if video_id is not None else f"synthetic_{seed}",
    )


def synthetic_image(
    seed: int, height: int = 128, width: int = 128, num_objects: int = 4, image_id: str | None = None
) -> SyntheticImage:
    """A single synthetic frame with ``num_objects`` textured shapes, all present (none hidden or late).

    Args:
      seed: the only source of randomness.
      height, width: image size.
      num_objects: O; ids ``1 .. O``, a higher id in front.
      image_id: the name to give; ``"synthetic_<seed>"`` if None.

    Returns:
      a ``SyntheticImage`` (image ``(H, W, 3)`` uint8, masks ``(O, H, W)`` bool, disjoint, object ids ``(O,)``).
    """
    v = synthetic_video(seed, 1, height, width, num_objects, hide_prob=0.0, late_start_prob=0.0)
    return SyntheticImage(
        image=v.frames[0],
        masks=v.masks[0],
        object_ids=v.object_ids,
        image_id=image_id if image_id is not None else f"synthetic_{seed}",
    )


def item_seed(seed: int, index: int) -> int:
    """The seed of item ``index`` of a dataset seeded with ``seed`` (independent streams per item)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


@dataclasses.dataclass(frozen=True)
class SyntheticVideoDataset:
    """``num_videos`` synthetic videos; item ``i`` is ``synthetic_video(item_seed(seed, i), ...)``.

    Random access (``ds[i]``) and iteration give the same items; each is made on demand (nothing is cached).
    Item ``i`` is named ``"video_{i:05d}"``. The per-video arguments are those of ``synthetic_video``.
    """

    num_videos: int
    seed: int = 0
    num_frames: int = 16
    height: int = 96
    width: int = 128
    num_objects: int = 3
    hide_prob: float = 0.5
    late_start_prob: float = 0.25

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, index: int) -> SyntheticVideo:
        if not 0 <= index < self.num_videos:
            raise IndexError(f"video index {index} out of range [0, {self.num_videos})")
        return synthetic_video(
            item_seed(self.seed, index),
            self.num_frames,
            self.height,
            self.width,
            self.num_objects,
            self.hide_prob,
            self.late_start_prob,
            video_id=f"video_{index:05d}",
        )

    def __iter__(self) -> Iterator[SyntheticVideo]:
        return (self[i] for i in range(self.num_videos))


@dataclasses.dataclass(frozen=True)
class SyntheticImageDataset:
    """``num_images`` synthetic images; item ``i`` is ``synthetic_image(item_seed(seed, i), ...)``, named
    ``"image_{i:05d}"``."""

    num_images: int
    seed: int = 0
    height: int = 128
    width: int = 128
    num_objects: int = 4

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> SyntheticImage:
        if not 0 <= index < self.num_images:
            raise IndexError(f"image index {index} out of range [0, {self.num_images})")
        return synthetic_image(
            item_seed(self.seed, index), self.height, self.width, self.num_objects, image_id=f"image_{index:05d}"
        )

    def __iter__(self) -> Iterator[SyntheticImage]:
        return (self[i] for i in range(self.num_images))
