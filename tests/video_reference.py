"""The official video predictor harness, now ``sam2_jax.reference.video``; re-exported for the tests."""

from sam2_jax.reference.video import (  # noqa: F401
    BEDROOM,
    FrameRecord,
    VideoRecorder,
    install_memory_cast,
    link_frames,
    memory_casts,
    official_video_predictor,
    propagate,
    without_memory_cast,
)

_install_memory_cast = install_memory_cast
