"""Recognising a refused access in a command's messages (pure): a RACF (or other SAF) denial, a
z/OS UNIX or Linux permission error. Such a failure is the same on every try, so it is reported
at once with the line that says so instead of being retried as if the network had failed."""

from __future__ import annotations

import re

# ICH408I: insufficient authority to a resource; ICH409I: RACHECK/RACROUTE abend (often a
# missing profile); ICH420I: the program is not controlled; IRR012I: verification failed;
# EDC5111I/EDC5139I: z/OS UNIX "permission denied" / "operation not permitted".
_DENIAL = re.compile(
    r"\b(ICH408I|ICH409I|ICH420I|IRR012I|EDC5111I|EDC5139I)\b"
    r"|INSUFFICIENT ACCESS AUTHORITY|NOT AUTHORIZED TO|Permission denied|Operation not permitted",
    re.IGNORECASE,
)


def access_denial(text: str) -> str | None:
    """The first line of `text` that reports a refused access, stripped; None when there is none."""
    for line in text.splitlines():
        if _DENIAL.search(line):
            return line.strip()
    return None
