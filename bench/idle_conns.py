#!/usr/bin/env python3
"""Idle keep-alive connection footprint of an HTTP server.

Opens N connections (default 10,000) to HOST:PORT, sends one keep-alive
`GET PATH HTTP/1.1` request on each, reads the whole response, and keeps every
connection open and idle. It samples the server's total RSS (sum of VmRSS over
the server process and all its descendants, from /proc) before opening and
after all connections are open and idle (after a settle delay), and prints one
JSON object:

  {"server_pids": [...], "conns_requested": N, "conns_open": n, "alive": a,
   "rss_before": B, "rss_after": A, "rss_after_close": C,
   "bytes_per_conn": (A - B) / n, ...}

Everything is bounded by timeouts: each connect+request has --conn-timeout,
the whole opening phase has --open-timeout.

Usage: idle_conns.py --pid PID --port PORT [--host 127.0.0.1] [--path /1k]
                     [--conns 10000] [--settle 2] [--parallel 256]
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import time


def descendants(pid):
    """pid plus every process whose ancestry leads to pid (from /proc/*/stat)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces or parentheses: split after the last ')'.
        fields = stat[stat.rfind(b")") + 2:].split()
        parent[int(entry)] = int(fields[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sorted(tree)


def rss_bytes(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


async def read_response(reader):
    """Read one HTTP/1.1 response (Content-Length or chunked); return status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # data + CRLF (or final CRLF)
            if size == 0:
                break
    elif headers.get("connection", "").lower() == "close":
        raise ConnectionError("server does not keep the connection alive")
    return status


async def open_one(args, sem, request, conns, stats):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(args.host, args.port, limit=65536),
                args.conn_timeout)
            writer.write(request)
            status = await asyncio.wait_for(read_response(reader), args.conn_timeout)
            stats[status // 100] = stats.get(status // 100, 0) + 1
            conns.append((reader, writer))
        except Exception as e:  # noqa: BLE001 - we count every kind of failure
            key = type(e).__name__
            stats["errors"][key] = stats["errors"].get(key, 0) + 1
            try:
                writer.transport.abort()  # type: ignore[possibly-undefined]
            except Exception:  # noqa: BLE001
                pass


def close_all(conns):
    import socket
    import struct
    for _, writer in conns:
        sock = writer.get_extra_info("socket")
        try:
            # RST instead of FIN: no TIME_WAIT left behind on the client ports.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except Exception:  # noqa: BLE001
            pass
        writer.transport.abort()


async def main_async(args):
    pids = descendants(args.pid)
    request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host_header}\r\n"
               "User-Agent: velox-bench-idle\r\nAccept: */*\r\n\r\n").encode()
    # Warm-up: one burst of --parallel concurrent requests on connections that are then
    # closed, so lazy initialisation and the proxy's upstream keep-alive pool (which grows
    # with the number of concurrent requests, not with idle clients) are in place before
    # the "before" sample and do not count as per-connection cost.
    warm_conns, warm = [], {"errors": {}}
    sem = asyncio.Semaphore(args.parallel)
    await asyncio.wait_for(asyncio.gather(*(open_one(args, sem, request, warm_conns, warm)
                                            for _ in range(args.parallel))), args.open_timeout)
    close_all(warm_conns)
    await asyncio.sleep(args.settle)
    rss_before = rss_bytes(descendants(args.pid))

    conns, stats = [], {"errors": {}}
    sem = asyncio.Semaphore(args.parallel)
    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(open_one(args, sem, request, conns, stats))
             for _ in range(args.conns)]
    done, pending = await asyncio.wait(tasks, timeout=args.open_timeout)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    open_secs = time.monotonic() - t0

    await asyncio.sleep(args.settle)
    pids = descendants(args.pid)
    rss_after = rss_bytes(pids)
    alive = sum(1 for reader, _ in conns if not reader.at_eof())

    close_all(conns)
    await asyncio.sleep(args.settle)
    rss_after_close = rss_bytes(descendants(args.pid))

    n = len(conns)
    result = {
        "server_pids": pids,
        "conns_requested": args.conns,
        "conns_open": n,
        "alive": alive,
        "status_classes": {f"{k}xx": v for k, v in stats.items() if k != "errors"},
        "errors": stats["errors"],
        "timed_out_unopened": len(pending),
        "open_seconds": round(open_secs, 2),
        "rss_before": rss_before,
        "rss_after": rss_after,
        "rss_after_close": rss_after_close,
        "bytes_per_conn": round((rss_after - rss_before) / n, 1) if n else None,
    }
    print(json.dumps(result))
    return 0 if n == args.conns and alive == n else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pid", type=int, required=True, help="server (master) pid")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--host-header", default="localhost")
    p.add_argument("--path", default="/1k")
    p.add_argument("--conns", type=int, default=10000)
    p.add_argument("--parallel", type=int, default=100,
                   help="connections being opened at once")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to let the server settle")
    p.add_argument("--conn-timeout", type=float, default=10.0)
    p.add_argument("--open-timeout", type=float, default=120.0)
    args = p.parse_args()

    need = args.conns + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
