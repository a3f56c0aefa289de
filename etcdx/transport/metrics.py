"""Peer network metrics under etcd's names, so dashboards built for etcd work.

Defined once per process in the default registry; several Transports in one
process (tests, simulations) share them, told apart by their labels.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge


def _metric(cls: type, name: str, doc: str, labels: tuple[str, ...]):
    try:
        return cls(name, doc, labels)
    except ValueError:  # already registered: this module was loaded twice (importlib.reload)
        return REGISTRY._names_to_collectors[name]


sent_bytes = _metric(Counter, "etcd_network_peer_sent_bytes_total",
                     "The total number of bytes sent to peers.", ("To",))
received_bytes = _metric(Counter, "etcd_network_peer_received_bytes_total",
                         "The total number of bytes received from peers.", ("From",))
sent_failures = _metric(Counter, "etcd_network_peer_sent_failures_total",
                        "The total number of send failures from peers.", ("To",))
active_peers = _metric(Gauge, "etcd_network_active_peers",
                       "The current number of active peer connections.", ("Local", "Remote"))
disconnected_peers = _metric(Counter, "etcd_network_disconnected_peers_total",
                             "The total number of disconnected peers.", ("Local", "Remote"))


def id_label(member_id: int) -> str:
    """A member id as etcd prints it in labels (types.ID.String: hex, no padding)."""
    return f"{member_id:x}"
