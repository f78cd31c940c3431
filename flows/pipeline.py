"""The pipeline flow: ingest a folder, optionally retrain, score what is new, and report, as one run.

Each stage is its own subflow run with its own artifacts (the UI lists a run's own artifacts only),
so the pipeline repeats the report's table and summary under its own run, after one line per stage:
a quick run from the UI shows the whole story on its page.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import DEFAULT_CONFIG, DEFAULT_STORE_URL, SAMPLE_FOLDER
from flows.ingest import ingest
from flows.report import ReportOutcome, report
from flows.score import ScoreOutcome, score
from flows.tasks import CHAMPION, IngestCounts
from flows.train import train
from inspect_core.retraining import RetrainResult


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
    folder: str = SAMPLE_FOLDER,
    store_url: str = DEFAULT_STORE_URL,
    camera: str = "cam-1",
    line: str = "line-1",
    model: str = CHAMPION,
    limit: int = 500,
    threshold: float | None = None,
    retrain: bool = False,
    labelled: str = "sample_data",
    config: str = DEFAULT_CONFIG,
    report_since: str | None = None,
) -> PipelineOutcome:
    """Ingest ``folder``, retrain first if ``retrain``, score up to ``limit`` new images with ``model``, then report.

    ``threshold`` overrides the recipe's minimum confidence (the shipped tiny model rarely reaches its 0.3).
    The report covers captures since ``report_since`` (empty: everything in the store; the sample
    images carry the time they were checked out).
    """
    ingested = ingest(folder=folder, store_url=store_url, camera=camera, line=line)
    retrained = train(labelled=labelled, store_url=store_url, config=config) if retrain else None
    scored = score(store_url=store_url, model=model, limit=limit, config=config, threshold=threshold)
    reported = report(store_url=store_url, since=report_since)
    outcome = PipelineOutcome(ingested, retrained, scored, reported)
    create_table_artifact(reported.class_rows, key="pipeline-defects-per-class", description="defects per class (the report's table)")
    create_markdown_artifact(pipeline_markdown(folder, outcome), key="pipeline-summary", description=f"pipeline over {folder}")
    return outcome
