"""Command-line prompt arguments: ``--point x,y[,label]`` and ``--box x0,y0,x1,y1`` (``sam2-jax`` and the demo),
checked by the shared validation layer (``sam2_jax.utils.validation``) that the predictors use."""

import argparse

from sam2_jax.utils.validation import check_boxes, check_points


def parse_point(s: str) -> tuple[float, float, int]:
    """An ``argparse`` type for a click.

    Args:
      s: ``x,y`` or ``x,y,label`` (label 1 positive, the default, or 0 negative), in image pixels.
    Returns:
      ``(x, y, label)``.
    Raises:
      argparse.ArgumentTypeError: malformed, a label other than 0/1, or a non-finite coordinate.
    """
    parts = s.split(",")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
        lab = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"--point wants x,y or x,y,label, got {s!r}") from None
    if lab not in (0, 1):
        raise argparse.ArgumentTypeError(f"point label must be 1 (positive) or 0 (negative), got {lab} in {s!r}")
    try:
        check_points([x, y], "--point")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return x, y, lab


def parse_box(s: str) -> tuple[float, float, float, float]:
    """An ``argparse`` type for a box.

    Args:
      s: ``x0,y0,x1,y1`` in image pixels with ``x0 < x1`` and ``y0 < y1``.
    Returns:
      ``(x0, y0, x1, y1)``.
    Raises:
      argparse.ArgumentTypeError: malformed or empty box.
    """
    try:
        box = tuple(float(p) for p in s.split(","))
        if len(box) != 4:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box wants x0,y0,x1,y1, got {s!r}") from None
    try:
        check_boxes(box, "--box")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return box
