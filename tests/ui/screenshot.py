"""Take the README's screenshot: `python tests/ui/screenshot.py [OUT.png]`.

Serves the page tests' sample flows (`sample_flows.shop_flows`: every verdict class) with
`netstrata ui --flows` and photographs it in headless Chromium.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from browserkit import chromium_missing, edges, headless_chromium, ui_process, wait_for
from sample_flows import shop_flows, write_flows

DEFAULT = Path(__file__).resolve().parents[2] / "docs" / "img" / "service-map.png"


def main(out: Path = DEFAULT) -> int:
    if missing := chromium_missing():
        print(f"screenshot: {missing}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        flows = write_flows(Path(tmp) / "flows.jsonl", shop_flows())
        with ui_process("--flows", str(flows)) as url, headless_chromium(1440, 1100) as driver:
            driver.get(url + "/")
            wait_for(lambda: edges(driver), what="edges")
            out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(out))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT))
