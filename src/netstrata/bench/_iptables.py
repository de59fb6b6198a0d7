"""The netfilter side of `netstrata bench datapath`: iptables-nft chains and an nftables set.

Rulesets are built as text (iptables-restore / nft -f input) from the same synthetic peers the
eBPF side gets as policy entries, and loaded into a node namespace the bench created. Every
command runs through `nsenter --net=<that namespace>`; a namespace without netstrata's bench
prefix is refused, so the host's own firewall is never read or written. Deleting the
namespace at the end removes every rule with it.

Shapes (what NetworkPolicy implementations and kube-proxy put in the forwarding path):

* iptables, stateless: FORWARD jumps to one policy chain holding N non-matching
  `-s peer/32 -d server/32 -p tcp --dport P -j ACCEPT` rules, then the rules that match the
  benchmark traffic (both directions, since nothing tracks connections), then DROP; every
  packet walks the whole chain.
* iptables with a conntrack bypass: the same, behind `-m conntrack --ctstate
  ESTABLISHED,RELATED -j ACCEPT` as the first FORWARD rule (kube-proxy/Calico), so only the
  first packet of a connection walks the chain.
* nftables set: one rule looking `ip saddr . tcp dport` up in a hashed set of N + 1
  elements: the O(1) netfilter peer of the eBPF hash/LPM lookup.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Final

from netstrata.errors import NetstrataError
from netstrata.netns import netns_exists, netns_path

POLICY_CHAIN: Final = "NST-POLICY"
NFT_TABLE: Final = "nstbench"
NETNS_PREFIX: Final = "nstbn"
"""Every namespace of `bench datapath` starts with this; netfilter is only touched in those."""
PEER_BASE: Final = int(IPv4Address("10.128.0.0"))
"""Synthetic peers live in 10.128.0.0/9, never the benchmark pods' own addresses."""
_NFT_CHUNK: Final = 5000
"""Set elements per `add element` statement: keeps nft's parser memory flat at 100k."""
_LOAD_TIMEOUT_S: Final = 600


class FirewallError(NetstrataError):
    """A netfilter tool is missing or refused a ruleset."""


@dataclass(frozen=True, slots=True)
class Peer:
    """One synthetic policy peer: an address, the identity it would have, an allowed port."""

    ip: IPv4Address
    identity: int
    port: int


def synthetic_peers(n: int, seed: int = 1) -> list[Peer]:
    """`n` distinct peers, deterministic for `seed`; a larger `n` extends a smaller one."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        out.append(Peer(IPv4Address(PEER_BASE + 1 + i), 0x10000 + i, rnd.randrange(1024, 65536)))
    return out


def missing_tools() -> str | None:
    """Why the netfilter sides cannot run here, or None."""
    for tool, package in (("nsenter", "util-linux"), ("iptables-nft-restore", "iptables"),
                          ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install {package})"
    return None


def _in_netns(netns: str, argv: Sequence[str], stdin: str) -> float:
    """Run `argv` inside bench namespace `netns` with `stdin`; returns seconds taken."""
    if not netns.startswith(NETNS_PREFIX) or not netns_exists(netns):
        raise FirewallError(f"refusing to touch netfilter outside a bench namespace ({netns!r})")
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        raise FirewallError("nsenter not found (apt-get install util-linux)")
    start = time.perf_counter()
    done = subprocess.run([nsenter, f"--net={netns_path(netns)}", *argv], input=stdin,
                          capture_output=True, text=True, check=False, timeout=_LOAD_TIMEOUT_S)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise FirewallError(f"{argv[0]} in {netns} failed: {done.stderr.strip()[-800:]}")
    return took


def iptables_ruleset(peers: Sequence[Peer], client: IPv4Address, server: IPv4Address,
                     ports: Sequence[int], *, established_first: bool) -> str:
    """iptables-restore input for the filter table (see the module docstring)."""
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]",
             f":{POLICY_CHAIN} - [0:0]"]
    if established_first:
        lines.append("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    lines.append(f"-A FORWARD -j {POLICY_CHAIN}")
    lines.extend(f"-A {POLICY_CHAIN} -s {p.ip}/32 -d {server}/32 -p tcp -m tcp --dport {p.port} "
                 "-j ACCEPT" for p in peers)
    for port in ports:  # the benchmark traffic matches last
        lines.append(f"-A {POLICY_CHAIN} -s {client}/32 -d {server}/32 -p tcp -m tcp "
                     f"--dport {port} -j ACCEPT")
    for port in ports:
        lines.append(f"-A {POLICY_CHAIN} -s {server}/32 -d {client}/32 -p tcp -m tcp "
                     f"--sport {port} -j ACCEPT")
    lines.append(f"-A {POLICY_CHAIN} -j DROP")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def nft_ruleset(peers: Sequence[Peer], client: IPv4Address, server: IPv4Address,
                ports: Sequence[int]) -> str:
    """`nft -f` input: (re)create the bench table with its set and forward chain."""
    elements = [f"{p.ip} . {p.port}" for p in peers] + [f"{client} . {port}" for port in ports]
    port_set = ", ".join(str(p) for p in ports)
    lines = [
        f"table ip {NFT_TABLE}",
        f"delete table ip {NFT_TABLE}",
        f"table ip {NFT_TABLE} {{",
        "  set peers { type ipv4_addr . inet_service; }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy drop;",
        f"    ip daddr {server} ip saddr . tcp dport @peers accept",
        f"    ip saddr {server} ip daddr {client} tcp sport {{ {port_set} }} accept",
        "  }",
        "}",
    ]
    for chunk in _chunks(elements, _NFT_CHUNK):
        lines.append(f"add element ip {NFT_TABLE} peers {{ {', '.join(chunk)} }}")
    return "\n".join(lines) + "\n"


def load_iptables(netns: str, ruleset: str) -> float:
    """Replace the filter table of `netns` (iptables-nft-restore); returns seconds taken."""
    tool = shutil.which("iptables-nft-restore")
    if tool is None:
        raise FirewallError("iptables-nft-restore not found (apt-get install iptables)")
    return _in_netns(netns, [tool], ruleset)


def load_nft(netns: str, ruleset: str) -> float:
    """Load an `nft -f` script into `netns`; returns seconds taken."""
    tool = shutil.which("nft")
    if tool is None:
        raise FirewallError("nft not found (apt-get install nftables)")
    return _in_netns(netns, [tool, "-f", "-"], ruleset)


__all__ = ["NETNS_PREFIX", "FirewallError", "Peer", "iptables_ruleset", "load_iptables", "load_nft",
           "missing_tools", "nft_ruleset", "synthetic_peers"]
