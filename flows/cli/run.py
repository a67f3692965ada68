"""`zimage run FLOW ...` and `zimage demo`: run flows on this machine.

Without PREFECT_API_URL the flows run against Prefect's ephemeral API; with it, the runs appear
in that server's UI. Prefect is imported only here, when a flow is run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import config_or_exit, fail
from zimage.config import Config

app = typer.Typer(help="Run a flow on this machine, parameters as options.", no_args_is_help=True)

ConfigOpt = Annotated[Path, typer.Option("--config", help="Path of the zimage YAML config")]
ImageOpt = Annotated[str, typer.Option("--image", help="Name of the image in the config")]
GenerationOpt = Annotated[
    list[str] | None,
    typer.Option("--generation", help="COMPONENT=YYYY-MM-DD_HH_MM_SS; default: the newest verified (repeatable)"),
]


def _quiet_console(verbose: bool) -> None:
    # Must happen before Prefect configures logging (i.e. before the flows are imported).
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _generations(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    out = {}
    for value in values:
        component, sep, generation = value.partition("=")
        if not sep or not component or not generation:
            raise fail(f"--generation {value!r}: expected COMPONENT=YYYY-MM-DD_HH_MM_SS")
        out[component] = generation
    return out


def _run(call: Any, **kwargs: Any) -> Any:
    """Run a flow; a failure ends the command with exit 1 and the flow's own message."""
    try:
        return call(**kwargs)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the flow already logged the details; the user gets the reason
        typer.echo(f"zimage: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None


def _show(result: Any) -> None:
    import json

    typer.echo(json.dumps(result, indent=2, default=str))


@app.command("preflight")
def preflight(
    config: ConfigOpt,
    image: Annotated[str | None, typer.Option("--image", help="Check the sources of this image")] = None,
    system: Annotated[str | None, typer.Option("--system", help="Check this source system")] = None,
    no_cloud: Annotated[bool, typer.Option("--no-cloud", help="Do not reach COS and the VPC API")] = False,
) -> None:
    """Reach sources, storage, COS and the VPC API; check IEASYM/TCP/IP symbols and staging free space."""
    config_or_exit(config)
    _quiet_console(verbose=True)
    from flows.preflight import preflight as flow

    _show(_run(flow, config=str(config), image=image, system=system, cloud_check=not no_cloud))


@app.command("extract-component")
def extract_component(
    config: ConfigOpt,
    component: Annotated[str, typer.Option("--component", help="Name of the component in the config")],
    generation: Annotated[
        str | None, typer.Option("--generation", help="Resume this unfinished generation (YYYY-MM-DD_HH_MM_SS)")
    ] = None,
) -> None:
    """Copy every volume of a component to the storage server as a new generation, verified."""
    config_or_exit(config, component=component)
    _quiet_console(verbose=True)
    from flows.extract_component import extract_component as flow

    _show(_run(flow, config=str(config), component=component, generation=generation))


@app.command("build-image")
def build_image(
    config: ConfigOpt,
    image: ImageOpt,
    generation: GenerationOpt = None,
    verify: Annotated[bool, typer.Option("--verify", help="Recompute every staged file's sha256 first")] = False,
) -> None:
    """Group staged components into an image: image-metadata.json and devmap."""
    config_or_exit(config, image=image)
    _quiet_console(verbose=True)
    from flows.build_image import build_image as flow

    built = _run(flow, config=str(config), image=image, generations=_generations(generation), verify=verify)
    typer.echo(built.devmap, nl=False)


@app.command("deploy-image")
def deploy_image(config: ConfigOpt, image: ImageOpt, generation: GenerationOpt = None) -> None:
    """Stage, convert, publish the custom image and snapshot, and tear down temporary resources."""
    config_or_exit(config, image=image)
    _quiet_console(verbose=True)
    from flows.deploy_image import deploy_image as flow

    _show(_run(flow, config=str(config), image=image, generations=_generations(generation)))


HostOpt = Annotated[str, typer.Option("--host", help="Name of the emulator host in the config (hosts[].name)")]


def _host_or_exit(cfg: Config, host: str) -> None:
    try:
        cfg.host(host)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None


def host_plan(config: Path, cfg: Config, image: str, host: str) -> None:
    """`zimage plan CONFIG --image I --host H`: what deploy-host would do, read from storage and host."""
    _host_or_exit(cfg, host)
    from tasks.host import plan_deploy

    try:
        _, _, _, plan, path = plan_deploy(str(config), image, host)
    except Exception as exc:  # the reason is the answer: unreachable host, no Python, no generation...
        raise fail(f"{type(exc).__name__}: {exc}", 1) from None
    typer.echo(plan.text() + f"data path: {path}\n", nl=False)


@app.command("deploy-host")
def deploy_host(config: ConfigOpt, image: ImageOpt, host: HostOpt, generation: GenerationOpt = None) -> None:
    """Install IMAGE on an emulator host: a new verified set beside the current one, then switch to it."""
    cfg = config_or_exit(config, image=image)
    _host_or_exit(cfg, host)
    _quiet_console(verbose=False)
    from flows.cli.progress import flow_progress
    from flows.deploy_host import deploy_host as flow

    with flow_progress({"transfer": 100}):
        result = _run(flow, config=str(config), image=image, host=host, generations=_generations(generation))
    typer.echo(result.pop("markdown"), err=True)
    _show(result)


def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="Working directory of the demo")] = Path("zimage-demo"),
    volumes: Annotated[int, typer.Option("--volumes", min=1, max=20, help="Data volumes besides two SYSRES")] = 2,
    cylinders: Annotated[int, typer.Option("--cylinders", min=1, max=1113, help="Cylinders per 3390 volume")] = 30,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's log lines")] = False,
) -> None:
    """Run the whole pipeline on this machine: no z/OS, no IBM Cloud, no server needed."""
    _quiet_console(verbose)
    from flows.cli.progress import flow_progress
    from flows.demo import demo as flow
    from tasks.demo import DemoWorkdirError, check_workdir
    from zimage.sizing import human

    try:
        check_workdir(workdir.resolve())
    except DemoWorkdirError as exc:
        raise fail(str(exc)) from None
    count = volumes + 2
    typer.echo(f"zimage demo in {workdir.resolve()}: {count} volumes of {cylinders} cylinders", err=True)
    with flow_progress({"extract": count, "stage": count, "convert": 100}):
        result = _run(flow, workdir=str(workdir), volumes=volumes, cylinders=cylinders)
    rate = human(result["bytes"] / result["seconds"]) if result["seconds"] else "-"
    typer.echo(
        f"\nDone in {result['seconds']} s: {result['volumes']} volumes, {human(result['bytes'])} "
        f"({human(result['gz_bytes'])} staged compressed), {rate}/s overall.\n"
        f"  qcow2:       {result['qcow2']}\n"
        f"  data volume: {result['data_image']}\n"
        f"  report:      {result['report']}\n"
        f"  config:      {result['config']}\n"
        "Next: `zimage plan {config} --image {image}`; with `prefect server start` running and "
        "PREFECT_API_URL set, the runs and their artifacts show in the Prefect UI.".format(**result)
    )


