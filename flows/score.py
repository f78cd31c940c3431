"""The score flow: score the store's registered-but-unscored images with the champion, in shards.

Shards run one at a time in this process (the model already uses every core), or across a Dask
cluster: a local one of ``dask_workers`` processes, or an existing scheduler at ``dask_address``.
Every worker process loads the model once (``flows.tasks.cached_detector``) and reuses it for all its
shards. The store makes scoring exactly-once, so overlapping or retried runs never score an image twice;
for several machines writing at once use PostgreSQL (``postgresql+psycopg://...``) rather than SQLite.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.logging import get_run_logger
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows import DEFAULT_CONFIG, dotted, flow_recipe
from flows.tasks import CHAMPION, ModelChoice, ShardResult, list_unscored, pick_model, score_shard, shard
from inspect_core.config import ScoreSection


@dataclass
class ScoreOutcome:
    """One score flow run over all its shards (each shard is one scoring run in the store)."""

    model: ModelChoice
    images: int = 0
    scored: int = 0
    skipped: int = 0
    quarantined: int = 0
    detections: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    store_runs: list[int] = field(default_factory=list)
    model_loads: dict[int, int] = field(default_factory=dict)  # worker pid -> loads of the model in it

    def add(self, result: ShardResult) -> None:
        summary = result.summary
        self.images += summary.images
        self.scored += summary.scored
        self.skipped += summary.skipped
        self.quarantined += summary.quarantined
        self.detections += summary.detections
        self.per_class = dict(sorted((Counter(self.per_class) + Counter(summary.per_class)).items()))
        self.store_runs.append(summary.run_id)
        self.model_loads[result.worker_pid] = max(self.model_loads.get(result.worker_pid, 0), result.model_loads)


def score_settings(config: str, threshold: float | None = None, max_new_tokens: int | None = None, on_dask: bool = False) -> ScoreSection:
    """The recipe's score: section with the run's overrides laid over it."""
    return score_recipe(config, None, threshold, max_new_tokens, on_dask).score


def score_recipe(
    config: str, overrides: list[str] | None = None, threshold: float | None = None, max_new_tokens: int | None = None,
    on_dask: bool = False, store_url: str | None = None, store_secret: str | None = None,
):  # fmt: skip
    """The run's recipe: the file, ``overrides``, then the flow's own parameters."""
    # Dask workers are daemon processes (no DataLoader children) and are the parallelism themselves.
    workers = 0 if on_dask else None
    flags = dotted("score", default_threshold=threshold, max_new_tokens=max_new_tokens, num_workers=workers)
    return flow_recipe(config, overrides, store_url, store_secret, **flags)


def task_runner(dask_workers: int = 0, dask_address: str | None = None) -> TaskRunner:
    """Where the shards run: this process, a local Dask cluster of ``dask_workers`` processes, or a running scheduler."""
    if not dask_workers and not dask_address:
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner  # imported only when asked for: distributed is slow to import

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    cluster = {"n_workers": dask_workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    return DaskTaskRunner(cluster_kwargs=cluster)


def score_markdown(outcome: ScoreOutcome) -> str:
    """The run summary the UI shows: counts, throughput, the model and its validation mAP."""
    model = outcome.model
    map50 = model.metrics.get("map50")
    rate = outcome.scored / outcome.seconds if outcome.seconds > 0 else 0.0
    lines = [
        f"# Scoring with `{model.name}`",
        "",
        "| images | scored | already scored | quarantined | defects |",
        "|---|---|---|---|---|",
        f"| {outcome.images} | {outcome.scored} | {outcome.skipped} | {outcome.quarantined} | {outcome.detections} |",
        "",
        f"- model version: {model.name} (registry id {model.version_id}), validation mAP@50 "
        + (f"{map50:.3f}" if isinstance(map50, float) else "not evaluated"),
        f"- throughput: {rate:.2f} images/s over {outcome.seconds:.1f} s",
        f"- store runs: {', '.join(map(str, outcome.store_runs)) or 'none: nothing to score'}",
        f"- worker processes: {len(outcome.model_loads)} (model loads per process: {sorted(outcome.model_loads.values())})",
    ]
    return "\n".join(lines) + "\n"


def per_class_rows(per_class: dict[str, int]) -> list[dict[str, object]]:
    """Table artifact rows, most frequent class first (an empty table still shows its columns)."""
    rows = [{"class": name, "defects": count} for name, count in sorted(per_class.items(), key=lambda item: (-item[1], item[0]))]
    return rows or [{"class": "(none found)", "defects": 0}]


@flow(name="score")
def score(
    config: str = DEFAULT_CONFIG,
    store_url: str | None = None,
    store_secret: str | None = None,
    model: str = CHAMPION,
    limit: int = 500,
    shard_size: int = 16,
    threshold: float | None = None,
    max_new_tokens: int | None = None,
    dask_workers: int = 0,
    dask_address: str | None = None,
    overrides: list[str] | None = None,
) -> ScoreOutcome:
    """Score up to ``limit`` unscored images with ``model`` (``champion``: the promoted one, else the shipped ``tiny``).

    Settings come from the recipe ``config`` (score:, model.image_size, store.url); ``threshold``,
    ``max_new_tokens`` and ``overrides`` (``key.path=value`` items) are laid over it. The store is
    ``store_url``, else the Secret block ``store_secret``, else ``$INSPECT_STORE_URL``, else the
    recipe's. ``dask_workers`` > 0 scores on a local Dask cluster of that many processes;
    ``dask_address`` uses a running scheduler.
    """
    logger = get_run_logger()
    recipe = score_recipe(config, overrides, threshold, max_new_tokens, bool(dask_workers or dask_address), store_url, store_secret)
    settings, store_url = recipe.score, recipe.store.url
    choice = pick_model(store_url, model, recipe.model.image_size)
    paths = list_unscored(store_url, choice.version_id, limit)
    shards = shard(paths, shard_size)
    logger.info("%d unscored image(s) for %s in %d shard(s)", len(paths), choice.name, len(shards))
    progress = create_progress_artifact(0.0, key="scoring-progress", description=f"scoring {len(paths)} image(s) with {choice.name}")
    outcome = ScoreOutcome(choice)
    started = time.perf_counter()
    if shards:
        with task_runner(dask_workers, dask_address) as runner:
            parameters = {"model_dir": choice.path, "store_url": store_url, "settings": settings, "image_size": recipe.model.image_size}
            futures = [runner.submit(score_shard, parameters | {"paths": part}) for part in shards]
            for future in as_completed(futures):
                outcome.add(future.result())
                update_progress_artifact(progress, 100.0 * outcome.images / len(paths))
    else:
        update_progress_artifact(progress, 100.0, description="nothing to score")
    outcome.seconds = time.perf_counter() - started
    create_table_artifact(per_class_rows(outcome.per_class), key="defects-per-class", description=f"defects per class, {choice.name}")
    create_markdown_artifact(score_markdown(outcome), key="scoring-summary", description="scoring run summary")
    return outcome
