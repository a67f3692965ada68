"""zimage domain core: models and pure functions, no I/O.

Nothing here reads files, opens sockets or starts processes; the adapters in ``infra``
do that and hand plain values in.
"""