@app.command("refresh")
def refresh(
    config: ConfigOpt,
    image: ImageOpt,
    create_instance: Annotated[
        bool, typer.Option("--create-instance", help="Also create a Wazi aaS server from the new image")
    ] = False,
    instance_name: Annotated[str | None, typer.Option("--instance-name", help="Default: <image>-vsi")] = None,
    subnet: Annotated[str | None, typer.Option("--subnet", help="Subnet of the instance (name or id)")] = None,
    ssh_key: Annotated[str | None, typer.Option("--ssh-key", help="SSH key of the instance (name or id)")] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Deploy to this emulator host instead of IBM Cloud")
    ] = None,
    also_ibm_cloud: Annotated[
        bool, typer.Option("--also-ibm-cloud", help="With --host: deploy to IBM Cloud as well")
    ] = False,
) -> None:
    """Preflight, extract every component of IMAGE, build and deploy it; optionally an instance."""
    cfg = config_or_exit(config, image=image)
    if host is not None:
        _host_or_exit(cfg, host)
    _quiet_console(verbose=True)
    from flows.refresh import refresh as flow

    if create_instance and not (subnet and ssh_key):
        raise fail("--create-instance needs --subnet and --ssh-key")
    _show(_run(flow, config=str(config), image=image, create_instance=create_instance, instance_name=instance_name,
               instance_subnet=subnet, instance_ssh_key=ssh_key, host=host, also_ibm_cloud=also_ibm_cloud))


