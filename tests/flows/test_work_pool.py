"""prefect.yaml on a process work pool: two workers share one pool, one server and one PostgreSQL store.

What a plant does when one machine is not enough: `prefect deploy` the shipped prefect.yaml once, then
`prefect worker start --pool inspect` on each machine. Here both workers run on this machine (each
its own process, ``--limit 1`` so neither can take every run); several score runs go to the pool at
once; the store must end with every image scored exactly once, whichever worker ran what.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from inspect_core.ingest.folder import FolderWatcher
from inspect_core.store import open_store
from tests.flows.conftest import REPO, copy_samples, fast_recipe
from tests.flows.servers import free_port, healthy, start, stop

# ~2 min on a busy 2-core machine: a server, two workers and four flow-run processes start from cold.
pytestmark = pytest.mark.slow
RUNS = 4
IMAGES = 8


def wait_until(check: Callable[[], bool], seconds: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    pytest.fail(f"{what} not done after {seconds} s:\n" + "\n".join(f"--- {log}\n{log.read_text()[-2500:]}" for log in logs))


def test_two_workers_share_one_pool_and_score_every_image_once(tmp_path: Path, postgres_url: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    copy_samples(tmp_path / "incoming", IMAGES)
    engine = open_store(postgres_url)
    assert len(FolderWatcher(tmp_path / "incoming", engine, "cam-1", "line-1", settle_seconds=0).poll_once().registered) == IMAGES
    recipe = fast_recipe(tmp_path / "recipe.yaml")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = os.environ | {
        "PREFECT_API_URL": api, "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",  # only the runs this test submits
        "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "INSPECT_HOME": str(REPO), "INSPECT_STORE_URL": postgres_url,  # what every worker machine sets
    }  # fmt: skip
    logs = {name: tmp_path / f"{name}.log" for name in ("server", "worker-1", "worker-2")}
    processes = [start([sys.executable, "-m", "prefect", "server", "start"], env, logs["server"])]
    try:
        wait_until(lambda: healthy(api), 120, "Prefect server", [logs["server"]])
        prefect = [sys.executable, "-m", "prefect", "--no-prompt"]
        for command in (["work-pool", "create", "inspect", "--type", "process"], ["deploy", "--name", "score/on-demand"]):
            done = subprocess.run(prefect + command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, done.stdout + done.stderr
        for name in ("worker-1", "worker-2"):
            worker = ["worker", "start", "--pool", "inspect", "--limit", "1", "--name", name]
            processes.append(start(prefect + worker, env, logs[name]))

        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("score/on-demand")
            parameters = {"config": str(recipe), "model": "tiny", "shard_size": 4}
            runs = [client.create_flow_run_from_deployment(deployment.id, parameters=parameters) for _ in range(RUNS)]

            def finished() -> bool:
                return all(client.read_flow_run(run.id).state.is_final() for run in runs)

            wait_until(finished, 420, f"{RUNS} score runs", list(logs.values()))
            states = [client.read_flow_run(run.id).state for run in runs]
        assert [s.type.value for s in states] == ["COMPLETED"] * RUNS, [s.message for s in states]
        took = {name: {str(run.id) for run in runs if str(run.id) in logs[name].read_text()} for name in ("worker-1", "worker-2")}
        assert all(took.values()), took  # both workers ran flow runs
        assert set().union(*took.values()) == {str(run.id) for run in runs}
    finally:
        for process in reversed(processes):
            stop(process)

    with engine.connect() as connection:
        scores = connection.execute(sa.text("select image_id, count(*) from image_scores group by image_id")).all()
    assert len(scores) == IMAGES and {count for _, count in scores} == {1}  # every image scored, each exactly once
