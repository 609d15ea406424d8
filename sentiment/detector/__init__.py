"""The detector stage: stories, spread heat, tier policy, and the service that emits Signals.

Modules, one concept each:

* ``config``   -- ``DetectorConfig`` (section ``detector``): every threshold.
* ``neardup``  -- MinHash/LSH over character 3-shingles (near-duplicate texts).
* ``stories``  -- which story a mention belongs to (cascade links, near duplicates), bounded.
* ``cues``     -- complaint-cue lexicon matching.
* ``heat``     -- per-story rolling heat in event time, the watch's rate baseline, the
  predicted final size.
* ``evidence`` -- the representative mentions a Signal carries.
* ``policy``   -- pure functions: spread level, crisis tier, hysteresis, explanation.
* ``detector`` -- ``Detector``: the synchronous core (``observe(scored) -> list[Signal]``).
* ``service``  -- ``DetectorService``: the bus stage around ``Detector``.
"""
