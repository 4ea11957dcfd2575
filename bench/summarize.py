#!/usr/bin/env python3
"""Turn bench/run.sh raw results into the Markdown report (stdout).

Input lines (results TSV, space separated):
  KIND TARGET ROUND CPU_TICKS CLK_TCK requests=.. duration_us=.. p50_us=.. p99_us=.. err_*=..
  KIND is "tput" (wrk -c$CONNS) or "lat"/"lat1cpu" (wrk -c1) for scenario A, "hit1k"/"hit100k"
  for scenario C (cache hits), "obs"/"obs100k" for scenario D (Velox observability on/off, 1 KiB
  and 100 KiB hits), "logpeer" for scenario D's nginx access log on/off, "ceil1k" for
  scenario E (1 KiB hits next to a canned-response server).
  Extra keys: origin_reqs (origin requests during the run), utime_ticks/stime_ticks (the server's
  user and system CPU, CPU_TICKS = their sum), hit_before/hit_after (1 when the proxy reported a
  cache hit just before/after the run), log_lines (access-log lines written).
Idle TSV lines: TARGET {json from idle_conns.py}
Headers TSV lines (tab separated): TARGET origin|client HEADER VALUE (empty when absent): the
  headers the origin received from each proxy and those the client received (scenario A).
"""

import argparse
import datetime
import json
import statistics

# Scenario A; velox_busy is Velox with server.busy_poll = true.
TARGETS = ["direct", "velox", "nginx", "nginx_eq", "varnish", "velox_busy"]
A_PROXIES = TARGETS[1:]
PROXIES = ["velox", "nginx", "varnish"]
CEILING = ["canned", "nginx", "velox"]                          # scenario E

# Targets from issue 2 ("Done when").
TARGET_CPU_RATIO = 1.0        # velox req/CPU-s >= 1.0x nginx
TARGET_ADDED_P50_US = 150     # p50 added latency <= 150 us
TARGET_IDLE_BYTES = 2048      # <= 2 KiB RSS per idle connection
# Targets from issue 3 (cache hits, req per server CPU-s).
TARGET_HIT1K_RATIO = 2.0      # 1 KiB hits >= 2.0x nginx and >= 2.0x Varnish
TARGET_HIT100K_RATIO = 1.3    # 100 KiB hits >= 1.3x the better of nginx and Varnish
# Target from issue 5: hits with metrics and access logging on >= 0.95x with both off.
TARGET_OBS_RATIO = 0.95
VARIANTS = ["velox_off", "velox", "velox_log"]
VARIANT_DESC = {
    "velox_off": "metrics off, request ids off",
    "velox": "metrics + request ids on (defaults), no access log",
    "velox_log": "metrics + request ids on, JSON access log to a file",
}


def parse_results(path):
    runs = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 6:
                continue
            kind, target, rnd, ticks, clk = parts[:5]
            kv = dict(p.split("=", 1) for p in parts[5:])
            r = {k: float(v) for k, v in kv.items()}
            r.update(kind=kind, target=target, round=int(rnd),
                     cpu_s=int(ticks) / int(clk))
            secs = r["duration_us"] / 1e6
            r["rps"] = r["requests"] / secs if secs else 0.0
            r["req_per_cpu_s"] = r["requests"] / r["cpu_s"] if r["cpu_s"] > 0 else float("nan")
            if "utime_ticks" in r and r["requests"]:
                r["user_us"] = r["utime_ticks"] / int(clk) / r["requests"] * 1e6
                r["sys_us"] = r["stime_ticks"] / int(clk) / r["requests"] * 1e6
                r["cpu_us"] = r["cpu_s"] / r["requests"] * 1e6
            r["errors"] = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
            r["non2xx"] = r["err_status"]
            runs.append(r)
    return runs


def parse_idle(path):
    out = {}
    with open(path) as f:
        for line in f:
            name, _, js = line.partition(" ")
            if js.strip():
                out[name] = json.loads(js)
    return out


def parse_headers(path):
    out = {}
    if path:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 4:
                    out[tuple(parts[:3])] = parts[3]
    return out


def has(runs, target, kind):
    return any(r["target"] == target and r["kind"] == kind for r in runs)


def med(runs, target, kind, key):
    vals = [r[key] for r in runs if r["target"] == target and r["kind"] == kind and key in r]
    vals = [v for v in vals if v == v]  # drop NaN
    return statistics.median(vals) if vals else None


