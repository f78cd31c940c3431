"""`inspect-core app`: the inspection web app (package ``inspect_app``, outside the library), imported only when run.

Who may connect is decided here, before Gradio or a model is imported: a refused start costs nothing
and exits 2 with what to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from inspect_core.cli.common import USER_ERRORS, _fail, app, console
from inspect_core.cli.recipe_options import SetOption, recipe


@app.command("app")
def app_command(
    db: Annotated[
        str | None, typer.Option(help="Results store URL (sqlite:///results.db, postgresql+psycopg://...); sets store.url.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model the Try page starts with: a model folder, `tiny`, or `champion` (the store's promoted one).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Recipe YAML: its score: (thresholds, tiling), report: (time zone, shifts) apply.")
    ] = None,
    sets: SetOption = None,
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind. Anything but loopback (127.0.0.1, ::1, localhost) needs a login: INSPECT_APP_USER and "
            "INSPECT_APP_PASSWORD in the environment, or --auth-file; never a password on the command line."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 7860,
    auth_file: Annotated[Path | None, typer.Option(help="File of user:password lines (chmod 600) for the login.")] = None,
    labelled_root: Annotated[
        Path | None,
        typer.Option(help="Folder the Export page writes labelled batches into (default: the recipe's retrain.labelled_root, "
                     "which nightly retraining takes)."),
    ] = None,
) -> None:
    """Web app over the results store: Try a frame, the Dashboard of defects, Review the model's boxes, Export labelled batches.

    Binds 127.0.0.1 by default (this machine only). Binding any other address (--host 0.0.0.0) requires a
    login: set INSPECT_APP_USER and INSPECT_APP_PASSWORD in the environment, or give --auth-file with
    user:password lines (not readable by others). Passwords are never taken on the command line, where every
    user of the machine can read them; without credentials a non-local --host is a usage error (exit 2).
    Only images registered in the store are shown; uploads on the Try page are checked as scoring checks
    files, and Try writes nothing. Reviews are stored with the reviewer's name (the login name with a login);
    the Export page writes only batch folders under --labelled-root.

    Example: inspect-core app --db sqlite:///runs/demo/results.db --model champion

    Plant network: INSPECT_APP_USER=qe INSPECT_APP_PASSWORD=... inspect-core app --db sqlite:///results.db --host 0.0.0.0 --model champion
    """
    from inspect_app.security import check_binding, credentials

    try:
        logins = credentials(os.environ, auth_file)
        check_binding(host, logins)
        cfg = recipe(config, sets, {"store.url": db})
        from inspect_app.context import AppContext
        from inspect_app.server import serve
        from inspect_core.model.trained_model import resolve_trained_source
        from inspect_core.store import champion, open_store

        if model is not None and model != "champion":
            resolve_trained_source(model)  # a folder that is not there fails now, not on the first frame

        try:
            engine = open_store(cfg.store.url, create=False)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{error}; score images into it first (inspect-core score --db {cfg.store.url})") from None
        if model == "champion" and champion(engine) is None:
            raise FileNotFoundError(f"--model champion: the store {cfg.store.url} has no promoted model yet")
        ctx = AppContext(engine, cfg, model, labelled_root=(labelled_root or cfg.retrain.labelled_root).resolve())
        console.print(f"inspect-core app on http://{host}:{port}/ (Ctrl-C stops it)", markup=False, highlight=False)
        serve(ctx, host, port, logins)
    except USER_ERRORS as error:  # the store staying down is an EnvironmentFailure, among them
        _fail(error)
