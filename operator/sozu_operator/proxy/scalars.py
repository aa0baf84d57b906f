"""Numbers as Sōzu's command protocol carries them: the ranges of its protobuf integer types,
and the two 64-bit halves its `Uint128` message splits an IPv6 address into.

Shared by the protobuf codec (`wire.codec`), the state file (`proxy.statefile`) and the tests'
value generators, so that all of them agree with Sōzu and with each other.
"""

from __future__ import annotations

import ipaddress

# Inclusive (low, high) bounds of the protobuf integer types.
U32 = (0, 2**32 - 1)
U64 = (0, 2**64 - 1)
I32 = (-(2**31), 2**31 - 1)
I64 = (-(2**63), 2**63 - 1)


def ipv6_halves(ip: ipaddress.IPv6Address) -> tuple[int, int]:
    """`(high, low)` of Sōzu's Uint128 for `ip`: `high` holds the first 8 address bytes, which
    is what Sōzu's conversion code does, whatever the comments in its .proto say."""
    number = int(ip)
    return number >> 64, number & U64[1]


def ipv6_from_halves(high: int, low: int) -> ipaddress.IPv6Address:
    """The inverse of `ipv6_halves`."""
    return ipaddress.IPv6Address((high << 64) | low)
