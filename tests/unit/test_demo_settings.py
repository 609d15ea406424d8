"""The demo's settings: its watch and stream added; its detector starts afresh each run
(the demo tells the same crisis in the same words every time: with the last run's stories
kept, the new crisis would join the old story, already alerted, and show nothing)."""

from __future__ import annotations

from alerts.config import AlertsConfig
from api.serve import DEMO_WATCH_ID, _banner, with_demo
from api.settings import Settings
from sentiment.detector.config import DetectorConfig


def test_the_demo_adds_its_watch_and_keeps_its_detector_in_memory() -> None:
    settings = with_demo(Settings())
    assert [w.id for w in settings.listener.watches] == [DEMO_WATCH_ID]
    assert settings.listener.sources.demo is not None
    assert settings.detector.state_store == "memory"
    assert not settings.detector.durable_state("memory", journaled=True)


def test_a_state_store_set_on_purpose_is_kept() -> None:
    chosen = Settings(detector=DetectorConfig(state_store="database"))
    assert with_demo(chosen).detector.state_store == "database"


def test_without_the_demo_the_embedded_detector_keeps_its_state() -> None:
    assert Settings().detector.durable_state("memory", journaled=True)
    assert not Settings().detector.durable_state("memory", journaled=False)


def test_the_banner_does_not_send_every_run_to_incident_1() -> None:
    # The database keeps its incidents across runs and the demo tells its crisis again on
    # each one, so from the second run on its incident is 3, 5, ...: the banner's ack
    # command named incident 1, which by then is resolved (409) or an old story.
    text = _banner(with_demo(Settings()), "cw_test", "127.0.0.1", 8000)
    assert "/incidents/1/" not in text
    assert "/incidents/N/ack" in text
    assert "new each run" in text


def test_the_banner_says_where_alerts_go() -> None:
    text = _banner(with_demo(Settings()), "cw_test", "127.0.0.1", 8000)
    assert "every team is routed to the console channel" in text
    # a --config routing to its own chat: the banner no longer says "below"
    alerts = AlertsConfig.model_validate(
        {
            "channels": {
                "pr-slack": {"type": "slack", "webhook_url": "https://hooks.slack.com/x"},
                "log": {"type": "console"},
            },
            "teams": {"pr": {"channels": ["pr-slack", "log"]}},
            "routes": {1: ["pr"], 2: ["pr"], 3: ["pr"]},
        }
    )
    text = _banner(with_demo(Settings(alerts=alerts)), "cw_test", "127.0.0.1", 8000)
    assert "every team is routed to the console channel" not in text
    assert "alerts go to the configured channels: log, pr-slack." in text
