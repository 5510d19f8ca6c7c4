"""`python fault_boot.py serve <service> --port N`: the `leadflow` command with the crash points of
`leadflow.faults` wired in, for services the reliability tests kill at an exact instruction.

Where the kernel does not call a point itself, the Kafka client calls it:
- `consumer.db_committed` right before a consumer commits its offsets (the consume loop commits
  offsets only after the batch's transaction committed);
- `outbox.published` when a message the relay sent is acknowledged by the broker, before the
  relay's transaction marks its batch published.
"""

import inspect
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from leadflow import consumer, faults, outbox
from leadflow.cli import main

if "faults.reached" not in inspect.getsource(consumer):
    _commit = AIOKafkaConsumer.commit

    async def commit(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        faults.reached("consumer.db_committed")
        return await _commit(self, *args, **kwargs)

    AIOKafkaConsumer.commit = commit

if "faults.reached" not in inspect.getsource(outbox):
    _send = AIOKafkaProducer.send

    def _acknowledged(future) -> None:  # noqa: ANN001
        if not future.cancelled() and future.exception() is None:
            faults.reached("outbox.published")

    async def send(self, topic, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        future = await _send(self, topic, *args, **kwargs)
        if not topic.endswith(".dlq"):  # dead letters come from consumers, not the relay
            future.add_done_callback(_acknowledged)
        return future

    AIOKafkaProducer.send = send

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
