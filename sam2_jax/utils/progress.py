"""Progress bars like the official predictor's (``tqdm(processing_order, desc="propagate in video")``)."""

import sys
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


def with_progress(items: Iterator[T], total: int | None, desc: str, enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while a tqdm bar on stderr counts them (one tick per item, as each is yielded).

    The bar is closed however the loop ends (exhausted, ``break``, an error), so a finished run never shows time
    remaining; a loop left early shows the count it reached.
    """
    if not enabled:
        yield from items
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, file=sys.stderr, smoothing=0.1) as bar:
        for item in items:
            bar.update(1)
            yield item
