"""Prefect flows over :mod:`inspect_core`: ingest, build-dataset, train, score, report and the pipeline chaining them.

The library never imports Prefect; these modules only orchestrate it. Defaults run on the embedded
demo from the repository root: the committed sample images, the shipped ``tiny`` model and a SQLite
store under ``runs/prefect``.
"""

DEFAULT_CONFIG = "configs/demo.yaml"
DEFAULT_STORE_URL = "sqlite:///runs/prefect/results.db"
SAMPLE_FOLDER = "sample_data/fabric_voc"
RUN_DIR = "runs/prefect"
