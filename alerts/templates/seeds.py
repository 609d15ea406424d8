"""The starter templates (``seeds.yaml``), loaded as drafts that need legal review."""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.templates import service
from alerts.templates.models import ResponseTemplate

SEED_ACTOR = "seed"
SEED_NOTE = "starter text shipped with crisiswatch: needs legal review before use"


class SeedTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str
    lang: str
    min_tier: int = Field(ge=0, le=3)
    max_tier: int = Field(ge=0, le=3)
    format: str = "text"
    description: str = ""
    body: str


def load_seeds() -> list[SeedTemplate]:
    text = resources.files("alerts.templates").joinpath("seeds.yaml").read_text("utf-8")
    raw: list[dict[str, Any]] = yaml.safe_load(text)
    return [SeedTemplate.model_validate(item) for item in raw]


async def seed_templates(session: AsyncSession, now: datetime) -> list[str]:
    """Add the starter templates whose names are not taken yet; return the names added."""
    taken = set(await session.scalars(select(ResponseTemplate.name)))
    added = []
    for seed in load_seeds():
        if seed.name in taken:
            continue
        await service.create_template(
            session,
            name=seed.name,
            kind=seed.kind,
            lang=seed.lang,
            min_tier=seed.min_tier,
            max_tier=seed.max_tier,
            fmt=seed.format,
            body=seed.body,
            description=seed.description,
            note=SEED_NOTE,
            actor=SEED_ACTOR,
            now=now,
        )
        added.append(seed.name)
    return added
