"""A tier left without an escalation policy or an SLA clock is said, one line per tier.

``alerts.escalation`` and ``alerts.sla`` given in the config replace the default maps whole
(not merged, so that existing configs keep their meaning): ``escalation: {3: my-policy}``
left tiers 1 and 2 without escalation, and ``CRISISWATCH_ALERTS__ESCALATION__1=null``
dropped tiers 2 and 3, silently. ``check-config`` and the alerter's start-up warn instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import yaml

from alerts.config import AlertsConfig
from api.cli import main
from api.runtime import Role, Runtime
from api.settings import Settings, load_settings
from core.settings import DatabaseConfig


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [n for n in os.environ if n.startswith("CRISISWATCH_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_the_defaults_leave_no_tier_without_escalation_or_sla() -> None:
    config = AlertsConfig()
    assert config.escalation_warnings() == []
    assert config.sla_warnings() == []


def test_a_partial_escalation_map_names_each_tier_left_out() -> None:
    config = AlertsConfig.model_validate({"escalation": {3: "tier-3"}})
    warnings = config.escalation_warnings()
    assert len(warnings) == 2
    for tier, warning in zip((1, 2), warnings, strict=True):
        assert warning.startswith(f"tier {tier} has no escalation policy")
        assert "alerts.escalation leaves it out" in warning
        assert f"a missed alerts.sla.{tier} deadline escalates to no one" in warning
        assert f"set alerts.escalation.{tier}: <policy>" in warning
        assert "tier-1, tier-2, tier-3" in warning  # the policies there are to choose from


def test_a_null_escalation_from_the_environment_warns_for_every_tier(
    environ: pytest.MonkeyPatch,
) -> None:
    environ.setenv("CRISISWATCH_ALERTS__ESCALATION__1", "null")
    settings = load_settings()  # loads: merging is not changed
    assert settings.alerts.escalation == {1: None}
    warnings = settings.alerts.escalation_warnings()
    assert [w.split(":")[0] for w in warnings] == [
        f"tier {tier} has no escalation policy" for tier in (1, 2, 3)
    ]
    assert "alerts.escalation.1 is null" in warnings[0]
    assert all("alerts.escalation leaves it out" in w for w in warnings[1:])


def test_a_partial_sla_map_names_each_tier_left_out() -> None:
    config = AlertsConfig.model_validate(
        {"sla": {3: {"target": "PT10M", "met_by": "acknowledged"}}}
    )
    warnings = config.sla_warnings()
    assert [w.split(":")[0] for w in warnings] == [
        "tier 1 has no SLA clock",
        "tier 2 has no SLA clock",
    ]
    assert warnings[0].endswith("set alerts.sla.1") and warnings[1].endswith("set alerts.sla.2")
    assert "private reply in 2:00:00" in warnings[0]
    # a tier with no SLA is not said to have a deadline that escalates to no one
    gaps = AlertsConfig.model_validate({"escalation": {}, "sla": {}}).escalation_warnings()
    assert len(gaps) == 3 and not any("deadline" in w for w in gaps)


def test_check_config_prints_one_warning_per_tier(
    tmp_path: Path, environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "crisiswatch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "alerts": {
                    "escalation": {3: "tier-3"},
                    "sla": {3: {"target": "PT10M", "met_by": "acknowledged"}},
                }
            }
        )
    )
    assert main(["check-config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    escalation = lines.index("  escalation: tier 1 -> none, tier 2 -> none, tier 3 -> tier-3")
    assert lines[escalation + 1].startswith("    warning: tier 1 has no escalation policy")
    assert lines[escalation + 2].startswith("    warning: tier 2 has no escalation policy")
    assert lines[escalation + 3].startswith("  SLA: tier 3 acknowledged in 0:10:00")
    assert lines[escalation + 4].startswith("    warning: tier 1 has no SLA clock")
    assert lines[escalation + 5].startswith("    warning: tier 2 has no SLA clock")
    assert sum("warning" in line for line in lines) == 4

    config.write_text(yaml.safe_dump({"alerts": {"escalation": {1: "tier-1"}}}))
    assert main(["check-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "set alerts.escalation.2" in out and "set alerts.escalation.3" in out
    assert "alerts.escalation.1" not in out


def test_the_defaults_print_no_warning(
    tmp_path: Path, environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "crisiswatch.yaml"
    config.write_text("alerts: {}\n")
    assert main(["check-config", str(config)]) == 0
    assert "warning" not in capsys.readouterr().out


async def test_the_alerter_warns_at_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        database=DatabaseConfig.model_validate({"url": f"sqlite+aiosqlite:///{tmp_path}/a.db"}),
        alerts=AlertsConfig.model_validate({"escalation": {2: "tier-2", 3: "tier-3"}}),
    )
    runtime = Runtime(settings, roles=frozenset({Role.ALERTER}), migrate=True)
    with caplog.at_level(logging.WARNING, logger="api.runtime"):
        await runtime.start()
        try:
            warned = [
                r.getMessage()
                for r in caplog.records
                if r.name == "api.runtime" and "escalation" in r.getMessage()
            ]
        finally:
            await runtime.stop()
    assert len(warned) == 1
    assert warned[0].startswith("tier 1 has no escalation policy")
    assert "set alerts.escalation.1" in warned[0]
