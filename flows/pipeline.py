"""The pipeline flow: ingest a folder, optionally retrain, score what is new, and report, as one run.

Each stage is its own subflow run with its own artifacts (the UI lists a run's own artifacts only),
so the pipeline repeats the report's table and summary under its own run, after one line per stage:
a quick run from the UI shows the whole story on its page.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import DEFAULT_CONFIG
from flows.ingest import ingest
from flows.report import ReportOutcome, report
from flows.score import ScoreOutcome, score
from flows.tasks import CHAMPION, IngestCounts
from flows.train import train
from inspect_core.config import load_recipe
from inspect_core.training.retraining import RetrainResult


@dataclass
class PipelineOutcome:
    ingested: IngestCounts
    retrained: RetrainResult | None
    scored: ScoreOutcome
    reported: ReportOutcome


def pipeline_markdown(folder: str, outcome: PipelineOutcome) -> str:
    ingested, scored, reported = outcome.ingested, outcome.scored, outcome.reported
    retrain = outcome.retrained.reason if outcome.retrained else "not asked for"
    lines = [
        "# Pipeline",
        "",
        f"1. **ingest** `{folder}`: {ingested.registered} registered, {ingested.duplicates} duplicate(s), "
        f"{ingested.quarantined} quarantined",
        f"2. **retrain**: {retrain}",
        f"3. **score** with `{scored.model.name}`: {scored.scored} scored, {scored.skipped} already scored, "
        f"{scored.quarantined} quarantined, {scored.detections} defect(s)",
        f"4. **report**: {reported.detections} defect(s) on {reported.images_with_defects} of {reported.images_scored} scored image(s)",
        "",
        "Each stage's own artifacts (scoring progress, plots as images) are on its subflow run.",
        "",
        "---",
        "",
    ]
    return "\n".join(lines) + "\n" + reported.markdown


@flow(name="pipeline")
def pipeline(
    config: str = DEFAULT_CONFIG,
    folder: str | None = None,
    store_url: str | None = None,
    store_secret: str | None = None,
    camera: str | None = None,
    line: str | None = None,
    model: str = CHAMPION,
    limit: int = 500,
    threshold: float | None = None,
    retrain: bool = False,
    labelled: str | None = None,
    report_since: str | None = None,
    overrides: list[str] | None = None,
) -> PipelineOutcome:
    """Ingest ``folder``, retrain first if ``retrain``, score up to ``limit`` new images with ``model``, then report.

    ``threshold`` replaces the operating thresholds (default: the model's calibrated ones, see score.default_threshold).
    The report covers captures since ``report_since`` (empty: everything in the store; the sample
    images carry the time they were checked out). Every stage reads the recipe ``config`` with
    ``overrides``; ``folder``, ``camera`` and ``line`` replace its ingest: settings, and the store is
    passed on as given (``store_secret`` by name, so the URL never shows as a parameter).
    """
    store = {"config": config, "store_url": store_url, "store_secret": store_secret, "overrides": overrides}
    ingested = ingest(folder=folder, camera=camera, line=line, **store)
    retrained = train(labelled=labelled, **store) if retrain else None
    scored = score(model=model, limit=limit, threshold=threshold, **store)
    reported = report(since=report_since, **store)
    outcome = PipelineOutcome(ingested, retrained, scored, reported)
    create_table_artifact(reported.class_rows, key="pipeline-defects-per-class", description="defects per class (the report's table)")
    folder = folder or str(load_recipe(config, overrides or []).ingest.folder)
    create_markdown_artifact(pipeline_markdown(folder, outcome), key="pipeline-summary", description=f"pipeline over {folder}")
    return outcome
