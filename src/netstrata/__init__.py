"""netstrata: identity-aware network policy in layers.

Stratum 1 is the kernel (eBPF tc programs, L3/L4 by security identity), stratum 2 the node L7
proxy, stratum 3 mesh authorization. `policy/` computes one result that every stratum and the
pure-Python reference datapath consume.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
