"""Alert latency on the embedded setup: decisive mention in -> chat HTTP call done.

Runs the whole embedded pipeline in one process (memory bus, SQLite file, listener,
scorer, detector, alerter, API) on wall time, pushes ``--crises`` concurrent crisis
streams (one watch each, every stream a complaint that spreads to tier 3) through the
signed ingest webhook, and lets the alerter post signed alerts to a real local HTTP
receiver (uvicorn on 127.0.0.1, one path per team channel).

Latency of one alert = the delivery's ``sent_at`` (recorded after the receiver answered)
minus ``trigger_received_at`` (when the mention that decided the tier entered the
pipeline), for every first alert of an incident at a tier (reasons ``alert`` and
``upgrade``), on every channel. The receiver verifies every signature. Prints a table;
writes JSON. The push rate (``--batch`` mentions every ``--pause`` s) is the load: the
latency includes any backlog the pipeline builds up.

    PYTHONPATH=. python bench/alert_latency.py --crises 20 --out bench/alert_latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from alerts.config import AlertsConfig, TeamConfig, WebhookChannelConfig
from alerts.models import Delivery, IncidentEvent
from api.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from bench.benchlib import pct, summary
from core.bus.memory import MemoryBus
from core.events import Mention
from core.settings import DatabaseConfig
from listener.config import ListenerConfig, WatchConfig, WebhookConfig
from listener.webhook import signed_headers
from tests.fakes import FakeClassifier
from tests.support import INGEST_SECRET, RECEIVER_SECRET, chatter, crisis_stream, http_receiver

TEAMS = ("customer_service", "pr", "marketing", "legal", "executives")


def settings(db_url: str, receiver_url: Any, brands: list[str]) -> Settings:
    return Settings(
        database=DatabaseConfig(url=db_url),
        listener=ListenerConfig(
            watches=[WatchConfig(id=b.lower(), brand=b, terms=[b.lower()]) for b in brands],
            webhook=WebhookConfig(enabled=True, secret=INGEST_SECRET),
        ),
        alerts=AlertsConfig(
            channels={
                t: WebhookChannelConfig(url=receiver_url(f"/{t}"), secret=RECEIVER_SECRET)
                for t in TEAMS
            },
            teams={t: TeamConfig(channels=[t]) for t in TEAMS},
        ),
    )


def stream_for(brand: str, start: datetime, k: int) -> list[Mention]:
    out = []
    for m in chatter(start) + crisis_stream(start + timedelta(minutes=1)):
        out.append(
            m.model_copy(
                update={
                    "id": f"{m.id}-{k}",
                    "text": m.text.replace("Acme", brand).replace("acme", brand.lower()),
                    "repost_of": f"{m.repost_of}-{k}" if m.repost_of else None,
                    "reply_to": f"{m.reply_to}-{k}" if m.reply_to else None,
                }
            )
        )
    return sorted(out, key=lambda m: m.created_at)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    brands = [f"Brand{k:02d}" for k in range(args.crises)]
    with tempfile.TemporaryDirectory() as tmp:
        async with http_receiver(lambda: datetime.now(UTC)) as receiver:
            s = settings(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", receiver.url, brands)
            classifier = None if args.model else FakeClassifier()
            runtime = Runtime(s, classifier=classifier, migrate=True)
            app = create_app(runtime)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
                    start = datetime.now(UTC) - timedelta(minutes=10)
                    streams = [stream_for(b, start, k) for k, b in enumerate(brands)]
                    merged = sorted((m for st in streams for m in st), key=lambda m: m.created_at)
                    t0 = time.perf_counter()
                    for i in range(0, len(merged), args.batch):
                        batch = merged[i : i + args.batch]
                        body = json.dumps(
                            {"mentions": [m.model_dump(mode="json") for m in batch]}
                        ).encode()
                        headers = signed_headers(INGEST_SECRET, body, datetime.now(UTC))
                        headers["content-type"] = "application/json"
                        r = await client.post("/ingest/mentions", content=body, headers=headers)
                        r.raise_for_status()
                        await asyncio.sleep(args.pause)
                    assert isinstance(runtime.bus, MemoryBus)
                    await runtime.bus.join()
                    assert runtime.alerter is not None
                    await runtime.alerter.sent()
                    await runtime.alerter.deliver()
                    elapsed = time.perf_counter() - t0
                    rows, events = await alert_rows(runtime)
        received = len(receiver.requests)
    measured = alert_latencies(rows, events)
    result: dict[str, Any] = {
        "what": "decisive mention received -> alert HTTP call to the chat receiver done",
        "setup": "embedded: memory bus, SQLite, webhook channels to a local uvicorn receiver",
        "classifier": "transformer model (CPU)" if args.model else "fake (deterministic)",
        "crises": args.crises,
        "mentions": sum(len(st) for st in streams),
        "alerts_measured": measured["alerts_measured"],
        "not_sent": measured["not_sent"],
        "receiver_requests": received,
        "push_rate_per_s": round(sum(len(st) for st in streams) / elapsed, 1),
        "push_seconds": round(elapsed, 2),
        **{k: v for k, v in measured.items() if k not in ("alerts_measured", "not_sent")},
    }
    return result


async def alert_rows(runtime: Runtime) -> tuple[list[Delivery], list[IncidentEvent]]:
    """Every first alert of an incident at a tier, and the incidents' open/upgrade events."""
    assert runtime.sessions is not None
    async with runtime.sessions() as session:
        rows = list(
            await session.scalars(
                select(Delivery).where(
                    Delivery.reason.in_(("alert", "upgrade")),
                    Delivery.trigger_received_at.is_not(None),
                )
            )
        )
        events = list(
            await session.scalars(
                select(IncidentEvent).where(IncidentEvent.kind.in_(("opened", "upgraded")))
            )
        )
    return rows, events


