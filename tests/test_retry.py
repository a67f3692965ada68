"""Only what can pass on another try is retried: mistakes and refusals fail at once, with one line.

Each case runs the real task against local parts (the demo's local source and staging, a local
object store, moto's S3 server, a loopback HTTP server that refuses like COS) under Prefect's test
server, and reads the task run's attempts back from that server.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from tests.test_refresh import site
from zimage.build import BuiltImage

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

DENIAL = (
    "ICH408I USER(WIBUSR  ) GROUP(SYS1    ) NAME(ZIMAGE EXTRACT     ) SYS1.MN25S2  CL(DATASET ) "
    "INSUFFICIENT ACCESS AUTHORITY"
)


def task_run(state: Any) -> Any:
    """The task run of `state` as the server has it, with its final state (a task run outside a
    flow reaches the server through events, a moment later)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            try:
                run = client.read_task_run(state.state_details.task_run_id)
                if run.state is not None and run.state.is_final():
                    return run
            except ObjectNotFound:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"task run {state.state_details.task_run_id} did not reach the server in its final state")
            time.sleep(0.2)


def task_runs_of(flow_run_id: UUID) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r for r in runs}


def edit(config: Path, change: Any) -> None:
    document = yaml.safe_load(config.read_text())
    change(document)
    config.write_text(yaml.safe_dump(document))


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, BuiltImage]:
    from flows.build_image import build_image
    from flows.extract_component import extract_component

    config = site(tmp_path)
    extract_component(str(config), "demo-sysres", retry_delay_seconds=0.0)
    extract_component(str(config), "demo-data", retry_delay_seconds=0.0)
    return config, build_image(str(config), "zdemo")


def test_a_racf_denial_of_the_extraction_fails_at_once_naming_the_message(tmp_path: Path) -> None:
    from flows.extract_component import extract_component

    config = site(tmp_path)
    tries = tmp_path / "tries"
    command = f"echo {{target}} >>{tries}; echo '{DENIAL}' >&2; exit 8"
    edit(config, lambda d: d["sources"][0]["extraction"].update(command=command))
    state = extract_component(str(config), "demo-sysres", retry_delay_seconds=0.0, return_state=True)
    assert state.is_failed()
    assert "access denied" in state.message and "ICH408I" in state.message
    assert len(tries.read_text().splitlines()) == 2, "each of the two volumes tried once, not four times"
    runs = task_runs_of(state.state_details.flow_run_id)
    assert runs["extract-ZRES01"].run_count == 1 and runs["extract-ZRES01"].state.is_failed()


def test_a_failing_extraction_without_a_denial_is_still_retried(tmp_path: Path) -> None:
    from flows.extract_component import extract_component

    config = site(tmp_path)
    tries = tmp_path / "tries"
    command = f"echo {{target}} >>{tries}; echo 'IEC143I 213-04 dataset busy' >&2; exit 12"
    edit(config, lambda d: d["sources"][0]["extraction"].update(command=command))
    state = extract_component(str(config), "demo-sysres", retry_delay_seconds=0.0, retries=1, return_state=True)
    assert state.is_failed()
    assert len(tries.read_text().splitlines()) == 4, "two volumes, each tried twice"


def test_a_missing_config_file_fails_reading_the_manifests_at_once(tmp_path: Path) -> None:
    from flows.build_image import build_image

    missing = tmp_path / "nowhere.yaml"
    state = build_image(str(missing), "zdemo", return_state=True)
    assert state.is_failed()
    assert f"{missing}: (top level): cannot read: No such file or directory" in state.message
    assert "\n" not in state.message
    runs = task_runs_of(state.state_details.flow_run_id)
    assert runs["read-manifests-zdemo"].run_count == 1


def test_an_unknown_image_fails_reading_the_manifests_at_once_in_one_line(tmp_path: Path) -> None:
    from flows.build_image import build_image

    config = site(tmp_path)
    state = build_image(str(config), "zdemo-typo", return_state=True)
    assert state.is_failed()
    assert state.message.endswith("UnknownName: no image named 'zdemo-typo' in the config (known: zdemo)")
    runs = task_runs_of(state.state_details.flow_run_id)
    assert runs["read-manifests-zdemo-typo"].run_count == 1


def test_a_config_that_does_not_validate_fails_at_once_in_one_line(tmp_path: Path) -> None:
    from flows.build_image import build_image

    config = site(tmp_path)
    edit(config, lambda d: d["images"][0]["ipl"].update(loadparm="0A82DMM1TOOLONG"))
    state = build_image(str(config), "zdemo", return_state=True)
    assert state.is_failed()
    assert "images[0].ipl.loadparm" in state.message and "\n" not in state.message
    assert task_runs_of(state.state_details.flow_run_id)["read-manifests-zdemo"].run_count == 1


def test_a_digest_mismatch_while_staging_fails_at_once(built: tuple[Path, BuiltImage]) -> None:
    from tasks.stage import stage_volume

    config, image = built
    wrong = image.volumes[0].model_copy(update={"gz_sha256": "0" * 64})
    state = stage_volume(str(config), image.image, wrong, return_state=True)
    assert state.is_failed()
    assert "sha256 of the content read is" in state.message
    assert task_run(state).run_count == 1


class _Refuse(http.server.BaseHTTPRequestHandler):
    """Answers every request as COS does for a key without access to the bucket."""

    def _deny(self) -> None:
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
            b"<Message>Access Denied</Message></Error>"
        )
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _deny

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_cos() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _cos(config: Path, endpoint: str, bucket: str) -> None:
    def change(d: dict[str, Any]) -> None:
        d["target"]["cos"] = {"instance_name": "cos-test", "bucket": bucket, "region": "jp-tok", "endpoint": endpoint}
        d["target"]["insecure_http"] = True  # both stand-ins are plain http on loopback

    edit(config, change)


@pytest.mark.parametrize("where", ["denied", "no bucket"])
def test_access_denied_or_a_missing_bucket_fails_staging_at_once(
    built: tuple[Path, BuiltImage], refusing_cos: str, s3_server: str, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    from tasks.stage import stage_volume

    config, image = built
    monkeypatch.setenv("COS_HMAC_ACCESS_KEY_ID", "test-key-id")
    monkeypatch.setenv("COS_HMAC_SECRET_ACCESS_KEY", "test-secret-key")
    if where == "denied":
        _cos(config, refusing_cos, "wazi-bucket")
    else:
        _cos(config, s3_server, "zimage-bucket-that-does-not-exist")
    state = stage_volume(str(config), image.image, image.volumes[0], return_state=True)
    assert state.is_failed()
    # COS answers a HEAD without access with a bare 403
    assert ("403: Forbidden" if where == "denied" else "NoSuchBucket") in state.message
    assert task_run(state).run_count == 1


def test_a_parameter_of_the_wrong_kind_fails_before_anything_runs(tmp_path: Path) -> None:
    from flows.demo import demo

    workdir = tmp_path / "work"
    state = demo(workdir=str(workdir), volumes="many", return_state=True)  # type: ignore[arg-type]
    assert state.is_failed()
    assert "volumes: Input should be a valid integer" in state.message
    assert not workdir.exists(), "nothing may be made before the parameters are checked"
