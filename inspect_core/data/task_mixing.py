"""Order mixed-task records across training epochs.

A split's records are kept in task blocks: all ``<OD>``, then all ``<DENSE_REGION_CAPTION>``, then
all ``<CAPTION_TO_PHRASE_GROUNDING>`` (:data:`~inspect_core.data.florence_tasks.TASK_ORDER`). Records are
shuffled within their block, never across blocks.

- ``sequential``: the whole run is a curriculum: every pass over the OD block, then every pass over
  the dense block, then grounding; the stream is cut into equal epochs. This order trained best on
  real fabric.
- ``interleaved``: each epoch passes the three blocks in task order.

Both modes show every record ``epochs`` times; only the order differs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from inspect_core.data.florence_tasks import TASK_ORDER, TaskRecord
from inspect_core.errors import UsageError

ORDERS = ("sequential", "interleaved")


def task_blocks(records: Sequence[TaskRecord]) -> list[list[int]]:
    """Record indices grouped by task, in task order (empty blocks omitted)."""
    blocks = {task: [] for task in TASK_ORDER}
    for index, record in enumerate(records):
        blocks[record.task].append(index)
    return [block for block in blocks.values() if block]


def epoch_plan(records: Sequence[TaskRecord], order: str, epochs: int, seed: int = 0) -> list[list[int]]:
    """Record indices to visit in each epoch."""
    if order not in ORDERS:
        raise UsageError(f"unknown order {order!r}; expected one of {', '.join(ORDERS)}")
    if epochs < 1:
        raise UsageError("epochs must be at least 1")
    rng = random.Random(seed)

    def shuffled(block: list[int]) -> list[int]:
        copy = list(block)
        rng.shuffle(copy)
        return copy

    blocks = task_blocks(records)
    if order == "interleaved":
        return [[i for block in blocks for i in shuffled(block)] for _ in range(epochs)]
    stream = [i for block in blocks for _ in range(epochs) for i in shuffled(block)]
    size = len(records)
    return [stream[e * size : (e + 1) * size] for e in range(epochs)]
