"""Task of the IPL-chain check: read the chosen generations' manifests, then follow the chain on the
staged volumes where they lie (the storage server), logging what was read and how fast."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.configfile import load_config
from infra.volume_lookup import ipl_report
from tasks.build import read_manifests
from tasks.retry import retryable
from zimage.ipl_report import IplReport

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
