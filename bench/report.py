"""The benchmark table: each scenario's figure, its bare baseline, the ratio and the target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Row = tuple[str, str, str, str, str]


def table(doc: dict[str, Any]) -> str:
    """A Markdown table of the results in `doc` (as written by bench.run)."""
    results: dict[str, Any] = doc["results"]
    rows: list[Row] = []
    for name, render in _RENDERERS.items():
        if name in results:
            rows.extend(render(results[name]))
    header = ("scenario", "measured", "bare baseline", "target", "met")
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(5)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [f"machine: {doc['machine']}", "", line(header),
           "| " + " | ".join("-" * w for w in widths) + " |"]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def _cold(r: dict[str, Any]) -> list[Row]:
    grouping = ""
    if r.get("writes_per_fsync") is not None:
        grouping = (f"; {r['creates_in_flight']} creates in flight, "
                    f"{r['writes_per_fsync']} writes per fsync")
    disk = f" (disk: {r['disk_fsyncs_per_s']:,} fsyncs/s)" if "disk_fsyncs_per_s" in r else ""
    return [(f"cold converge, {r['codes']:,} codes on {r['locks']:,} locks",
             f"{r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU{grouping}",
             f"{r['baseline_wall_s']:.1f} s for {r['baseline_codes']:,} codes, one "
             f"transaction per fsync{disk}; ratio {r['ratio']:.2f}",
             "ratio >= 3.0", _met(r["ratio"] >= 3.0))]


def _scale(r: dict[str, Any]) -> list[Row]:
    points = ", ".join(f"{p['locks']:,}: {p['wall_s']:.1f} s / {p['peak_rss_mb']:.0f} MB"
                       for p in r["points"])
    exponent = r.get("exponent")
    return [("scale (locks: converge, peak RSS)", points, "-",
             "no worse than linear (exponent <= 1.1)",
             _met(None if exponent is None else exponent <= 1.1)
             + (f" (exponent {exponent})" if exponent is not None else ""))]


def _steady(r: dict[str, Any]) -> list[Row]:
    return [(f"steady state, {r['codes']:,} codes, {r['seconds']:.0f} s idle",
             f"{r['cpu_share_pct']:.3f}% of a core, RSS {r['rss_mb']:.0f} MB "
             f"(peak {r['peak_rss_mb']:.0f} MB)",
             f"{r['baseline_cpu_share_pct']:.3f}%, RSS {r['baseline_rss_mb']:.0f} MB",
             "< 2% of a core", _met(r["cpu_share_pct"] < 2))]


def _churn(r: dict[str, Any]) -> list[Row]:
    return [(f"schedule churn, {r['codes']:,} codes, {r['simulated_days']} days",
             f"{r['decisions_per_s']:,} decisions/s", "-", "reported", "-")]


def _startup(r: dict[str, Any]) -> list[Row]:
    rows = [(f"startup, {r['codes']:,} codes on {r['locks']:,} locks",
             f"{r['wall_s']:.2f} s to READY", f"{r['baseline_wall_s']:.2f} s (Python + imports)",
             "< 1 s", _met(r["wall_s"] < 1))]
    if "rss_mb" in r:
        rows.append((f"daemon memory, {r['codes']:,} codes on {r['locks']:,} locks, settled",
                     f"RSS {r['rss_mb']:.0f} MB (peak {r['peak_rss_mb']:.0f} MB)",
                     f"{r['baseline_rss_mb']:.0f} MB (Python + the daemon's imports)",
                     "RSS < 60 MB", _met(r["rss_mb"] < 60)))
    return rows


def _generic(name: str, target: str, check: Callable[[dict[str, Any]], bool | None]
             ) -> Callable[[dict[str, Any]], list[Row]]:
    def render(r: dict[str, Any]) -> list[Row]:
        if "skipped" in r:
            return [(name, r["skipped"], "-", target, "-")]
        shown = {k: v for k, v in r.items() if not k.startswith("baseline")}
        base = {k: v for k, v in r.items() if k.startswith("baseline")}
        return [(name, ", ".join(f"{k} {v}" for k, v in shown.items()),
                 ", ".join(f"{k} {v}" for k, v in base.items()) or "-", target,
                 _met(check(r)))]

    return render


def _p99_ok(r: dict[str, Any]) -> bool | None:
    p99 = r.get("p99_ms")
    return None if p99 is None else p99 < 10


def _replay_ok(r: dict[str, Any]) -> bool | None:
    ratio = r.get("ratio")
    return None if ratio is None else ratio >= 0.3


def _radio(r: dict[str, Any]) -> list[Row]:
    if "skipped" in r:
        return [("radio (Z-Wave mock)", r["skipped"], "-", "-", "-")]

    def day(node: str) -> str:
        ratio = r[f"{node}_day_ratio"]
        return f"ratio {ratio:.3f}" if ratio is not None else "-"

    return [
        (f"radio: frames per code converged ({r['codes']} codes a lock)",
         f"{r['frames_per_code_converged']}", f"{r['baseline_frames_per_code_converged']}",
         "<= 2", _met(r["frames_per_code_converged"] <= 2)),
        ("radio: frames per lock per day, steady, no checksum",
         f"{r['plain_frames_per_day']} ({day('plain')})",
         f"{r['baseline_plain_frames_per_day']} (hourly re-read)",
         "daily sweep + events", _met(r["plain_frames_per_day"] <= r["codes"])),
        ("radio: frames per lock per day, steady, checksum",
         f"{r['checksum_frames_per_day']} ({day('checksum')})",
         f"{r['baseline_checksum_frames_per_day']} (hourly re-read)",
         "<= 1 checksum read per reconcile", _met(r["checksum_frames_per_day"] <= 24)),
        ("radio: frames per lock per day, steady, no checksum, multi-code reads",
         f"{r['multi_frames_per_day']} ({day('multi')})",
         f"{r['baseline_multi_frames_per_day']} (hourly re-read)",
         "daily sweep + events", _met(r["multi_frames_per_day"] <= r["codes"])),
        (f"radio: first scan of an empty {r['slots']}-slot lock, no checksum / checksum / "
         "multi-code reads",
         f"{r['plain_first_scan_frames']} / {r['checksum_first_scan_frames']} / "
         f"{r['multi_first_scan_frames']} frames",
         f"{r['slots']} (slot-by-slot walk)", "reads only what it must",
         _met(r["multi_first_scan_frames"] < r["slots"])),
        (f"radio: first scan of a {r['slots']}-slot lock holding {r['codes']} codes, no "
         "checksum / checksum / multi-code reads",
         f"{r['plain_rescan_frames']} / {r['checksum_rescan_frames']} / "
         f"{r['multi_rescan_frames']} frames (ratio {r['multi_rescan_ratio']:.3f})",
         f"{r['slots']} (slot-by-slot walk)", "reads only what it must",
         _met(r["multi_rescan_frames"] < r["slots"])),
        *_managed_first(r.get("managed_first")),
        *_managed_first_checksum(r.get("managed_first_checksum")),
        *_radio_floor(r.get("latency")),
        *_radio_supervision(r.get("supervision")),
    ]


def _zigbee_radio(r: dict[str, Any]) -> list[Row]:
    if "skipped" in r:
        return [("radio (zigpy fake)", r["skipped"], "-", "-", "-")]
    walk = f"{r['walk_frames']} (slot-by-slot walk)"
    ratio = r["day_ratio"]
    return [
        (f"zigbee radio: frames per code converged ({r['codes']} codes)",
         f"{r['frames_per_code_converged']}", f"{r['baseline_frames_per_code_converged']}",
         "<= 2", _met(r["frames_per_code_converged"] <= 2)),
        ("zigbee radio: frames per lock per day, steady (no checksum on Door Lock)",
         f"{r['frames_per_day']}" + (f" (ratio {ratio:.3f})" if ratio is not None else ""),
         f"{r['baseline_frames_per_day']} (hourly re-read)", "daily sweep + events",
         _met(r["frames_per_day"] <= r["codes"])),
        ("zigbee radio: a code cleared at the keypad, read and put back",
         f"{r['keypad_clear_frames']} frames", f"{r['baseline_keypad_clear_frames']} frames",
         "read at once", _met(r["keypad_clear_frames"] <= 3)),
        (f"zigbee radio: first scan of an empty {r['slots']}-user lock / holding "
         f"{r['codes']} codes",
         f"{r['first_scan_frames']} / {r['rescan_frames']} frames "
         f"(ratio {r['first_scan_ratio']:.3f} / {r['rescan_ratio']:.3f})", walk,
         "the lock's own users only", _met(r["first_scan_frames"] < r["walk_frames"])),
        (f"zigbee radio: back from a 5-minute outage ({r['slots']}-user lock)",
         f"{r['outage_frames']} frames (ratio {r['outage_ratio']:.3f})", walk,
         "reads only what it must", _met(r["outage_frames"] < r["walk_frames"])),
    ]


def _radio_supervision(r: dict[str, Any] | None) -> list[Row]:
    if not r:
        return []
    return [(f"radio: frames per code converged / cleared, lock with Supervision ({r['codes']} "
             "codes)",
             f"{r['frames_per_code_converged']} / {r['frames_per_clear']} "
             f"(ratio {r['ratio']:.3f})",
             f"{r['baseline_frames_per_code_converged']} / {r['baseline_frames_per_clear']} "
             "(same lock unsupervised)",
             "1 where the lock confirms", _met(r["frames_per_code_converged"] <= 1))]


def _managed_first(r: dict[str, Any] | None) -> list[Row]:
    if not r:
        return []
    frames = r["frames_until_verified"]
    return [(f"radio: restart, frames until the {r['codes']} managed codes are verified, "
             f"{r['slots']}-slot lock, no checksum",
             f"{frames} frames (ratio {r['ratio']:.3f}); whole first scan "
             f"{r['first_scan_frames']} ({r['first_scan_ratio']:.3f})",
             f"{r['walk_frames']} (slot-by-slot walk first)", "managed slots first",
             _met(frames is not None and r["verified_before_walk"]
                  and frames <= r["codes"] and r["first_scan_frames"] <= r["walk_frames"]))]


def _managed_first_checksum(r: dict[str, Any] | None) -> list[Row]:
    if not r:
        return []
    return [(f"radio: restart, {r['codes']} managed codes, {r['slots']}-slot lock whose "
             "checksum agrees", f"{r['first_scan_frames']} frames (whole first scan)",
             f"{r['walk_frames']} (slot-by-slot walk)", "the checksum alone",
             _met(r["first_scan_frames"] <= 1))]


def _radio_floor(r: dict[str, Any] | None) -> list[Row]:
    if not r:
        return []
    ratio = r["ratio"]
    return [(f"radio: converge {r['codes']} codes on one Z-Wave lock, "
             f"{r['tx_delay_ms']} ms a frame on the air",
             f"{r['converge_s']} s, {r['converge_frames']} frames (ratio {ratio:.3f})",
             f"{r['floor_s']} s, {r['floor_frames']} commands sent bare "
             f"(set {r['set_command_s']} s, get {r['get_command_s']} s)",
             "within 10% of the floor", _met(ratio is not None and ratio <= 1.10))]


_RENDERERS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "cold_converge": _cold,
    "scale": _scale,
    "steady_state": _steady,
    "schedule_churn": _churn,
    "startup": _startup,
    "api_latency": _generic("API latency, create code to driver call", "p99 < 10 ms", _p99_ok),
    "upstream_replay": _generic("upstream replay after an outage", "ratio >= 0.3", _replay_ok),
    "radio": _radio,
    "zigbee_radio": _zigbee_radio,
}