def alert_latencies(rows: list[Delivery], events: list[IncidentEvent]) -> dict[str, Any]:
    """Latency summaries: decisive mention in -> HTTP call done, overall and by tier, and
    split at the incident's open/upgrade (upstream stages | alerting)."""
    sent = [r for r in rows if r.sent_at is not None and r.trigger_received_at is not None]
    latencies = [
        (r.sent_at - r.trigger_received_at).total_seconds()  # type: ignore[operator]
        for r in sent
    ]
    applied = {(e.incident_id, int(e.detail["tier"])): e.at for e in events}
    upstream = [
        (applied[(r.incident_id, r.tier)] - r.trigger_received_at).total_seconds()  # type: ignore[operator]
        for r in sent
        if (r.incident_id, r.tier) in applied
    ]
    alerting = [
        (r.sent_at - applied[(r.incident_id, r.tier)]).total_seconds()  # type: ignore[operator]
        for r in sent
        if (r.incident_id, r.tier) in applied
    ]
    by_tier: dict[str, list[float]] = {}
    for r, lat in zip(sent, latencies, strict=True):
        by_tier.setdefault(str(r.tier), []).append(lat)
    return {
        "alerts_measured": len(latencies),
        "not_sent": len(rows) - len(sent),
        "overall": summary(latencies),
        "by_tier": {t: summary(v) for t, v in sorted(by_tier.items())},
        "mention_to_incident_update": summary(upstream),
        "incident_update_to_http_done": summary(alerting),
        "goal_p99_under_2s": bool(latencies) and pct(latencies, 99) < 2.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crises", type=int, default=20, help="concurrent crisis streams")
    parser.add_argument("--batch", type=int, default=25, help="mentions per ingest request")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between requests")
    parser.add_argument("--model", action="store_true", help="score with the real model")
    parser.add_argument("--out", type=Path, default=Path("bench/alert_latency.json"))
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(f"{result['what']}\n{result['setup']}; classifier: {result['classifier']}")
    print(
        f"{result['crises']} crises, {result['mentions']} mentions "
        f"({result['push_rate_per_s']}/s), {result['alerts_measured']} alert deliveries "
        f"measured, {result['not_sent']} not sent"
    )
    print(f"{'tier':>6} {'n':>5} {'p50 s':>8} {'p90 s':>8} {'p99 s':>8} {'max s':>8}")
    rows = [("all", result["overall"])] + [(t, v) for t, v in result["by_tier"].items()]
    rows += [
        ("upstr", result["mention_to_incident_update"]),
        ("alert", result["incident_update_to_http_done"]),
    ]
    for name, s in rows:
        if s:
            print(
                f"{name:>6} {s['n']:>5} {s['p50_s']:>8.3f} {s['p90_s']:>8.3f} "
                f"{s['p99_s']:>8.3f} {s['max_s']:>8.3f}"
            )
    print("(upstr: mention in -> incident opened/upgraded; alert: that -> HTTP call done)")
    print(f"goal p99 < 2 s: {'met' if result['goal_p99_under_2s'] else 'NOT met'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    sys.exit(0)


if __name__ == "__main__":
    main()
