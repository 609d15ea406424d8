"""Downgrading below 0006 (the incident workflow) keeps the incidents 0006's statuses hold:
its downgrade put the old status check back over rows that were ``mitigating`` or
``closed`` and failed (IntegrityError), on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import text

from core.db import downgrade_database, make_engine, upgrade_database

INSERT = (
    "INSERT INTO incidents (watch_id, story_id, brand, tier, spread, status, title, "
    "explanation, opened_at, updated_at, alerted_at, escalation_level, escalation_token, "
    "drill, sla_warned, closed_at, closed_by) VALUES ('w', '{story}', 'b', 1, 1, '{status}', "
    "'t', 'e', '2026-01-01 00:00:00', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 0, 'x', "
    "false, 0, {closed_at}, {closed_by})"
)


async def test_downgrade_below_the_workflow_keeps_mitigating_and_closed_incidents(
    db_url: str,
) -> None:
    engine = make_engine(db_url)
    try:
        await upgrade_database(engine, "0006")
        async with engine.begin() as conn:
            for story, status, closed in (
                ("a", "open", False),
                ("b", "mitigating", False),
                ("c", "closed", True),
                ("d", "resolved", False),
            ):
                values = {
                    "story": story,
                    "status": status,
                    "closed_at": "'2026-01-02 00:00:00'" if closed else "NULL",
                    "closed_by": "'pr@acme'" if closed else "NULL",
                }
                await conn.execute(text(INSERT.format(**values)))
        await upgrade_database(engine)
        await downgrade_database(engine, "0005")
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT story_id, status, resolved_at IS NOT NULL, resolved_by "
                        "FROM incidents ORDER BY story_id"
                    )
                )
            ).all()
            version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        assert version == "0005"
        assert [tuple(row) for row in rows] == [
            ("a", "open", False, None),
            ("b", "acknowledged", False, None),  # still being worked on
            ("c", "resolved", True, "pr@acme"),  # over, with when and by whom
            ("d", "resolved", False, None),
        ]
        await upgrade_database(engine)  # and back up again
    finally:
        await engine.dispose()
