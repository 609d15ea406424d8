"""The escalation job store opens the same database through a synchronous driver: an
asyncpg URL's options are translated for psycopg (``?ssl=`` is libpq's ``sslmode``), and
those psycopg does not take are left out. ``?ssl=require`` (what the config check tells
an operator to write) made psycopg refuse the connection: the alerter did not start."""

from __future__ import annotations

from alerts.jobs import StepJobs, sync_url


def test_an_asyncpg_url_is_translated_for_psycopg() -> None:
    assert (
        sync_url("postgresql+asyncpg://cw:p%40ss@db:5432/cw?ssl=require&command_timeout=10")
        == "postgresql+psycopg://cw:p%40ss@db:5432/cw?sslmode=require"
    )
    assert (
        sync_url("postgresql+asyncpg://cw@db/cw?prepared_statement_cache_size=0&timeout=5")
        == "postgresql+psycopg://cw@db/cw?connect_timeout=5"
    )
    assert sync_url("postgresql+asyncpg://cw@db/cw?ssl=true").endswith("?sslmode=require")
    assert sync_url("sqlite+aiosqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert sync_url("sqlite+aiosqlite:///x.db") == "sqlite:///x.db"


async def test_the_job_store_opens_a_url_with_asyncpg_options(pg_url: str) -> None:
    jobs = StepJobs(f"{pg_url}?ssl=disable&command_timeout=10&prepared_statement_cache_size=0")
    try:
        await jobs.start()
    finally:
        jobs.close()