@app.command("create-instance")
def create_instance(
    config: ConfigOpt,
    image: ImageOpt,
    name: Annotated[str, typer.Option("--name", help="Name of the new virtual server")],
    subnet: Annotated[str, typer.Option("--subnet", help="Subnet name or id")],
    ssh_key: Annotated[str, typer.Option("--ssh-key", help="VPC SSH key name or id")],
    profile: Annotated[str, typer.Option("--profile", help="s390x instance profile")] = "mz2o-2x16",
    reserved_ip: Annotated[str | None, typer.Option("--reserved-ip", help="Primary address to reserve")] = None,
    security_group: Annotated[str | None, typer.Option("--security-group", help="Name or id")] = None,
) -> None:
    """A Wazi aaS server from IMAGE's custom image, with a data volume restored from its snapshot."""
    config_or_exit(config, image=image)
    _quiet_console(verbose=True)
    from flows.create_instance import create_instance as flow

    _show(_run(flow, config=str(config), image=image, name=name, profile=profile, subnet=subnet, ssh_key=ssh_key,
               reserved_ip=reserved_ip, security_group=security_group))


@app.command("reap-orphans")
def reap_orphans(
    config: ConfigOpt,
    delete: Annotated[bool, typer.Option("--delete", help="Delete what is found (default: only list it)")] = False,
    older_than_minutes: Annotated[
        float | None,
        typer.Option(
            "--older-than-minutes", "--older-than",
            help="Also reap builds whose state nothing can tell once their newest resource is older than this "
            "(default: keep them)",
        ),
    ] = None,
) -> None:
    """List (or with --delete, remove) temporary resources of builds that are no longer running."""
    config_or_exit(config)
    _quiet_console(verbose=True)
    from flows.reap_orphans import reap_orphans as flow

    _show(_run(flow, config=str(config), dry_run=not delete, older_than_minutes=older_than_minutes))


InstanceOpt = Annotated[str, typer.Option("--instance", help="Name of the Wazi aaS server in instances[]")]


def _instance_or_exit(config: Path, instance: str) -> None:
    cfg = config_or_exit(config)
    try:
        cfg.instance(instance)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None


@app.command("stop-instance")
def stop_instance(
    config: ConfigOpt,
    instance: InstanceOpt,
    force: Annotated[
        bool, typer.Option("--force", help="Skip the z/OS shutdown (subsystems may not start cleanly next time)")
    ] = False,
) -> None:
    """Shut z/OS down with the configured command, wait until it no longer answers, stop the instance."""
    _instance_or_exit(config, instance)
    _quiet_console(verbose=True)
    from flows.stop_instance import stop_instance as flow

    _show(_run(flow, config=str(config), instance=instance, force=force))


@app.command("start-instance")
def start_instance(config: ConfigOpt, instance: InstanceOpt) -> None:
    """Start a stopped Wazi aaS server."""
    _instance_or_exit(config, instance)
    _quiet_console(verbose=True)
    from flows.start_instance import start_instance as flow

    _show(_run(flow, config=str(config), instance=instance))


@app.command("export-instance")
def export_instance(
    config: ConfigOpt,
    instance: InstanceOpt,
    component: Annotated[str, typer.Option("--component", help="Component the new generation belongs to")],
    stop: Annotated[bool, typer.Option("--stop", help="Stop a running server first (as stop-instance)")] = False,
    keep_snapshot: Annotated[
        bool, typer.Option("--keep-snapshot", help="Keep the snapshot of the data volume")
    ] = False,
    system: Annotated[
        str | None, typer.Option("--system", help="Staging system name, for a component not in the config")
    ] = None,
) -> None:
    """Copy the volumes of a stopped Wazi aaS server to the storage server as a new generation."""
    _instance_or_exit(config, instance)
    _quiet_console(verbose=True)
    from flows.export_instance import export_instance as flow

    result = _run(flow, config=str(config), instance=instance, component=component, stop=stop,
                  keep_snapshot=keep_snapshot, system=system)
    _show(result)
    if isinstance(result, dict) and result.get("component_yaml"):
        typer.echo(f"\nThe config has no component {component!r}; add it:\n\n{result['component_yaml']}", err=True)
