"""Which IP addresses an untrusted link may reach: the SSRF guard's rules (stdlib only)."""
from __future__ import annotations

import ipaddress
from typing import Collection, Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Checked in this order so the error names the most telling reason.
_REASONS = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_private", "private"),
    ("is_reserved", "reserved"),
)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(Exception):
    """A connection was refused because the target address is not public."""


def refusal(address: str | IPAddress) -> str | None:
    """Why `address` must not be reached from an untrusted link, or None if it is public."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address wrapped in IPv6 (::ffff:a.b.c.d, 6to4, Teredo, NAT64) reaches that host.
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = refusal(embedded)
            return f"{inner}, embedded in {ip}" if inner else None
    for attribute, reason in _REASONS:
        if getattr(ip, attribute):
            return reason
    # Catches what the flags above miss, e.g. 100.64.0.0/10 (carrier-grade NAT).
    return None if ip.is_global else "not globally routable"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address forwards to, if it is one of the translation forms."""
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)


def vet(host: str, port: int, addresses: Iterable[str],
        exempt: Collection[tuple[str, int]] = ()) -> list[str]:
    """The addresses `host` may be connected to; raises BlockedAddress if any one is not public.

    One bad address refuses the whole name: a public site has no reason to also resolve to
    an internal one, and trying "the good one first" would leave a rebinding window.
    `exempt` lists (ip, port) endpoints that are trusted although not public.
    """
    vetted = []
    for address in addresses:
        reason = None if (address, port) in exempt else refusal(address)
        if reason:
            raise BlockedAddress(f"{host} resolves to {address} ({reason} address)")
        vetted.append(address)
    if not vetted:
        raise BlockedAddress(f"{host} resolves to no address")
    return vetted
