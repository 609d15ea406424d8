"""``crisiswatch templates seed``: load the starter templates into the database."""

from __future__ import annotations

import asyncio

from alerts.templates.seeds import seed_templates
from core.clock import SystemClock
from core.db import make_engine, make_sessionmaker, unit_of_work


def seed_templates_blocking(url: str) -> list[str]:
    async def run() -> list[str]:
        engine = make_engine(url)
        try:
            async with unit_of_work(make_sessionmaker(engine)) as session:
                return await seed_templates(session, SystemClock().now())
        finally:
            await engine.dispose()

    return asyncio.run(run())
