"""`netstrata ui --flows FILE` in real headless Chromium, no root needed: the map shows an
allowed and a dropped edge, filters narrow the flow table server-side, a bad filter shows
observe's error, and flows appended to the file appear without a reload."""

from __future__ import annotations

from pathlib import Path

from browserkit import edges, headless_chromium, rows, set_filter, ui_process, wait_for
from sample_flows import DB, INTRUDER, T0, shop_flows, write_flows

from netstrata.observe.builders import Packet, flow_from_l34
from netstrata.policy.types import Direction, Proto


def test_map_table_filters_and_live_updates(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows.jsonl", shop_flows())
    with ui_process("--flows", str(flows)) as url, headless_chromium() as driver:
        driver.get(url + "/")
        drawn = wait_for(lambda: edges(driver), what="edges on the map")
        by_class = {(e["source"], e["destination"], e["verdict"]): int(e["count"]) for e in drawn}
        assert by_class[("pod:c1/shop/frontend", "pod:c1/shop/api", "forwarded")] == 6
        assert by_class[("pod:c1/tools/scanner", "pod:c1/shop/db", "dropped")] == 3
        assert {e["verdict"] for e in drawn} == {"forwarded", "dropped", "l7-denied", "audit"}
        everything = rows(driver)
        assert len(everything) == len(shop_flows())

        set_filter(driver, "verdict", "DROPPED")
        dropped = wait_for(lambda: (r := rows(driver)) != everything and r, what="filtered rows")
        assert {r["verdict"] for r in dropped} == {"DROPPED"}
        assert len(dropped) == 4  # three L3/L4 drops and one L7 denial
        assert {e["verdict"] for e in edges(driver)} == {"dropped", "l7-denied"}

        set_filter(driver, "to-pod", "shop/db")
        db_drops = wait_for(lambda: (r := rows(driver)) != dropped and r, what="to-pod rows")
        assert {(r["source"].split(":")[0], r["cls"]) for r in db_drops} == {
            ("tools/scanner-0", "dropped")
        }

        set_filter(driver, "q", "--port notaport")
        error = wait_for(lambda: driver.find_element("id", "error").text, what="error text")
        assert "port" in error

        set_filter(driver, "q", "")
        wait_for(lambda: len(rows(driver)) == 3, what="rows back after clearing the bad flag")
        pkt = Packet(
            "10.1.1.13", "10.1.1.12", Proto.TCP, 41000, 5432, source=INTRUDER, destination=DB
        )
        write_flows(
            flows,
            [
                flow_from_l34(
                    pkt,
                    event="drop",
                    direction=Direction.INGRESS,
                    time_ns=T0 + 10**9,
                    node_name="c1/node-1",
                    drop_reason=133,
                )
            ],
        )
        wait_for(lambda: len(rows(driver)) == 4, timeout=3, what="the appended flow, live")
