"""Channel, team and person names are stored by name in columns of 255 characters: a longer
one is a config error (named, with the limit, also by ``check-config``), not a signal that
PostgreSQL refuses forever; the longest allowed one works end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.config import MAX_NAME, AlertsConfig
from alerts.models import Delivery, IncidentEvent
from alerts.service import AlertService
from api.cli import main
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.metrics import Metrics
from tests.support import tier_signal

HOOK = {"type": "webhook", "secret": "signing-secret-0123456789", "url": "https://h.example/x"}


def config_data(channel: str = "direct", team: str = "pr", person: str = "olga") -> dict[str, Any]:
    rota = {"start": "2026-01-01T09:00:00+00:00", "people": [person]}
    return {
        "channels": {"room": HOOK, channel: HOOK},
        "people": {person: {"channels": [channel]}},
        "teams": {team: {"channels": ["room"], "rota": rota}},
        "routes": {"teams": [team]},
        "sla": {},
        "playbooks": {},
    }


@pytest.mark.parametrize(
    ("field", "section"), [("channel", "channels"), ("team", "teams"), ("person", "people")]
)
def test_a_name_longer_than_its_column_is_a_config_error(field: str, section: str) -> None:
    name = "n" * (MAX_NAME + 1)
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate(config_data(**{field: name}))
    message = str(info.value)
    assert f"{section}: the name {'n' * 60!r}… is 256 characters long" in message
    assert "at most 255 are allowed" in message
    AlertsConfig.model_validate(config_data(**{field: "n" * MAX_NAME}))  # the limit itself


def test_check_config_names_the_long_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "x" * 300
    path = tmp_path / "long.yaml"
    path.write_text(
        "alerts:\n"
        f"  channels: {{room: {{type: console}}, {name}: {{type: console}}}}\n"
        f"  teams: {{pr: {{channels: [room, {name}]}}}}\n"
        "  routes: {teams: [pr]}\n"
        "  playbooks: {}\n"
    )
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "channels: the name 'xxxx" in err and "300 characters long; at most 255" in err


async def test_the_longest_names_allowed_are_stored(
    any_sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    channel, team = "c" * MAX_NAME, "t" * MAX_NAME
    config = AlertsConfig.model_validate(
        config_data(channel=channel, team=team, person="p" * MAX_NAME)
    )
    metrics = Metrics()
    transport = httpx.MockTransport(lambda _: httpx.Response(200))
    async with httpx.AsyncClient(transport=transport) as http:
        bus = MemoryBus(metrics=metrics)
        service = AlertService(bus, any_sessions, config, http, clock, metrics)
        try:
            await service.handle_signals(
                [tier_signal(clock.now(), signal_id="s", story_id="s", tier=2)]
            )
            await service.sent()
            clock.advance(10 * 60)  # the on-call person's direct channel: the long one
            report = await service.tick()
        finally:
            service.jobs.close()
    assert report.failed == () and report.escalated == 1
    async with any_sessions() as session:
        channels = set(await session.scalars(select(Delivery.channel)))
        kinds = set(await session.scalars(select(IncidentEvent.kind)))
    assert channels == {"room", channel} and "escalated" in kinds
