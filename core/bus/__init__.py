"""The bus: how stages talk. One contract, two implementations (memory, Kafka)."""

from core.bus.base import (
    BatchGivenBack,
    Bus,
    BusStartError,
    DeadLetter,
    EventHandler,
    PermanentError,
    RetryPolicy,
    Subscription,
    decode_event,
    encode_event,
)
from core.bus.halt import ConsumerHalted, Halt

__all__ = [
    "BatchGivenBack",
    "Bus",
    "BusStartError",
    "ConsumerHalted",
    "DeadLetter",
    "EventHandler",
    "Halt",
    "PermanentError",
    "RetryPolicy",
    "Subscription",
    "decode_event",
    "encode_event",
]
