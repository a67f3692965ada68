"""How a deploy ends when the network symbols are part of it: the same rule for hosts and IBM Cloud."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.states import Completed, State

from zimage.host_symbols import LEFT_TO_WAZI, SymbolPlan

STATE_WITHOUT_SYMBOLS = "Completed without network symbols"


def deploy_outcome(summary: dict[str, Any], symbols: SymbolPlan, done: str) -> State[Any]:
    """Completed with the summary; named STATE_WITHOUT_SYMBOLS when symbols were due and not written,
    so that the run list shows it, never only a log line."""
    logger = get_run_logger()
    if symbols.written or symbols.status == LEFT_TO_WAZI:
        logger.info("network symbols %s", symbols.status)
        return Completed(message=f"{done}; network symbols {symbols.status}", data=summary)
    logger.warning("network symbols %s", symbols.status)
    return Completed(message=f"network symbols {symbols.status}", name=STATE_WITHOUT_SYMBOLS, data=summary)
