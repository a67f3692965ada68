"""Stopping a Wazi aaS server gracefully and starting it (DESIGN.md §17).

The seed warns that stopping a server while its subsystems run can damage the next start, so the
graceful stop is: the site's shutdown command over SSH (host key verified, as every connection),
then waiting until z/OS no longer answers on its SSH port, and only then the VPC `stop` action.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

from infra import ssh
from infra.iam import call_api
from infra.vpc import Resource, Vpc, VpcError
from zimage.config import Instance

log = logging.getLogger(__name__)

POWER_ACTIONS = ("stop", "start")


class ShutdownFailed(RuntimeError):
    """The shutdown command failed or z/OS kept answering: the server was left running."""


@dataclass(frozen=True)
class ShutdownResult:
    exit_status: int | None  # None: the connection dropped while the command ran (TCP/IP ending)
    stdout_tail: str
    command_seconds: float
    silent_after_seconds: float  # from the start of the command until z/OS stopped answering


def answers(host: str, port: int, timeout: float = 5.0) -> bool:
    """Whether an SSH server answers at host:port (it accepts the connection and greets with SSH-)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def shutdown_zos(endpoint: Instance, *, poll: float = 10.0, timeouts: ssh.Timeouts = ssh.Timeouts()) -> ShutdownResult:
    """Run the configured shutdown command, then wait until z/OS no longer answers, both within
    `shutdown.timeout_minutes`. ShutdownFailed (naming why) when the command fails or the time
    runs out; the VPC instance is not touched here."""
    limit = endpoint.shutdown.timeout_minutes * 60
    started = time.monotonic()
    where = ssh.where(endpoint)
    command = endpoint.shutdown.command
    status: int | None
    try:
        with ssh.connect(endpoint, timeouts) as session:
            log.info("running the shutdown command on %s: %s", where, command)
            result = session.run(command, timeout=limit)
        status, out = result.status, result.stdout.decode("utf-8", "replace").strip()
        if status != 0:
            raise ShutdownFailed(
                f"the shutdown command on {where} exited with status {status}"
                + (f": {result.stderr_text}" if result.stderr_text else "")
                + "; the server was not stopped and is still running"
            )
    except ssh.CommandTimeout as exc:
        raise ShutdownFailed(
            f"the shutdown command on {where} did not finish within {endpoint.shutdown.timeout_minutes:g} min "
            f"(shutdown.timeout_minutes): {exc}; the server was not stopped and is still running"
        ) from None
    except ssh.ConnectionLost as exc:
        # z/OS UNIX goes away with TCP/IP: a session that drops mid-command is a shutdown under way
        log.info("the connection to %s dropped while the shutdown command ran (%s)", where, exc)
        status, out = None, ""
    except ssh.SshError as exc:
        raise ShutdownFailed(
            f"cannot run the shutdown command on {where}: {exc}; the server was not stopped and is still running"
        ) from None
    command_s = time.monotonic() - started
    log.info("shutdown command on %s ended after %.1f s; waiting until z/OS no longer answers", where, command_s)
    while answers(endpoint.host, endpoint.port, timeout=min(5.0, max(poll, 0.5))):
        elapsed = time.monotonic() - started
        if elapsed >= limit:
            raise ShutdownFailed(
                f"z/OS at {endpoint.host}:{endpoint.port} still answers {elapsed:.0f} s after the shutdown "
                f"command (shutdown.timeout_minutes {endpoint.shutdown.timeout_minutes:g}); the server was not "
                "stopped and is still running"
            )
        log.info("z/OS at %s:%d still answers (%.0f s)", endpoint.host, endpoint.port, elapsed)
        time.sleep(min(poll, max(0.0, limit - elapsed)))
    silent = time.monotonic() - started
    log.info(
        "z/OS at %s:%d no longer answers (%.1f s after the shutdown command began)",
        endpoint.host,
        endpoint.port,
        silent,
    )
    return ShutdownResult(status, out[-2000:], round(command_s, 1), round(silent, 1))


def find_instance(vpc: Vpc, name: str) -> dict[str, Any]:
    """The instance named `name`, as the API shows it; VpcError (404) naming it when there is none."""
    found = vpc.find("instances", name)
    if found is None:
        raise VpcError("find", f"instance {name!r}", 404, f"no instance of that name in zone {vpc.zone}'s region")
    return vpc.get(found)


def power(vpc: Vpc, instance: Resource, action: str, *, timeout: float, poll: float | None = None) -> dict[str, Any]:
    """The VPC `stop` or `start` action, then a wait until the instance is stopped or running."""
    if action not in POWER_ACTIONS:
        raise ValueError(f"instance action {action!r}: expected one of {', '.join(POWER_ACTIONS)}")
    call_api(
        lambda: vpc.client.create_instance_action(instance.id, action),
        operation=action,
        resource=str(instance),
        retry=vpc.retry,
        error=VpcError,
    )
    wanted = "stopped" if action == "stop" else "running"
    log.info("%s: %s requested, waiting until %s", instance, action, wanted)
    return vpc.wait_for(instance, [wanted], timeout=timeout, poll=poll)


def as_resource(raw: dict[str, Any]) -> Resource:
    return Resource(
        kind="instances", id=raw["id"], name=raw.get("name", ""), crn=raw.get("crn", ""), status=raw.get("status")
    )
