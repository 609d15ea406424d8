"""Escalation steps as APScheduler jobs in a persistent SQLAlchemy job store.

Every scheduled step is one APScheduler ``Job`` (a date trigger at the step's time) in
APScheduler's ``SQLAlchemyJobStore``, in the ``alert_step_jobs`` table of the alerts
database, so a restart finds every pending step. The job's id carries the incident's
escalation token: an ack/resolve rotates the token, which makes the job void (it still
runs, and does nothing). The service's tick takes the due jobs from the store by the
injected clock (so a ManualClock drives the whole timeline in tests), runs each step in
its own transaction, and removes the job after the commit: a crash in between runs the
job again, where the token no longer matches, so a step is never repeated.

The job store is synchronous (it is APScheduler 3's); its calls run in a worker thread so
that a SQLite write lock held by an async transaction never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime

from apscheduler.job import Job
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from alerts.models import STEP_JOBS_TABLE

ALIAS = "escalation-steps"
_SYNC_DRIVERS = {"sqlite+aiosqlite": "sqlite", "postgresql+asyncpg": "postgresql+psycopg"}


_LIBPQ_OPTIONS = {"ssl": "sslmode", "timeout": "connect_timeout"}
"""asyncpg's URL options that libpq (psycopg) takes under another name; the rest of
asyncpg's (``command_timeout``, ``prepared_statement_cache_size``, ...) it refuses."""
_SSL_WORDS = {"true": "require", "false": "disable"}


def sync_url(url: str) -> str:
    """The synchronous driver URL for the job store (same database). An asyncpg URL's
    options are translated for psycopg: ``?ssl=require`` (what the config check asks for)
    is libpq's ``sslmode=require``; options psycopg does not take are left out (they
    refused the connection: the alerter did not start)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    driver = _SYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    if parsed.drivername != "postgresql+asyncpg":
        return parsed.set(drivername=driver).render_as_string(hide_password=False)
    query: dict[str, str | tuple[str, ...]] = {}
    for name, value in parsed.query.items():
        if name in _LIBPQ_OPTIONS:
            word = value if isinstance(value, str) else value[-1]
            query[_LIBPQ_OPTIONS[name]] = _SSL_WORDS.get(word.lower(), word)
    return parsed.set(drivername=driver, query=query).render_as_string(hide_password=False)


def run_step_job(incident_id: int, token: str) -> None:
    """The job's callable, for the record only: the alerts tick runs due steps itself
    (with the injected clock), it never lets APScheduler call this."""
    raise RuntimeError(f"escalation step of incident {incident_id} must be run by the alerts tick")


@dataclass(frozen=True)
class StepJob:
    id: str
    incident_id: int
    token: str
    run_at: datetime


def job_id(incident_id: int, token: str) -> str:
    return f"escalation:{incident_id}:{token}"


class StepJobs:
    def __init__(self, database_url: str) -> None:
        self._url = sync_url(database_url)
        self._scheduler = AsyncIOScheduler()  # never started: the jobs' owner of record
        self._store: SQLAlchemyJobStore | None = None

    def _started(self) -> SQLAlchemyJobStore:
        if self._store is None:
            store = SQLAlchemyJobStore(url=self._url, tablename=STEP_JOBS_TABLE)
            store.start(self._scheduler, ALIAS)
            self._store = store
        return self._store

    async def start(self) -> None:
        await asyncio.to_thread(self._started)

    def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.shutdown()

    def _add(self, incident_id: int, token: str, at: datetime) -> None:
        job = Job(
            self._scheduler,
            id=job_id(incident_id, token),
            func=run_step_job,
            args=(),
            kwargs={"incident_id": incident_id, "token": token},
            trigger=DateTrigger(run_date=at),
            executor="default",
            name=f"escalation step of incident {incident_id}",
            misfire_grace_time=None,
            coalesce=True,
            max_instances=1,
            next_run_time=at,
        )
        store = self._started()
        with contextlib.suppress(ConflictingIdError):  # already scheduled: idempotent
            store.add_job(job)

    async def schedule(self, incident_id: int, token: str, at: datetime) -> None:
        await asyncio.to_thread(self._add, incident_id, token, at)

    def _due(self, now: datetime) -> list[StepJob]:
        return [_step(job) for job in self._started().get_due_jobs(now)]

    async def due(self, now: datetime) -> list[StepJob]:
        return await asyncio.to_thread(self._due, now)

    def _all(self) -> list[StepJob]:
        return [_step(job) for job in self._started().get_all_jobs()]

    async def all(self) -> list[StepJob]:
        return await asyncio.to_thread(self._all)

    def _remove(self, ident: str) -> None:
        with contextlib.suppress(JobLookupError):
            self._started().remove_job(ident)

    async def done(self, ident: str) -> None:
        await asyncio.to_thread(self._remove, ident)


def _step(job: Job) -> StepJob:
    return StepJob(
        id=job.id,
        incident_id=int(job.kwargs["incident_id"]),
        token=str(job.kwargs["token"]),
        run_at=job.next_run_time,
    )
