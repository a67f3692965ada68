"""Host names and addresses reserved for examples (RFC 2606, RFC 6761, RFC 5737), pure.

The shipped example config uses them, so a run against it fails where it first connects; that
failure then says the config still holds example values instead of looking like a network fault.
"""

from __future__ import annotations

import ipaddress

_EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org", "example", "invalid", "test")
_EXAMPLE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def is_example_host(host: str) -> bool:
    """True for a name under a domain reserved for examples, or an address of a documentation network."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.lower().rstrip(".")
        return any(name == d or name.endswith("." + d) for d in _EXAMPLE_DOMAINS)
    return any(address in network for network in _EXAMPLE_NETWORKS)


def example_hint(host: str) -> str:
    """A sentence to add to a connection failure when `host` is an example's, else ''."""
    if not is_example_host(host):
        return ""
    return (
        f"; {host} is a name reserved for examples: this config still holds example values "
        "(examples/zimage.yaml ships so), point the run at your own config"
    )
