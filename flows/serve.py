"""Serve the flows as scheduled deployments: ``python -m flows.serve`` from the repository root (``make prefect-up`` does).

| deployment | schedule | what it does |
|---|---|---|
| ingest/continuous | every 5 min, each run watching the folder 270 s | registers the camera folder's images (runs queue, never overlap) |
| score/every-5-minutes | every 5 min | scores what is new with the champion (a run still busy makes the next one skip) |
| train/nightly | 02:00 | champion/challenger retraining on the labelled batches |
| report/daily | 06:00 | the last 24 h as tables, plots and a summary |
| pipeline/on-demand, build-dataset/on-demand | none | run from the UI |

Schedules are in the time zone named by ``INSPECT_TIMEZONE`` (IANA, e.g. ``Europe/Berlin``; default
UTC), so 02:00 stays 02:00 at the plant across daylight-saving changes. Every deployment runs the
recipe named by ``INSPECT_CONFIG`` (default ``configs/demo.yaml``) and writes to its store.url, unless
``INSPECT_STORE_URL`` is set where the flows run (read at run time, so a password in it never becomes
a deployment parameter; a Prefect Secret block named in ``store_secret`` works too).
Every parameter can be changed for one run from the UI ("Custom run").

For more than one machine, ``prefect.yaml`` at the repository root holds the same deployments for a
process work pool: ``prefect deploy --all`` once, then ``prefect worker start --pool inspect`` on each machine.
"""

from __future__ import annotations

import os
from zoneinfo import ZoneInfo

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows import DEFAULT_CONFIG
from flows.build_dataset import build_dataset
from flows.ingest import ingest
from flows.pipeline import pipeline
from flows.report import report
from flows.score import score
from flows.train import train

TIMEZONE_ENV = "INSPECT_TIMEZONE"
CONFIG_ENV = "INSPECT_CONFIG"
INGEST_WATCH_SECONDS = 270  # of each 5-minute slot: the rest covers a run's start-up, so runs follow each other without a gap


def deployments(timezone: str | None = None, store_url: str | None = None, config: str | None = None) -> list[RunnerDeployment]:
    """Every deployment with its schedule; arguments default to the environment variables above.

    ``store_url`` is baked into the parameters only when given (a URL without a password, for tests and demos).
    """
    timezone = timezone or os.environ.get(TIMEZONE_ENV, "UTC")
    ZoneInfo(timezone)  # an unknown zone fails here, by name, rather than as a schedule that never fires
    config = config or os.environ.get(CONFIG_ENV, DEFAULT_CONFIG)
    queue = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    skip = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    store = {"config": config} | ({"store_url": store_url} if store_url else {})
    return [
        ingest.to_deployment(
            "continuous", schedule=Cron("*/5 * * * *", timezone=timezone), concurrency_limit=queue,
            parameters=store | {"watch_seconds": INGEST_WATCH_SECONDS}, tags=["ingest"],
            description="Watch the camera folder continuously: each run polls it for 270 s; set watch_seconds 0 for a one-off pass.",
        ),
        score.to_deployment(
            "every-5-minutes", schedule=Cron("*/5 * * * *", timezone=timezone), concurrency_limit=skip, parameters=store,
            tags=["score"], description="Score the images ingested since the last run with the champion model.",
        ),
        train.to_deployment(
            "nightly", schedule=Cron("0 2 * * *", timezone=timezone), concurrency_limit=skip, parameters=store, tags=["train"],
            description="Train a challenger on new labelled batches; promote it only if it beats the champion by the margin.",
        ),
        report.to_deployment(
            "daily", schedule=Cron("0 6 * * *", timezone=timezone), parameters=store, tags=["report"],
            description="Defects per class, day and line over the last 24 h, with plots.",
        ),
        pipeline.to_deployment(
            "on-demand", parameters=store, tags=["pipeline"],
            description="Ingest a folder, score it and report, in one run (the sample folder by default).",
        ),
        build_dataset.to_deployment(
            "on-demand", parameters={"config": config}, tags=["dataset"], description="Build a Florence JSONL training set from labels."
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    serve(*deployments())
