"""extract-component keeps no more volumes in flight than the system's volume limit has slots, as the
operator set it (the run holds the system's run limit, so nothing else extracts from that system)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.demo import demo_config
from zimage import ckd

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]
SYSTEM = "SYSLIM"


def site(tmp: Path, volumes: int, log: Path) -> Path:
    doc = demo_config(tmp, volumes=volumes, cylinders=1)
    source = doc["sources"][0]
    source["name"] = SYSTEM
    agent = source["extraction"]["command"]
    # the command's start and end, per volume, in the order the shell sees them
    source["extraction"]["command"] = (
        f"echo start {{volser}} $(date +%s.%N) >> {log} && {agent} && echo end {{volser}} $(date +%s.%N) >> {log}"
    )
    (tmp / "source").mkdir()
    for comp in doc["components"]:
        comp["source"] = SYSTEM
        for vol in comp["volumes"]:
            with (tmp / "source" / f"{vol['volser']}.ckd").open("wb") as out:
                out.writelines(ckd.volume_tracks(vol["volser"], 1, data_every=2))
    (tmp / "storage").mkdir()
    path = tmp / "zimage.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def most_at_once(log: Path) -> int:
    events = []
    for line in log.read_text().splitlines():
        kind, _, at = line.split()
        events.append((float(at), 1 if kind == "start" else -1))
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        running += step
        peak = max(peak, running)
    assert running == 0 and len(events) > 0, events
    return peak


@pytest.mark.parametrize("slots", [1, 3])
def test_volumes_in_flight_never_exceed_the_limit(tmp_path: Path, slots: int) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from flows.extract_component import extract_component
    from tasks.extract import ensure_limit, volume_limit

    log = tmp_path / "commands.log"
    config = site(tmp_path, 7, log)
    ensure_limit(volume_limit(SYSTEM), slots)
    with get_client(sync_client=True) as client:  # as `prefect gcl update` would
        client.update_global_concurrency_limit(volume_limit(SYSTEM), GlobalConcurrencyLimitUpdate(limit=slots))

    result = extract_component(str(config), "demo-data")

    assert [v["volser"] for v in result["volumes"]] == [f"USR{n:03d}" for n in range(1, 8)]
    peak = most_at_once(log)
    assert peak <= slots
    if slots > 1:
        assert peak >= 2, "the volumes ran one after another although the limit allows more"
