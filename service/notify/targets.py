"""Which addresses notifications may reach (``refusal``): without HPO_NOTIFY_ALLOW no loopback,
link-local (cloud metadata), private or other reserved address. Checked when a study is created
(``check_receivers``: a 422 naming the field) and again at every delivery, since a name may
resolve elsewhere later. (The spec's ``notify`` entries: service/spec/notify.py.)

A name that does not resolve within ``RESOLVE_TIMEOUT_S`` is refused: the lookup runs inside
POST /studies and the dispatcher's round, which a hung resolver would otherwise hold for as long
as the system's resolver retries.
"""

from __future__ import annotations

import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from service.errors import SpecError
from service.spec.schema import StudySpec

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

RESOLVE_TIMEOUT_S = 5.0
# lookups run here so that a caller can stop waiting; a hung one holds a thread until the
# resolver gives up, and when all are held the next lookups wait their turn (and time out)
_RESOLVER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hpo-resolve")


def check_receivers(spec: StudySpec, allow: str | None) -> None:
    """SpecError naming the first ``notify`` entry whose URL may not be called."""
    for index, target in enumerate(spec.notify):
        reason = refusal(target.url, allow)
        if reason is not None:
            raise SpecError(f"notify.{index}.url", reason)


def refusal(url: str, allow: str | None) -> str | None:
    """Why ``url`` may not be called (None: it may). ``allow``: HPO_NOTIFY_ALLOW, hosts or CIDRs,
    comma-separated; an address it admits is allowed whatever its range."""
    host = urlsplit(url).hostname or ""
    lookup = _RESOLVER.submit(socket.getaddrinfo, host, None, proto=socket.IPPROTO_TCP)
    try:
        resolved = {info[4][0] for info in lookup.result(timeout=RESOLVE_TIMEOUT_S)}
    except TimeoutError:
        return f"{host} did not resolve within {RESOLVE_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"{host} does not resolve ({exc.strerror or exc})"
    hosts, networks = _allow_list(allow)
    if host.lower() in hosts:
        return None
    for text in sorted(resolved):
        address = ipaddress.ip_address(str(text).split("%")[0])
        if any(address in network for network in networks):
            continue
        if allow is not None:
            return f"{host} resolves to {address}, outside HPO_NOTIFY_ALLOW"
        kind = _reserved_kind(address)
        if kind is not None:
            return f"{host} resolves to {address}, a {kind} address (set HPO_NOTIFY_ALLOW to allow it)"
    return None


def _reserved_kind(address: Address) -> str | None:
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("private", address.is_private),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return kind
    return None


def _allow_list(allow: str | None) -> tuple[set[str], list[Network]]:
    hosts: set[str] = set()
    networks: list[Network] = []
    for entry in (allow or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.lower())
    return hosts, networks
