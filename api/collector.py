"""Python's cyclic garbage collector, tuned for a long-running pipeline process.

Every event the pipeline handles allocates a few dozen container objects (a pydantic
model, its dicts and lists, a bus record, tuples). With CPython's default young-generation
threshold (700 allocations) the collector runs hundreds of times a second under load and
walks the objects that are about to die anyway; in the embedded process on two cores that
was 13 % of the event loop's CPU (15,000 mentions: 0.46 s of 3.5 s). A threshold of
10,000 runs it 25 times less often (0.07 s) at the price of a few thousand more young
objects held between runs. Set once, by crisiswatch's long-running commands
(``crisiswatch run`` and the role commands, ``crisiswatch replay`` and ``bench``), never
at import. The classifier's child process (``sentiment.process``, started with ``spawn``)
keeps Python's default: it allocates little per text.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def tune_collector(young_threshold: int) -> None:
    """Set the young generation's threshold (``gc_young_threshold``); 0 leaves Python's
    default. The older generations keep their thresholds."""
    if young_threshold <= 0:
        return
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
    log.debug("garbage collector: young generation threshold %d", young_threshold)
