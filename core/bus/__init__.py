"""The bus: how stages talk. One contract, two implementations (memory, Kafka)."""

from core.bus.base import (
    Bus,
    DeadLetter,
    EventHandler,
    PermanentError,
    RetryPolicy,
    Subscription,
    decode_event,
    encode_event,
)

__all__ = [
    "Bus",
    "DeadLetter",
    "EventHandler",
    "PermanentError",
    "RetryPolicy",
    "Subscription",
    "decode_event",
    "encode_event",
]
