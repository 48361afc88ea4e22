"""Compile every numba kernel once so the image's cache holds them (``python -m container.warmup``)."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Run each kernel on tiny inputs: decoders, FM and WALS training and scoring."""
    from algorithm import warmup as algorithm_warmup
    from container.formats import chunking, recordio, registry, triplets

    for name, step in (("recordio", recordio.warm_up), ("stream chunking", chunking.warm_up),
                       ("text", registry.warm_up), ("triplets", triplets.warm_up),
                       ("rows", algorithm_warmup.warm_up_rows), ("fm", algorithm_warmup.warm_up_fm),
                       ("fm replica", algorithm_warmup.warm_up_fm_replica),
                       ("fm top-k", algorithm_warmup.warm_up_fm_top_k), ("wals", algorithm_warmup.warm_up_wals)):
        started = time.monotonic()
        step()
        log.info("warmed %s kernels in %.1f s", name, time.monotonic() - started)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warm_up()
