"""Prefect tasks of the preflight flow: reach a source system (host key verified) and check its
parmlib members; reach the storage server and measure the staging directory's free space; with a
`target:`, reach COS (the bucket takes a probe object) and the VPC API (what deploy-image checks before
it creates anything).

A task raises when the connection itself fails, so that Prefect retries what may pass (a dropped
or refused connection) and not what will not (host key, authentication); the flow turns a final
failure into an error check. Everything else ends up as a `Check` with a status.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra import ssh
from infra.configfile import load_config
from infra.cos import ClientSettings, open_object_store
from infra.iam import RetryPolicy, account_id
from infra.ibmcloud import Timing, connect, resolve_api_key
from infra.parmlib import KINDS, MemberReader, ParmlibError, configured, missing
from infra.staging_store import StagingError, open_store
from infra.storage_upload import StorageCannotUpload, check_storage_upload
from tasks.mover_vsi import check_mover_image
from tasks.publish import check_image_import, check_product_names
from tasks.retry import retryable
from zimage.config import Config, Cos, Source, Storage
from zimage.findings import Finding, count, sort_findings
from zimage.preflight import (
    Check,
    SourceReport,
    Status,
    StorageReport,
    cos_check_name,
    parmlib_check_name,
    reach_check_name,
    storage_check_name,
    vpc_check_name,
    worst,
)
from zimage.symbols import Member, check_ieasym, check_profile, check_tcpdata

CONNECT_RETRIES = 2
PREFLIGHT_COS = ClientSettings(max_attempts=2, read_timeout_s=60.0)  # report an unreachable endpoint soon
RETRY_DELAY_SECONDS = 2.0
_CHECKERS = {"ieasym": check_ieasym, "tcpip_profile": check_profile, "tcpdata": check_tcpdata}


def location(endpoint: Source | Storage) -> str:
    """Where checks of an endpoint happen, for reports: user@host:port, or this machine."""
    return "this machine" if endpoint.transport == "local" else ssh.where(endpoint)


def _reach_source(reader: MemberReader) -> Check:
    source = reader.source
    name = reach_check_name(source.name)
    if source.transport == "local":
        return Check(name=name, target=location(source), status="ok",
                     messages=["transport local: members are read and volumes extracted on this machine"])
    session = reader.connect()  # raises for the task's retries when the connection fails
    messages = [f"connected with key authentication; host key verified against {source.known_hosts_file}"]
    result = session.run("uname -s -r", timeout=30)
    if result.status != 0:
        messages.append(f"`uname -s -r` exited with status {result.status}: {result.stderr_text or 'no message'}; "
                        "the extraction command needs a working shell")
        return Check(name=name, target=location(source), status="warning", messages=messages)
    messages.append(f"system: {result.stdout.decode('utf-8', 'replace').strip()}")
    return Check(name=name, target=location(source), status="ok", messages=messages)


def _check_parmlib(reader: MemberReader) -> tuple[Check, list[Finding] | None]:
    """The parmlib check and its findings; None for the findings when no member was read."""
    source = reader.source
    members = configured(source.parmlib)
    messages = [f"parmlib.{key} is not set: the {KINDS[key]} check was skipped" for key in missing(source.parmlib)]
    statuses: list[Status] = ["warning"] if messages else []
    findings: list[Finding] = []
    for key, member in members.items():
        try:
            raw = reader.read(member)
        except ParmlibError as exc:
            if exc.retryable:
                raise
            messages.append(str(exc))
            statuses.append("error")
            continue
        findings += _CHECKERS[key](Member(name=member, text=raw))
    findings = sort_findings(findings)
    errors, warnings = count(findings, "error"), count(findings, "warning")
    read = len(members) - statuses.count("error")
    if read:
        messages.insert(0, f"{read} member(s) read and checked: {errors} error(s), {warnings} warning(s)")
        statuses += ["error"] * bool(errors) + ["warning"] * bool(warnings)
    target = ", ".join(members.values()) or "(no members configured)"
    return Check(name=parmlib_check_name(source.name), target=target, status=worst(statuses),
                 messages=messages), findings if read else None


@task(name="check-source", task_run_name="check-source-{system}", cache_policy=NO_CACHE, retries=CONNECT_RETRIES,
      retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=retryable)
def check_source(config: str, system: str) -> SourceReport:
    """Reach the source system (host key verified), then read and check its parmlib members on the
    same connection."""
    log = get_run_logger()
    source = load_config(config).source(system)
    with MemberReader(source) as reader:
        reach = _reach_source(reader)
        parmlib, findings = _check_parmlib(reader)
    for check in (reach, parmlib):
        log.info("%s (%s): %s: %s", check.name, check.target, check.status, "; ".join(check.messages))
    return SourceReport(system=system, checks=[reach, parmlib], findings=findings)


@task(name="check-storage", task_run_name="check-storage", cache_policy=NO_CACHE, retries=CONNECT_RETRIES,
      retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=retryable)
def check_storage(config: str) -> StorageReport:
    """Reach the storage server (host key verified); the staging root must exist and take a probe
    file (written and removed); measure its free space. Nothing else is written."""
    cfg = load_config(config)
    storage = cfg.storage
    name = storage_check_name()
    target = location(storage)
    with open_store(storage) as store:  # an sftp store connects here; failures raise for the retries
        info = store.stat(storage.root)
        if info is None or not info.is_dir:
            what = "does not exist" if info is None else "is not a directory"
            check = Check(name=name, target=target, status="error",
                          messages=[f"staging root {storage.root} {what} on {store.where()}: create it, "
                                    f"writable by {storage.username}"])
            return StorageReport(check=check, root=storage.root, free_bytes=None)
        try:
            store.check_writable(storage.root)
        except StagingError as exc:
            check = Check(name=name, target=target, status="error", messages=[str(exc)])
            return StorageReport(check=check, root=storage.root, free_bytes=None)
        free = store.free_bytes(storage.root)
    messages = [f"staging root {storage.root} exists and is writable"]
    status = "ok"
    if storage.transport != "local":
        messages.insert(0, f"connected with key authentication; host key verified against {storage.known_hosts_file}")
        if cfg.target is not None and storage.stage_path != "relay":
            status, line = _stage_path_check(storage, cfg.target.cos)
            messages.append(line)
    get_run_logger().info("%s (%s): %s; %s bytes free in %s", name, target, status, f"{free:,}", storage.root)
    return StorageReport(check=Check(name=name, target=target, status=status, messages=messages),
                         root=storage.root, free_bytes=free)


def _stage_path_check(storage: Storage, cos: Cos) -> tuple[Status, str]:
    """How staged files will reach COS (storage.stage_path): an error only when `direct` cannot be."""
    if cos.local_directory:
        return "ok", "staged files are copied into the local object directory by the worker"
    try:
        found = check_storage_upload(storage, cos.direct_endpoint)
    except StorageCannotUpload as exc:
        if storage.stage_path == "direct":
            return "error", f"storage.stage_path is direct, but {exc}"
        return "ok", f"staged files will be relayed through the worker: {exc}"
    return "ok", f"the storage server uploads staged files to COS itself ({found})"


def _problem(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _cos_check(cos: Cos) -> Check:
    """The bucket takes a small probe object, read back and deleted: what staging needs of the credentials."""
    probe = f"zimage-preflight-{secrets.token_hex(8)}"
    try:
        store = open_object_store(cos, settings=PREFLIGHT_COS)
        where = store.describe()
        store.put_bytes(probe, b"zimage preflight probe\n")
        try:
            found = store.head(probe)
        finally:
            store.delete(probe)
        if found is None:
            return Check(name=cos_check_name(), target=where, status="error",
                         messages=[f"the probe object {probe} was written but cannot be read back"])
    except Exception as exc:  # every failure is this check's finding (credentials, bucket, endpoint)
        return Check(name=cos_check_name(), target=cos.bucket, status="error", messages=[_problem(exc)])
    how = "local object directory" if cos.local_directory else f"endpoint {cos.direct_endpoint}"
    return Check(name=cos_check_name(), target=where, status="ok",
                 messages=[f"a probe object was written, read back and deleted ({how})"])


def _vpc_check(cfg: Config, image: str | None, timing: Timing) -> Check:
    """What deploy-image checks before it creates anything, each step reported; nothing is created."""
    target = cfg.cloud
    where = f"{target.region} ({target.vpc_url})"
    messages: list[str] = []
    try:
        cloud = connect(target, resolve_api_key(target), timing=timing)
        messages.append(f"API key accepted by IAM (account {account_id(cloud.authenticator, timing.retry)}); "
                        f"resource group {target.resource_group}")
    except Exception as exc:  # nothing further can be asked without a client
        return Check(name=vpc_check_name(), target=where, status="error",
                     messages=[_problem(exc), "not checked further: mover image, image names, image import"])
    errors = 0

    def mover_image() -> str:
        found = check_mover_image.fn(cloud, target.mover.image)
        return f"mover image {found.name} (newest matching {target.mover.image!r})"

    def image_import() -> str:
        return f"the VPC image service may read COS instance {check_image_import(cloud, target.cos.instance_name).name}"

    steps: list[tuple[str, Callable[[], str]]] = [("mover image", mover_image)]
    if image is not None:
        spec, index = cfg.image(image), [i.name for i in cfg.images].index(image)

        def product_names() -> str:
            check_product_names.fn(cloud, spec, index)
            return f"custom image {spec.name} and snapshot {spec.snapshot_name}: names free"

        steps.append(("product names", product_names))
    steps.append(("image import", image_import))
    for what, step in steps:
        try:
            messages.append(step())
        except Exception as exc:  # each step's failure is reported and the next still checked
            errors += 1
            messages.append(f"{what}: {_problem(exc)}")
    return Check(name=vpc_check_name(), target=where, status="error" if errors else "ok", messages=messages)


def _logged(check: Check) -> Check:
    get_run_logger().info("%s (%s): %s: %s", check.name, check.target, check.status, "; ".join(check.messages))
    return check


@task(name="check-cos", task_run_name="check-cos", cache_policy=NO_CACHE)
def check_cos(config: str) -> Check:
    """The bucket (or local object directory) the config names takes a probe object."""
    return _logged(_cos_check(load_config(config).cloud.cos))


@task(name="check-vpc", task_run_name="check-vpc", cache_policy=NO_CACHE)
def check_vpc(config: str, image: str | None, retry_base_seconds: float = 1.0) -> Check:
    """What deploy-image asks of IAM, the resource controller and the VPC API before it creates anything."""
    return _logged(_vpc_check(load_config(config), image, _preflight_timing(retry_base_seconds)))


def _preflight_timing(retry_base_seconds: float) -> Timing:
    """One retry of what may pass: a preflight reports an unreachable endpoint, it does not wait it out."""
    return Timing(retry=RetryPolicy(attempts=2, base_delay=retry_base_seconds, max_delay=retry_base_seconds * 30))
