"""``crisiswatch templates seed``: load the starter templates into the database (audited)."""

from __future__ import annotations

import asyncio

from alerts.templates.seeds import seed_templates
from api import audit
from api.auth import Principal
from core.clock import SystemClock
from core.db import make_engine, make_sessionmaker, unit_of_work

CLI = Principal("crisiswatch templates seed", "cli")


def seed_templates_blocking(url: str) -> list[str]:
    async def run() -> list[str]:
        engine = make_engine(url)
        now = SystemClock().now()
        try:
            async with unit_of_work(make_sessionmaker(engine)) as session:
                added = await seed_templates(session, now)
                if added:
                    audit.record(
                        session, CLI, "template.seed", "template", ",".join(added)[:255], at=now,
                        after={"names": added},
                    )  # fmt: skip
                return added
        finally:
            await engine.dispose()

    return asyncio.run(run())
