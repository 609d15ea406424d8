"""``publish_many`` on a real broker when a send is refused mid-batch: one error that says
what of the batch is written, and exactly that is in the topic.

(The cases of failed acknowledgements and of cancellation, which a broker does not produce
on demand, are in ``tests/unit/test_bus_publish_many.py`` with a fake producer.)
"""

from __future__ import annotations

import pytest

from core.bus.kafka import KafkaBus, PublishIncomplete
from core.events import Mention
from core.settings import BusConfig
from tests.integration.test_bus_contract import T0, Collector, KafkaHarness, mention


@pytest.mark.kafka
async def test_kafka_a_record_refused_mid_batch_raises_one_error_and_the_rest_is_not_sent(
    kafka_config: BusConfig,
) -> None:
    harness = KafkaHarness(kafka_config)
    try:
        bus = harness.bus()
        assert isinstance(bus, KafkaBus)
        got = Collector()
        bus.subscribe("mentions", "reader", got)
        await bus.start()
        # over the producer's max_request_size (1 MiB): its send raises at once
        huge = Mention.model_construct(id="test:huge", source="test", text="x" * 1_100_000)
        huge = huge.model_copy(update={"created_at": T0})
        batch = [("k", mention(0)), ("k", mention(1)), ("k", huge), ("k", mention(3))]
        with pytest.raises(PublishIncomplete) as caught:
            await bus.publish_many("mentions", batch)
        error = caught.value
        assert (error.total, error.acknowledged, error.unknown, error.unsent) == (4, 2, 0, 2)
        assert "2 of 4 acknowledged (written)" in str(error)
        assert "the send of record 3 raised" in str(error)
        assert "MessageSizeTooLargeError" in str(error)

        await bus.publish("mentions", mention("after"), key="k")  # the same partition
        await got.wait_for(3)
        # what it said is written is, and nothing of the batch after the refused record
        assert got.ids == ["test:0", "test:1", "test:after"]
    finally:
        await harness.close()
