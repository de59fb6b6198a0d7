"""The service-map web page (`netstrata ui`): the one place in `observe/` that does network I/O.

* `query`: page requests as `observe` filter flags, flows as table rows (pure).
* `feeds`: what fills the page's `FlowStore`: JSON-lines flow files followed as they grow.
* `server`: the asyncio HTTP server (page, JSON API, server-sent events).
* `static/`: the page itself, plain HTML/CSS/JS with an SVG map, shipped as package data
  (no CDN, no build step).
"""

from netstrata.observe.ui.feeds import FileFollower
from netstrata.observe.ui.query import FlowQuery, flow_row, parse_query, select
from netstrata.observe.ui.server import UIServer

__all__ = ["FileFollower", "FlowQuery", "UIServer", "flow_row", "parse_query", "select"]
