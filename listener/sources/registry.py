"""Build the sources named in the config. Explicit: one line per source kind, no discovery
by naming convention; a configured source that cannot be built stops start-up."""

from __future__ import annotations

from core.clock import Clock
from core.metrics import Metrics
from listener.config import SourcesConfig
from listener.sources.base import Source
from listener.sources.demo import DemoSource
from listener.sources.replay import ReplaySource


def build_sources(config: SourcesConfig, clock: Clock, metrics: Metrics) -> list[Source]:
    sources: list[Source] = []
    if config.replay is not None:
        sources.append(ReplaySource(config.replay, clock, metrics))
    if config.demo is not None:
        sources.append(DemoSource(config.demo, clock))
    return sources
