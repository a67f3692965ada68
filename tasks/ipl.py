"""Tasks of the IPL chain: the check (read the chosen generations' manifests, then follow the chain on
the staged volumes where they lie, the storage server, logging what was read and how fast), and the
IEASYMxx members a target's network symbols go into."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.configfile import load_config
from infra.volume_lookup import VolumeLookup, ipl_report, volume_files
from infra.volume_lookup import check_ipl_chain as follow_chain
from tasks.build import read_manifests
from tasks.retry import retryable
from zimage import host_set
from zimage.config import Config, Network
from zimage.host_symbols import LEFT_TO_WAZI, SymbolPlan, not_written, plan_symbols, requested_network
from zimage.ipl_chain import chain_input
from zimage.ipl_report import IplReport
from zimage.manifests import ComponentManifest

RETRIES = 2


@task(
    name="check-ipl-chain",
    cache_policy=NO_CACHE,
    retries=RETRIES,
    retry_delay_seconds=2.0,
    retry_condition_fn=retryable,
)
def check_ipl_chain(config: str, image: str, generations: dict[str, str] | None = None) -> IplReport:
    """The IPL chain of `image` on its newest staged generations (or those named); raises NoGeneration
    when a component has none yet."""
    log = get_run_logger()
    cfg = load_config(config)
    report = ipl_report(cfg, image, read_manifests.fn(config, image, generations))
    for v in report.volumes:
        rate = v.read_bytes / v.seconds / 1e6 if v.seconds else 0.0
        log.info(
            "IPL chain of %s: %s: read %s of %s bytes on %s in %.1f s (%.0f MB/s)",
            image,
            v.volser,
            f"{v.read_bytes:,}",
            f"{v.file_size:,}",
            report.where,
            v.seconds,
            rate,
        )
    for step in report.steps:
        log.info("IPL chain of %s: %s", image, step)
    return report


def ieasym_rewrites(
    cfg: Config, image: str, manifests: dict[str, ComponentManifest], network: Network
) -> SymbolPlan:
    """The IEASYMxx members the IPL chain leads to, read on the storage server, with `network` set in them."""
    try:
        with VolumeLookup(cfg.storage) as lookup:
            result = follow_chain(lookup, chain_input(cfg, image), volume_files(cfg, manifests))
    except Exception as exc:  # the deploy goes on without them, and its state and summary say so
        return not_written(f"the IPL chain could not be read on the storage server: {type(exc).__name__}: {exc}")
    return plan_symbols(result.evaluation.ieasym, network)


@task(name="find-ieasym", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def find_ieasym(
    config: str,
    image: str,
    manifests: dict[str, ComponentManifest] | None = None,
    host: str | None = None,
    generations: dict[str, str] | None = None,
) -> SymbolPlan:
    """What the deployed copy of the IEASYMxx members gets: an emulator host's network values, or for
    IBM Cloud the image's when they differ from Wazi aaS's own (which it sets itself). Without
    `manifests`, those of `generations` are read, and only when there are symbols to write."""
    cfg = load_config(config)
    spec = cfg.image(image)
    network = host_set.network_of(cfg.host(host), spec) if host is not None else requested_network(spec)
    if network is None:
        return SymbolPlan(rewrites=[], status=LEFT_TO_WAZI)
    if manifests is None:
        manifests = read_manifests.fn(config, image, generations)
    return ieasym_rewrites(cfg, image, manifests, network)
