"""An API with one key per role, and helpers to put incidents and templates in it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.config import AlertsConfig
from alerts.incidents import apply_signal
from alerts.templates import service
from api.app import create_app
from api.auth import ROLES
from api.runtime import Role, Runtime
from api.settings import ApiConfig, ApiKeyConfig, AuthThrottleConfig, Settings
from core.clock import ManualClock
from core.db import unit_of_work
from core.events import HeatFeatures, Signal, WatchMatch
from core.settings import DatabaseConfig
from tests.fakes import FakeClassifier

KEYS = {role: f"{role}-key-0123456789abcdef" for role in ROLES}
SECOND_LEGAL_KEY = "second-legal-key-0123456789"
BODY = "{{ brand }} is looking into posts about {{ product }}: {{ incident.title }}"
_serial = itertools.count(1)


def key_headers(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


def role_app(
    tmp_path: Path,
    clock: ManualClock,
    *,
    extra_keys: list[ApiKeyConfig] | None = None,
    throttle: AuthThrottleConfig | None = None,
) -> tuple[Runtime, FastAPI]:
    """The embedded API on SQLite in ``tmp_path`` (the same file each call), not started."""
    keys = [ApiKeyConfig(name=role, key=key, role=role) for role, key in KEYS.items()]
    keys.append(ApiKeyConfig(name="legal-2", key=SECOND_LEGAL_KEY, role="legal"))
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'roles.db'}"),
        api=ApiConfig(
            keys=keys + (extra_keys or []), auth_throttle=throttle or AuthThrottleConfig()
        ),
        alerts=AlertsConfig(),
    )
    return api_app(settings, clock)


def api_app(settings: Settings, clock: ManualClock) -> tuple[Runtime, FastAPI]:
    """The API role of ``settings`` (database migrated at start, a fake classifier), not
    started."""
    runtime = Runtime(
        settings,
        roles=frozenset({Role.API}),
        clock=clock,
        classifier=FakeClassifier(),
        migrate=True,
    )
    return runtime, create_app(runtime)


@asynccontextmanager
async def served(
    runtime: Runtime, app: FastAPI
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """``app`` started (its lifespan), behind an in-process client."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            yield client, runtime


@asynccontextmanager
async def api_on(url: str, clock: ManualClock) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """The API with one key per role on the database at ``url`` (migrated at start)."""
    keys = [ApiKeyConfig(name=role, key=key, role=role) for role, key in KEYS.items()]
    keys.append(ApiKeyConfig(name="legal-2", key=SECOND_LEGAL_KEY, role="legal"))
    settings = Settings(
        database=DatabaseConfig(url=url), api=ApiConfig(keys=keys), alerts=AlertsConfig()
    )
    async with served(*api_app(settings, clock)) as both:
        yield both


@asynccontextmanager
async def every_stage(
    settings: Settings, clock: ManualClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """Every stage of ``settings`` in one process (the embedded mode, a fake classifier,
    database migrated at start), started, behind an in-process client."""
    runtime = Runtime(settings, clock=clock, classifier=FakeClassifier(), migrate=True)
    async with served(runtime, create_app(runtime)) as both:
        yield both


@asynccontextmanager
async def role_api(
    tmp_path: Path,
    clock: ManualClock,
    *,
    extra_keys: list[ApiKeyConfig] | None = None,
    throttle: AuthThrottleConfig | None = None,
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    async with served(*role_app(tmp_path, clock, extra_keys=extra_keys, throttle=throttle)) as both:
        yield both


async def open_incident(
    runtime: Runtime, clock: ManualClock, *, tier: int = 2, watch: str = "acme",
    title_text: str = "40 negative posts", drill: bool = False,
) -> int:  # fmt: skip
    signal = make_signal(clock, tier=tier, watch=watch, title_text=title_text, drill=drill)
    assert runtime.sessions is not None
    return await add_incident(runtime.sessions, signal, runtime.settings.alerts, clock)


def make_signal(
    clock: ManualClock, *, tier: int = 2, watch: str = "acme",
    title_text: str = "40 negative posts", drill: bool = False,
) -> Signal:  # fmt: skip
    n = next(_serial)
    signal = Signal(
        id=f"{watch}:s{n}#1",
        story_id=f"{watch}:s{n}",
        story_root=f"bluesky:s{n}",
        watch=WatchMatch(id=watch, brand="Acme"),
        tier=tier,
        previous_tier=0,
        spread=tier,
        heat=HeatFeatures(
            mentions=40,
            mentions_window=30,
            window_minutes=10,
            unique_authors=25,
            reach=50_000,
            negative_share=0.8,
        ),
        explanation=title_text,
        at=clock.now(),
        drill=drill,
    )
    return signal


async def add_incident(
    sessions: async_sessionmaker[AsyncSession], signal: Signal, config: AlertsConfig,
    clock: ManualClock,
) -> int:  # fmt: skip
    async with unit_of_work(sessions) as session:
        incident = await apply_signal(session, signal, config, clock)
        assert incident is not None
        return incident.id


async def make_template(
    runtime: Runtime,
    clock: ManualClock,
    *,
    until: str = "draft",
    body: str = BODY,
    kind: str = "holding_statement",
    lang: str = "en",
    tiers: tuple[int, int] = (1, 3),
    fmt: str = "text",
) -> int:
    """A template whose version 1 is taken (by 'author' and 'legal-2') up to ``until``."""
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        template = await service.create_template(
            session,
            name=f"t-{next(_serial)}",
            kind=kind,
            lang=lang,
            min_tier=tiers[0],
            max_tier=tiers[1],
            fmt=fmt,
            body=body,
            actor="author",
            now=clock.now(),
        )
        steps = {"draft": [], "in_review": ["submit"], "approved": ["submit", "approve"]}
        steps["retired"] = [*steps["approved"], "retire"]
        for action in steps[until]:
            await service.transition(
                session, template.id, 1, action, actor="legal-2", now=clock.now()
            )
        return template.id
