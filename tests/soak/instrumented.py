"""The exporter exactly as `python -m exporter` runs it, plus one asyncio task that writes the
number of asyncio tasks in its event loop to a file, once a `SOAK_TASKS_EVERY` seconds.

The soak test needs that count from outside the process, and nothing else in the exporter has
to know: this wrapper starts the same `exporter.cli.main` with the same arguments and only
wraps `exporter.cli.serve`, the coroutine that `main` hands to `asyncio.run`.

    SOAK_TASKS_FILE=/tmp/tasks python -m tests.soak.instrumented --config.file ... [flags]

Each line of the file is `<time.monotonic()> <number of tasks>`; the reporting task itself
counts, so the number is the exporter's tasks plus one.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

from exporter import cli

ENV_FILE = "SOAK_TASKS_FILE"
ENV_EVERY = "SOAK_TASKS_EVERY"


async def report_tasks(out: TextIO, every: float) -> None:
    while True:
        out.write(f"{time.monotonic():.3f} {len(asyncio.all_tasks())}\n")
        out.flush()
        await asyncio.sleep(every)


def counting_tasks(
    serve: Callable[..., Coroutine[Any, Any, int]], out: TextIO, every: float
) -> Callable[..., Coroutine[Any, Any, int]]:
    async def serve_counting_tasks(*args: Any, **kwargs: Any) -> int:
        reporter = asyncio.create_task(report_tasks(out, every), name="soak-task-count")
        try:
            return await serve(*args, **kwargs)
        finally:
            reporter.cancel()

    return serve_counting_tasks


def main() -> int:
    path = os.environ.get(ENV_FILE)
    if not path:
        return cli.main(sys.argv[1:])
    with open(path, "a", encoding="ascii") as out:
        cli.serve = counting_tasks(cli.serve, out, float(os.environ.get(ENV_EVERY, "1")))
        return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
