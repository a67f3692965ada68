"""Flow preflight: before anything is extracted or created, check what a run will rely on.

    zimage run preflight --config CONFIG [--image NAME | --system NAME]

For each source system in scope: SSH reachability with the host key verified, and the IEASYMxx /
TCP/IP PROFILE / TCPDATA members its parmlib names, read over SSH and checked for the symbols
Wazi aaS rewrites. For the storage server: reachability, a writable staging root, and its free
space against an estimate of the compressed size of the components in scope. With a `target:`:
COS (the bucket takes a probe object, deleted) and, for `target.mover.mode: vsi`, the VPC API (the
API key, the mover image, the product names of an image in scope, the image service's authorization
to read COS); nothing is created in the account. Everything is
published as one markdown artifact; the flow fails, naming every error, when any check has one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from infra.configfile import load_config
from infra.parmlib import configured
from tasks.build import NoGeneration
from tasks.ipl import check_ipl_chain
from tasks.preflight import RETRY_DELAY_SECONDS, check_cos, check_source, check_storage, check_vpc, location
from zimage.config import Source
from zimage.findings import Finding
from zimage.ipl_report import ipl_check_name, preflight_check
from zimage.preflight import (
    Check,
    PreflightReport,
    SourceReport,
    StorageReport,
    cos_check_name,
    estimate,
    failure_message,
    markdown,
    parmlib_check_name,
    reach_check_name,
    select,
    space_check,
    storage_check_name,
    vpc_check_name,
    worst,
)


class PreflightFailed(RuntimeError):
    pass


def _failed(name: str, target: str, exc: BaseException) -> Check:
    return Check(name=name, target=target, status="error", messages=[str(exc) or type(exc).__name__])


def _source_outcome(source: Source, future: Any) -> SourceReport:
    try:
        return future.result()
    except Exception as exc:
        skipped = Check(name=parmlib_check_name(source.name), target=", ".join(configured(source.parmlib).values()),
                        status="warning", messages=[f"not checked: source {source.name} could not be reached"])
        reach = _failed(reach_check_name(source.name), location(source), exc)
        return SourceReport(system=source.name, checks=[reach, skipped], findings=None)


def _ipl_outcome(image: str, future: Any) -> tuple[Check, list[Finding] | None]:
    try:
        report = future.result()
    except NoGeneration as exc:  # before the first extraction: nothing staged to read yet
        return Check(name=ipl_check_name(image), target="staged volumes", status="warning",
                     messages=[f"not checked: {exc}"]), None
    except Exception as exc:
        return _failed(ipl_check_name(image), "staged volumes", exc), None
    return preflight_check(report), report.findings


def _cloud_outcome(name: str, future: Any) -> Check:
    try:
        return future.result()
    except Exception as exc:
        return _failed(name, "target", exc)


def _run_name() -> str:
    """preflight-IMAGE, preflight-SYSTEM or preflight-all: what the run covers."""
    return "preflight-" + (flow_run.parameters.get("image") or flow_run.parameters.get("system") or "all")


@flow(name="preflight", flow_run_name=_run_name, task_runner=ThreadPoolTaskRunner(max_workers=8))
def preflight(
    config: str,
    image: str | None = None,
    system: str | None = None,
    retry_delay_seconds: float = RETRY_DELAY_SECONDS,
    ipl_check: bool = True,
    cloud_check: bool = True,
) -> dict[str, Any]:
    """Check that source systems, the storage server and the cloud target are ready before a run.

    Reaches every source system in scope and the storage server over SSH (host keys verified),
    reads the IEASYMxx, TCP/IP PROFILE and TCPDATA members named in each source's parmlib and checks
    the symbols Wazi aaS rewrites, and compares the staging directory's free space with the
    estimated compressed size of the components in scope. With a target: writes and deletes a probe
    object in the COS bucket and asks the VPC API what a deploy needs (nothing is created).
    Publishes a markdown artifact `preflight-IMAGE` (or `preflight-SYSTEM`); fails listing the
    errors when any check has one.

    Args:
        config: Path of the zimage YAML config on the machine running the flow.
        image: Check the sources and components of this image only.
        system: Check this source system (and its components) only. Neither: every source.
        retry_delay_seconds: Wait between the retries of a failed connection (2 retries).
        ipl_check: With an image: check its IPL chain on the newest staged generation, read on the
            storage server (LOADPARM, LOADxx, IODF, parmlib, IEASYMxx and TCP/IP members on the volumes).
        cloud_check: With a `target:` in the config: reach COS and (mover mode vsi) the VPC API.
    """
    log = get_run_logger()
    cfg = load_config(config)  # every config problem before any connection
    scope = select(cfg, image, system)
    log.info("preflight of %s: %d source(s), %d component(s)", scope.label, len(scope.systems), len(scope.components))
    source_task = check_source.with_options(retry_delay_seconds=retry_delay_seconds)
    storage_task = check_storage.with_options(retry_delay_seconds=retry_delay_seconds)
    storage_future = storage_task.submit(config)
    ipl_future = (check_ipl_chain.with_options(retry_delay_seconds=retry_delay_seconds).submit(config, image)
                  if image and ipl_check else None)
    cloud_futures = {}
    if cfg.target is not None and cloud_check:
        cloud_futures[cos_check_name()] = check_cos.submit(config)
        if cfg.target.mover.mode == "vsi":
            cloud_futures[vpc_check_name()] = check_vpc.submit(config, image, min(retry_delay_seconds, 1.0))
    source_futures = {s: source_task.submit(config, s) for s in scope.systems}
    sources = [_source_outcome(cfg.source(s), f) for s, f in source_futures.items()]
    try:
        storage: StorageReport | None = storage_future.result()
    except Exception as exc:
        storage = None
        storage_check = _failed(storage_check_name(), location(cfg.storage), exc)
    else:
        storage_check = storage.check
    est = estimate([cfg.component(n) for n in scope.components])
    checks = [c for s in sources for c in s.checks] + [storage_check, space_check(storage, est)]
    checks += [_cloud_outcome(name, future) for name, future in cloud_futures.items()]
    findings = {s.system: s.findings for s in sources}
    if image and ipl_future is not None:
        ipl, ipl_findings = _ipl_outcome(image, ipl_future)
        checks.append(ipl)
        if ipl_findings is not None:
            findings[f"IPL chain of {image}"] = ipl_findings
    report = PreflightReport(
        scope=scope, config=config, checked_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        status=worst([c.status for c in checks]), checks=checks,
        findings=findings, estimate=est,
    )
    create_markdown_artifact(markdown=markdown(report), key=scope.key,
                             description=f"Preflight of {scope.label}: {report.status}")
    for check in checks:
        level = {"ok": log.info, "warning": log.warning, "error": log.error}[check.status]
        level("%s: %s: %s", check.name, check.status, "; ".join(check.messages))
    if report.errors():
        raise PreflightFailed(failure_message(report))
    return report.model_dump(mode="json")