def allv(runs, target, kind, key, fmt):
    vals = [r[key] for r in runs if r["target"] == target and r["kind"] == kind]
    return ", ".join(fmt(v) for v in vals)


def fnum(v, digits=0):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def fus(v):
    if v is None:
        return "n/a"
    return f"{v/1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


def ratio(a, b):
    return a / b if a is not None and b else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True)
    p.add_argument("--idle", required=True)
    p.add_argument("--headers", default="")
    p.add_argument("--command", required=True)
    p.add_argument("--duration", type=int)
    p.add_argument("--rounds", type=int)
    p.add_argument("--conns", type=int)
    p.add_argument("--latency-duration", type=int)
    p.add_argument("--idle-conns", type=int)
    p.add_argument("--machine", default="")
    a = p.parse_args()

    runs = parse_results(a.results)
    idle = parse_idle(a.idle)
    headers = parse_headers(a.headers)
    L = []
    w = L.append
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    w(f"# Velox benchmark results ({now})\n")
    w(f"Command: `{a.command}`\n")
    if a.machine:
        w(a.machine + "\n")

    verdicts = []
    if any(r["kind"] == "tput" for r in runs):
        w(f"## Scenario A: uncached proxying of a 1 KiB response\n")
        w(f"wrk -t1 -c{a.conns} -d{a.duration}s, medians of {a.rounds} interleaved round(s). "
          "\"Server CPU\" is utime+stime of all the server's processes during the run; for "
          "`direct` it is the origin nginx (which shares CPU 1 with wrk).\n")
        w("| target | req/s | p50 | p99 | server CPU-s | req per server CPU-s | socket errors | non-2xx |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for t in [t for t in TARGETS if has(runs, t, "tput")]:
            errs = sum(r["errors"] for r in runs if r["target"] == t and r["kind"] == "tput")
            non2 = sum(r["non2xx"] for r in runs if r["target"] == t and r["kind"] == "tput")
            w(f"| {t} | {fnum(med(runs, t, 'tput', 'rps'))} | {fus(med(runs, t, 'tput', 'p50_us'))} "
              f"| {fus(med(runs, t, 'tput', 'p99_us'))} | {fnum(med(runs, t, 'tput', 'cpu_s'), 2)} "
              f"| {fnum(med(runs, t, 'tput', 'req_per_cpu_s'))} | {int(errs)} | {int(non2)} |")
        w("")
        w("Per-round requests per server CPU-second (for spread):\n")
        for t in [t for t in A_PROXIES if has(runs, t, "tput")]:
            w(f"- {t}: {allv(runs, t, 'tput', 'req_per_cpu_s', lambda v: fnum(v))}")
        w("")
        vc = med(runs, "velox", "tput", "req_per_cpu_s")
        nc = med(runs, "nginx", "tput", "req_per_cpu_s")
        sc = med(runs, "varnish", "tput", "req_per_cpu_s")
        vr = med(runs, "velox", "tput", "rps")
        w("| ratio | req per server CPU-s | req/s |")
        w("|---|---:|---:|")
        w(f"| velox / nginx | {fnum(ratio(vc, nc), 2)}× | {fnum(ratio(vr, med(runs, 'nginx', 'tput', 'rps')), 2)}× |")
        if has(runs, "nginx_eq", "tput"):
            ec = med(runs, "nginx_eq", "tput", "req_per_cpu_s")
            w(f"| velox / nginx_eq (nginx adding the same headers) | {fnum(ratio(vc, ec), 2)}× "
              f"| {fnum(ratio(vr, med(runs, 'nginx_eq', 'tput', 'rps')), 2)}× |")
            w(f"| nginx_eq / nginx (cost of those headers to nginx) | {fnum(ratio(ec, nc), 2)}× "
              f"| {fnum(ratio(med(runs, 'nginx_eq', 'tput', 'rps'), med(runs, 'nginx', 'tput', 'rps')), 2)}× |")
        w(f"| velox / varnish | {fnum(ratio(vc, sc), 2)}× | {fnum(ratio(vr, med(runs, 'varnish', 'tput', 'rps')), 2)}× |")
        w("")
        if headers:
            hdr_targets = [t for t in A_PROXIES if any(k[0] == t for k in headers)]
            w("Headers each proxy added, from one `GET /headers` through it before the runs (the origin "
              "answers that path with the forwarding headers it received; — = absent):\n")
            w("| header | " + " | ".join(hdr_targets) + " |")
            w("|---|" + "---|" * len(hdr_targets))
            keys = []
            for k in headers:
                if (k[1], k[2]) not in keys:
                    keys.append((k[1], k[2]))
            for side, h in keys:
                label = ("to the origin: " if side == "origin" else "to the client: ") + h
                w(f"| {label} | " + " | ".join(f"`{headers[(t, side, h)]}`" if headers.get((t, side, h)) else "—"
                                              for t in hdr_targets) + " |")
            same = []
            for t in hdr_targets:
                o, c = headers.get((t, "origin", "x-request-id")), headers.get((t, "client", "x-request-id"))
                same.append("yes" if o and o == c else "no")
            w("| same request id to the origin and the client | " + " | ".join(same) + " |")
            w("")

        w(f"### Added latency at low load (wrk -t1 -c1 -d{a.latency_duration}s)\n")
        w("Added p50 = median over rounds of (proxy p50 − direct p50), each pair from the same round.\n")
        w("| target | p50 | p99 | added p50 | req/s | socket errors | non-2xx |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        direct = {r["round"]: r["p50_us"] for r in runs if r["target"] == "direct" and r["kind"] == "lat"}
        added = {}
        for t in [t for t in TARGETS if has(runs, t, "lat")]:
            diffs = [r["p50_us"] - direct[r["round"]] for r in runs
                     if r["target"] == t and r["kind"] == "lat" and r["round"] in direct]
            added[t] = statistics.median(diffs) if diffs else None
            errs = sum(r["errors"] for r in runs if r["target"] == t and r["kind"] == "lat")
            non2 = sum(r["non2xx"] for r in runs if r["target"] == t and r["kind"] == "lat")
            w(f"| {t} | {fus(med(runs, t, 'lat', 'p50_us'))} | {fus(med(runs, t, 'lat', 'p99_us'))} "
              f"| {'—' if t == 'direct' else fus(added[t])} | {fnum(med(runs, t, 'lat', 'rps'))} "
              f"| {int(errs)} | {int(non2)} |")
        w("")
        if any(r["kind"] == "lat1cpu" for r in runs):
            w("Diagnostic: the same low-load run with the proxy moved onto CPU 1, next to wrk and "
              "the origin (no request has to wake an idle CPU; `direct` is unchanged):\n")
            w("| target | p50 | p99 | added p50 | req/s |")
            w("|---|---:|---:|---:|---:|")
            for t in [t for t in A_PROXIES if has(runs, t, "lat1cpu")]:
                diffs = [r["p50_us"] - direct[r["round"]] for r in runs
                         if r["target"] == t and r["kind"] == "lat1cpu" and r["round"] in direct]
                a1 = statistics.median(diffs) if diffs else None
                w(f"| {t} | {fus(med(runs, t, 'lat1cpu', 'p50_us'))} | {fus(med(runs, t, 'lat1cpu', 'p99_us'))} "
                  f"| {fus(a1)} | {fnum(med(runs, t, 'lat1cpu', 'rps'))} |")
            w("")
        r1 = ratio(vc, nc)
        verdicts.append(("uncached proxying: req per server CPU-s ≥ 1.0× nginx",
                         f"{fnum(r1, 2)}× ({fnum(vc)} vs {fnum(nc)})",
                         r1 is not None and r1 >= TARGET_CPU_RATIO))
        av = added.get("velox")
        verdicts.append((f"p50 added latency ≤ {TARGET_ADDED_P50_US} µs",
                         f"{fus(av)}",
                         av is not None and av <= TARGET_ADDED_P50_US))
        if has(runs, "velox_busy", "lat"):
            bv = added.get("velox_busy")
            bc = med(runs, "velox_busy", "tput", "req_per_cpu_s")
            w(f"With `server.busy_poll = true` (velox_busy, an option, not the default): added p50 "
              f"{fus(bv)} at low load; {fnum(ratio(bc, nc), 2)}× nginx's req per server CPU-s at "
              f"-c{a.conns}, where the polling counts as CPU time.\n")

    if idle:
        w(f"## Scenario B: idle keep-alive connections\n")
        w(f"{a.idle_conns} connections, one `GET /1k` each, then held open and idle; server RSS "
          "(sum of VmRSS over its processes) before opening and 2 s after all are open.\n")
        w("| server | open | still alive | RSS before | RSS after | RSS growth per conn | RSS after closing | errors |")
        w("|---|---:|---:|---:|---:|---:|---:|---|")
        for t in PROXIES:
            r = idle.get(t)
            if not r:
                w(f"| {t} | n/a | | | | | | no result |")
                continue
            mib = lambda b: f"{b/1048576:.1f} MiB"
            bpc = r["bytes_per_conn"]
            errs = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "none"
            if r.get("timed_out_unopened"):
                errs += f"; {r['timed_out_unopened']} not opened in time"
            w(f"| {t} | {r['conns_open']} | {r['alive']} | {mib(r['rss_before'])} | {mib(r['rss_after'])} "
              f"| {fnum(bpc)} B ({bpc/1024:.2f} KiB) | {mib(r['rss_after_close'])} | {errs} |")
        w("")
        r = idle.get("velox")
        ok = bool(r and r["conns_open"] == a.idle_conns and r["alive"] == r["conns_open"]
                  and r["bytes_per_conn"] is not None and r["bytes_per_conn"] <= TARGET_IDLE_BYTES)
        verdicts.append(("idle keep-alive ≤ 2 KiB RSS per connection",
                         f"{fnum(r['bytes_per_conn'])} B/conn ({r['alive']}/{a.idle_conns} alive)" if r else "n/a",
                         ok))

    def hit_checks(t, kind):
        rs = [r for r in runs if r["target"] == t and r["kind"] == kind]
        hb = sum(int(r.get("hit_before", 0)) for r in rs)
        ha = sum(int(r.get("hit_after", 0)) for r in rs)
        orq = sum(int(r.get("origin_reqs", 0)) for r in rs)
        return f"{hb}/{len(rs)}, {ha}/{len(rs)}", orq

    def table_rows(targets, kind):
        w("| target | req/s | p50 | p99 | server CPU-s | req per server CPU-s | per-round req per CPU-s "
          "| socket errors | non-2xx | hit before, after | origin requests |")
        w("|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|")
        for t in targets:
            rs = [r for r in runs if r["target"] == t and r["kind"] == kind]
            if not rs:
                continue
            errs = sum(r["errors"] for r in rs)
            non2 = sum(r["non2xx"] for r in rs)
            hc, orq = hit_checks(t, kind)
            w(f"| {t} | {fnum(med(runs, t, kind, 'rps'))} | {fus(med(runs, t, kind, 'p50_us'))} "
              f"| {fus(med(runs, t, kind, 'p99_us'))} | {fnum(med(runs, t, kind, 'cpu_s'), 2)} "
              f"| {fnum(med(runs, t, kind, 'req_per_cpu_s'))} "
              f"| {allv(runs, t, kind, 'req_per_cpu_s', lambda v: fnum(v))} "
              f"| {int(errs)} | {int(non2)} | {hc} | {orq} |")
        w("")

    hit_kinds = [k for k in ("hit1k", "hit100k") if any(r["kind"] == k for r in runs)]
    if hit_kinds:
        w("## Scenario C: cache hits from memory\n")
        w(f"wrk -t1 -c{a.conns} -d{a.duration}s on `/cached/1k` and `/cached/100k` (origin: "
          f"`Cache-Control: public, max-age=3600`), caches warmed first, medians of {a.rounds} interleaved "
          "round(s). \"hit before, after\": runs where the proxy's own header reported a hit just before and "
          "just after the run (Velox `Cache-Status: velox; hit`, nginx `X-Cache-Status: HIT`, Varnish "
          "`X-Cache: HIT` from `obj.hits`). \"origin requests\": requests the origin served during the "
          "measured runs (stub_status), summed over rounds; 0 means every request was a hit.\n")
        for kind in hit_kinds:
            size = "1 KiB" if kind == "hit1k" else "100 KiB"
            w(f"### {size} hits\n")
            table_rows(PROXIES, kind)
            vc = med(runs, "velox", kind, "req_per_cpu_s")
            nc = med(runs, "nginx", kind, "req_per_cpu_s")
            sc = med(runs, "varnish", kind, "req_per_cpu_s")
            vr = med(runs, "velox", kind, "rps")
            w("| ratio | req per server CPU-s | req/s |")
            w("|---|---:|---:|")
            w(f"| velox / nginx | {fnum(ratio(vc, nc), 2)}× | {fnum(ratio(vr, med(runs, 'nginx', kind, 'rps')), 2)}× |")
            w(f"| velox / varnish | {fnum(ratio(vc, sc), 2)}× | {fnum(ratio(vr, med(runs, 'varnish', kind, 'rps')), 2)}× |")
            w("")
            hits_ok = all(int(r.get("hit_before", 0)) and int(r.get("hit_after", 0)) and not r["errors"]
                          and not r["non2xx"] and int(r.get("origin_reqs", 0)) == 0
                          for r in runs if r["target"] == "velox" and r["kind"] == kind)
            if kind == "hit1k":
                rn, rs_ = ratio(vc, nc), ratio(vc, sc)
                verdicts.append(("3", f"1 KiB hits: req per server CPU-s ≥ {TARGET_HIT1K_RATIO}× nginx and ≥ {TARGET_HIT1K_RATIO}× Varnish",
                                 f"{fnum(rn, 2)}× nginx, {fnum(rs_, 2)}× Varnish ({fnum(vc)} vs {fnum(nc)} and {fnum(sc)})",
                                 hits_ok and rn is not None and rs_ is not None
                                 and rn >= TARGET_HIT1K_RATIO and rs_ >= TARGET_HIT1K_RATIO))
            else:
                best = max([x for x in (nc, sc) if x is not None], default=None)
                who = "nginx" if best == nc else "Varnish"
                rb = ratio(vc, best)
                verdicts.append(("3", f"100 KiB hits: req per server CPU-s ≥ {TARGET_HIT100K_RATIO}× the better of nginx and Varnish",
                                 f"{fnum(rb, 2)}× {who} ({fnum(vc)} vs {fnum(best)})",
                                 hits_ok and rb is not None and rb >= TARGET_HIT100K_RATIO))

    for kind, size in (("obs", "1k"), ("obs100k", "100k")):
        if not any(r["kind"] == kind for r in runs):
            continue
        label = "1 KiB" if size == "1k" else "100 KiB"
        w(f"## Scenario D: Velox {label} hits, observability on and off\n")
        w(f"Three Velox instances with the same config except `[observe]`/`[access_log]`, wrk -t1 -c{a.conns} "
          f"-d{a.duration}s on `/cached/{size}`, medians of {a.rounds} interleaved round(s):\n")
        for t in VARIANTS:
            w(f"- `{t}`: {VARIANT_DESC[t]}")
        w("")
        table_rows(VARIANTS, kind)
        lines = [(int(r.get("log_lines", 0)), int(r["requests"])) for r in runs
                 if r["target"] == "velox_log" and r["kind"] == kind]
        if lines:
            w("Access-log lines written / requests, per round: "
              + ", ".join(f"{fnum(l)} / {fnum(q)}" for l, q in lines) + "\n")
        off = med(runs, "velox_off", kind, "req_per_cpu_s")
        on = med(runs, "velox", kind, "req_per_cpu_s")
        lg = med(runs, "velox_log", kind, "req_per_cpu_s")
        offr = med(runs, "velox_off", kind, "rps")
        w("| ratio | req per server CPU-s | req/s |")
        w("|---|---:|---:|")
        w(f"| metrics + request ids on / off | {fnum(ratio(on, off), 3)}× | {fnum(ratio(med(runs, 'velox', kind, 'rps'), offr), 3)}× |")
        w(f"| metrics + request ids + access log on / off | {fnum(ratio(lg, off), 3)}× | {fnum(ratio(med(runs, 'velox_log', kind, 'rps'), offr), 3)}× |")
        w("")
        w("These rounds run one server at a time; on a shared machine they move by more than observability "
          "costs. `bash bench/ab.sh` measures the same ratios with both servers loaded at once, under the "
          "same noise (BENCHMARKS.md, \"The command\").\n")
        r5 = ratio(lg, off)
        verdicts.append(("5", f"{label} hits with metrics and access logging on ≥ {TARGET_OBS_RATIO}× both off (req per server CPU-s)",
                         f"{fnum(r5, 3)}× ({fnum(lg)} vs {fnum(off)}); metrics + ids alone {fnum(ratio(on, off), 3)}×",
                         r5 is not None and r5 >= TARGET_OBS_RATIO))

    if any(r["kind"] == "logpeer" for r in runs):
        w("## Scenario D, peer: nginx's access log on its 1 KiB proxy_cache hits\n")
        w("nginx as in scenario C (`nginx`, no access log) next to `nginx_log`, the same with a JSON access log "
          f"of the fields Velox logs (`escape=json`, `buffer=256k flush=1s`), wrk -t1 -c{a.conns} -d{a.duration}s "
          f"on `/cached/1k`, medians of {a.rounds} interleaved round(s):\n")
        table_rows(["nginx", "nginx_log"], "logpeer")
        nl = ratio(med(runs, "nginx_log", "logpeer", "req_per_cpu_s"), med(runs, "nginx", "logpeer", "req_per_cpu_s"))
        nr = ratio(med(runs, "nginx_log", "logpeer", "rps"), med(runs, "nginx", "logpeer", "rps"))
        w("| ratio | req per server CPU-s | req/s |")
        w("|---|---:|---:|")
        w(f"| nginx access log on / off | {fnum(nl, 3)}× | {fnum(nr, 3)}× |")
        w("")

    if any(r["kind"] == "ceil1k" for r in runs):
        w("## Scenario E: the ceiling for 1 KiB hits\n")
        w(f"wrk -t1 -c{a.conns} -d{a.duration}s on `/cached/1k`, medians of {a.rounds} interleaved rotating "
          "round(s). `canned` is bench/canned.c: one thread, edge-triggered epoll, and for each request head "
          "(up to CRLFCRLF, not parsed) the same prebuilt 1 KiB response with hit-like headers. It does no "
          "HTTP work, so its CPU per request is close to the kernel's cost of epoll + recv + send: a "
          "ceiling for any server that answers each request with its own recv and send. nginx: proxy_cache hits; Velox: memory-tier hits; both checked "
          "as in scenario C.\n")
        table_rows(CEILING, "ceil1k")
        w("CPU microseconds per request (user and system from utime and stime separately, medians "
          "over rounds):\n")
        w("| target | user µs/req | system µs/req | total µs/req |")
        w("|---|---:|---:|---:|")
        for t in [t for t in CEILING if has(runs, t, "ceil1k")]:
            w(f"| {t} | {fnum(med(runs, t, 'ceil1k', 'user_us'), 2)} | {fnum(med(runs, t, 'ceil1k', 'sys_us'), 2)} "
              f"| {fnum(med(runs, t, 'ceil1k', 'cpu_us'), 2)} |")
        w("")
        cc = med(runs, "canned", "ceil1k", "req_per_cpu_s")
        nc = med(runs, "nginx", "ceil1k", "req_per_cpu_s")
        vc = med(runs, "velox", "ceil1k", "req_per_cpu_s")
        w("| ratio | req per server CPU-s | req/s |")
        w("|---|---:|---:|")
        for x, y in (("canned", "nginx"), ("velox", "nginx"), ("velox", "canned")):
            w(f"| {x} / {y} | {fnum(ratio(med(runs, x, 'ceil1k', 'req_per_cpu_s'), med(runs, y, 'ceil1k', 'req_per_cpu_s')), 2)}× "
              f"| {fnum(ratio(med(runs, x, 'ceil1k', 'rps'), med(runs, y, 'ceil1k', 'rps')), 2)}× |")
        w("")
        if nc and cc:
            w(f"Issue 3's target for 1 KiB hits, {TARGET_HIT1K_RATIO}× nginx, is {fnum(TARGET_HIT1K_RATIO * nc)} "
              f"req per server CPU-s here; the canned server, with no user-space work, reaches "
              f"{fnum(cc)} ({fnum(ratio(cc, nc), 2)}× nginx). Velox is at {fnum(vc)} ({fnum(ratio(vc, nc), 2)}× nginx, "
              f"{fnum(ratio(vc, cc), 2)}× the canned server). In CPU time per request: the target allows "
              f"{fnum(1e6 / (TARGET_HIT1K_RATIO * nc), 2)} µs, the canned server spends "
              f"{fnum(med(runs, 'canned', 'ceil1k', 'cpu_us'), 2)} µs, Velox {fnum(med(runs, 'velox', 'ceil1k', 'cpu_us'), 2)} µs.\n")

    if verdicts:
        w("## Targets\n")
        w("| issue | target | Velox | met? |")
        w("|---|---|---|---|")
        for v in verdicts:
            issue, name, val, ok = v if len(v) == 4 else ("2",) + tuple(v)
            w(f"| {issue} | {name} | {val} | {'**met**' if ok else '**NOT met**'} |")
        w("")
    print("\n".join(L))


if __name__ == "__main__":
    main()
