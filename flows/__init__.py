"""Prefect flows over :mod:`inspect_core`: ingest, build-dataset, train, score, report and the pipeline chaining them.

The library never imports Prefect; these modules only orchestrate it. Every flow takes ``config``, a
recipe path, and reads its settings (``store.url``, ``ingest:``, ``score:``...) from it through the
same merge the CLI uses (:func:`inspect_core.config.load_recipe`): flow parameters are optional
overrides laid on top, and ``overrides`` takes ``key.path=value`` items like ``--set``. The default
recipe is the embedded demo, run from the repository root.

A store URL carrying a password need not be a plain parameter (parameters show in the UI): name a
Prefect Secret block in ``store_secret``, or set ``INSPECT_STORE_URL`` in the worker's environment.
"""

from __future__ import annotations

import os
from typing import Any

from inspect_core.config import InspectConfig, load_recipe

DEFAULT_CONFIG = "configs/demo.yaml"
SAMPLE_FOLDER = "sample_data/fabric_voc"
RUN_DIR = "runs/prefect"
STORE_ENV = "INSPECT_STORE_URL"


def store_url_override(store_url: str | None = None, store_secret: str | None = None) -> str | None:
    """The store URL that replaces the recipe's: the parameter, else the Secret block's value, else ``INSPECT_STORE_URL``."""
    if store_url:
        return store_url
    if store_secret:
        from prefect.blocks.system import Secret

        return str(Secret.load(store_secret).get())
    return os.environ.get(STORE_ENV) or None


def flow_recipe(
    config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, store_url: str | None = None, store_secret: str | None = None,
    **flags: Any,
) -> InspectConfig:  # fmt: skip
    """The recipe a flow run uses: file, then ``overrides`` (``key.path=value``), then the parameters given (dotted keys)."""
    given = {key: value for key, value in flags.items() if value is not None}
    given["store.url"] = store_url_override(store_url, store_secret)
    return load_recipe(config, overrides or [], {k: v for k, v in given.items() if v is not None})


def dotted(section: str, **values: Any) -> dict[str, Any]:
    """``dotted("ingest", folder=x)`` -> ``{"ingest.folder": x}``: flow parameters as recipe overrides."""
    return {f"{section}.{key}": value for key, value in values.items()}
