"""The policy roll-out loop: observe in audit mode, suggest allow-lists, replay, enforce.

* `suggest`: observed flows -> minimal CiliumNetworkPolicy allow-lists, one per workload.
* `replay`: recorded flows re-decided under a candidate policy set (reference datapath).
* `reference_flows`: the flows agents would report for a connection walked through the
  reference datapath (the pure, root-free version of the loop and its tests).

Pure and synchronous; the CLI (`netstrata policy suggest|replay`) reads and writes the files.
"""

from netstrata.rollout.replay import ReplayReport, ReplayRow, replay
from netstrata.rollout.suggest import SuggestStats, suggest_policies

__all__ = ["ReplayReport", "ReplayRow", "SuggestStats", "replay", "suggest_policies"]
