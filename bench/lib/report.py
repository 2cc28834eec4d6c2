#!/usr/bin/env python3
"""bench/lib/report.py - turn the samples of one bench run into Markdown and JSON.

    report.py [--suite NAME] [--samples F] [--notes F] [--meta F] [--md OUT] [--json OUT]

Every figure is a median over the interleaved rounds of this run, with min-max beside it;
ratios are taken between medians of the same run and the same case (never against another
run). Without --md/--json the Markdown goes to stdout.
"""
import argparse
import json
import os
import statistics
import sys
from collections import OrderedDict, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
TMP = os.environ.get("BENCH_TMP", os.path.join(HERE, "..", "results", "tmp", "run"))


def load(path):
    out = []
    if path and os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def ckey(case):
    return json.dumps(case, sort_keys=True)


class Data:
    """samples grouped: (suite, table) -> case_key -> contender -> metric -> [values]"""

    def __init__(self, samples):
        self.g = defaultdict(lambda: OrderedDict())
        self.cases = defaultdict(OrderedDict)
        for s in samples:
            t = (s["suite"], s["table"])
            k = ckey(s["case"])
            self.cases[t].setdefault(k, s["case"])
            byc = self.g[t].setdefault(k, OrderedDict())
            m = byc.setdefault(s["contender"], defaultdict(list))
            for name, v in s["m"].items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    m[name].append(float(v))

    def tables(self, suite):
        return [t for (s, t) in self.g if s == suite]

    def stat(self, suite, table, case_key, contender, metric):
        vals = self.g.get((suite, table), {}).get(case_key, {}).get(contender, {}).get(metric)
        if not vals:
            return None
        vals = [v for v in vals if v >= 0] or vals
        return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}

    def contenders(self, suite, table):
        seen = OrderedDict()
        for byc in self.g.get((suite, table), {}).values():
            for c in byc:
                seen[c] = True
        return list(seen)

    def to_json(self):
        out = []
        for (suite, table), cases in self.g.items():
            for k, byc in cases.items():
                for c, metrics in byc.items():
                    row = {"suite": suite, "table": table, "case": json.loads(k), "contender": c, "metrics": {}}
                    for name in metrics:
                        row["metrics"][name] = self.stat(suite, table, k, c, name)
                    out.append(row)
        return out


def fmt(v, digits=None):
    if v is None:
        return "–"
    if digits is None:
        a = abs(v)
        digits = 0 if a >= 100 else 1 if a >= 10 else 2
    return f"{v:,.{digits}f}"


def cell(st, digits=None, spread=True):
    if not st:
        return "–"
    s = fmt(st["median"], digits)
    if spread and st["n"] > 1:
        s += f" [{fmt(st['min'], digits)}–{fmt(st['max'], digits)}]"
    return s


def ratio(a, b):
    if not a or not b or not b["median"]:
        return None
    return a["median"] / b["median"]


def rfmt(r):
    return "–" if r is None else f"{r:.2f}×"


def table_md(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(out)


REACTOR_ORDER = ["epoll", "heisen", "libuv", "libev", "libevent", "heisen-drain", "heisen-again"]


def order(cs, pref):
    return [c for c in pref if c in cs] + [c for c in cs if c not in pref]


def case_sort(cases, keys):
    return sorted(cases.items(), key=lambda kv: tuple(kv[1].get(k, 0) for k in keys))


# ------------------------------------------------------------------ reactor
def reactor_md(d, targets):
    S = "reactor"
    out = []
    t = "time"
    if (S, t) in d.g:
        cs = order(d.contenders(S, t), REACTOR_ORDER)
        cases = case_sort(d.cases[(S, t)], ["timers", "n", "a"])
        for metric, title in (("loop_us", "loop only"), ("total_us", "set-up + loop")):
            out.append(f"\n**µs per run, {title}** — median [min–max] over rounds, and ratio to raw epoll\n")
            rows = []
            for k, case in cases:
                base = d.stat(S, t, k, "epoll", metric)
                row = ["yes" if case["timers"] else "no", case["n"], case["a"]]
                for c in cs:
                    st = d.stat(S, t, k, c, metric)
                    row.append(cell(st) + (f" **{rfmt(ratio(st, base))}**" if st and base else ""))
                rows.append(row)
            out.append(table_md(["timers", "N", "A"] + cs, rows))
        w = cases[0][1].get("w") if cases else None
        out.append(f"\nW = {w} writes per run; events per run = W + A. Time per event ≈ loop µs / (W + A).")
    t = "callgrind"
    if (S, t) in d.g:
        cs = order(d.contenders(S, t), REACTOR_ORDER)
        cases = case_sort(d.cases[(S, t)], ["timers", "n", "a"])
        for metric, title in (("ir_loop_per_event", "loop only"), ("ir_total_per_event", "set-up + loop")):
            out.append(f"\n**User-space instructions per event (callgrind Ir), {title}**, and ratio to raw epoll\n")
            rows = []
            for k, case in cases:
                base = d.stat(S, t, k, "epoll", metric)
                row = ["yes" if case["timers"] else "no", case["n"], case["a"]]
                for c in cs:
                    st = d.stat(S, t, k, c, metric)
                    row.append(cell(st, 0, False) + (f" ({rfmt(ratio(st, base))})" if st and base else ""))
                rows.append(row)
            out.append(table_md(["timers", "N", "A"] + cs, rows))
    t = "syscalls"
    if (S, t) in d.g:
        cs = order(d.contenders(S, t), REACTOR_ORDER)
        cases = case_sort(d.cases[(S, t)], ["timers", "n", "a"])
        out.append("\n**epoll_ctl calls per run: set-up / loop / teardown**, and epoll_wait calls in the loop "
                   "(counted by interposing the libc symbols, one run)\n")
        rows = []
        for k, case in cases:
            row = ["yes" if case["timers"] else "no", case["n"], case["a"]]
            for c in cs:
                a = [d.stat(S, t, k, c, m) for m in ("epoll_ctl_setup", "epoll_ctl_loop", "epoll_ctl_teardown", "epoll_wait_loop")]
                row.append("–" if not a[0] else f"{fmt(a[0]['median'], 0)} / {fmt(a[1]['median'], 0)} / {fmt(a[2]['median'], 0)} ; {fmt(a[3]['median'], 0)}")
            rows.append(row)
        out.append(table_md(["timers", "N", "A"] + cs, rows))

    # targets: heisen <= 1.5x epoll Ir per event, <= 1.10x time, no epoll_ctl in the loop
    if (S, "callgrind") in d.g and "heisen" in d.contenders(S, "callgrind"):
        worst, worst_case, over, total, behind = 0, "", 0, 0, defaultdict(int)
        for k, case in d.cases[(S, "callgrind")].items():
            h = d.stat(S, "callgrind", k, "heisen", "ir_loop_per_event")
            r = ratio(h, d.stat(S, "callgrind", k, "epoll", "ir_loop_per_event"))
            if r is None:
                continue
            total += 1
            if r > worst:
                worst, worst_case = r, f"N={case['n']} A={case['a']}{' timers' if case['timers'] else ''}"
            over += r > 1.5
            for other in ("libuv", "libev", "libevent"):
                o = d.stat(S, "callgrind", k, other, "ir_loop_per_event")
                if o and h["median"] >= o["median"]:
                    behind[other] += 1
        fig = f"worst {worst:.2f}× ({worst_case}); above 1.5× in {over} of {total} cases"
        if behind:
            fig += "; not ahead of " + ", ".join(f"{o} in {n}" for o, n in behind.items())
        targets.append(("reactor: Ir/event ≤ 1.5× raw epoll at every N and A, ahead of libuv/libev/libevent",
                        total > 0 and over == 0 and not behind, fig))
    if (S, "time") in d.g and "heisen" in d.contenders(S, "time"):
        worst, worst_case, over, total = 0, "", 0, 0
        for k, case in d.cases[(S, "time")].items():
            r = ratio(d.stat(S, "time", k, "heisen", "loop_us"), d.stat(S, "time", k, "epoll", "loop_us"))
            if r is None:
                continue
            total += 1
            over += r > 1.10
            if r > worst:
                worst, worst_case = r, f"N={case['n']} A={case['a']}{' timers' if case['timers'] else ''}"
        targets.append(("reactor: loop time ≤ 1.10× raw epoll (medians of this run)", total > 0 and over == 0,
                        f"worst {worst:.2f}× ({worst_case}); above 1.10× in {over} of {total} cases"))
    if (S, "syscalls") in d.g and "heisen" in d.contenders(S, "syscalls"):
        extra = []
        for k, case in d.cases[(S, "syscalls")].items():
            st = d.stat(S, "syscalls", k, "heisen", "epoll_ctl_loop")
            su = d.stat(S, "syscalls", k, "heisen", "epoll_ctl_setup")
            if st and st["median"] > 0:
                extra.append(f"{fmt(st['median'], 0)} in the loop at N={case['n']} A={case['a']} timers={case['timers']}")
            if su and su["median"] > case["n"]:
                extra.append(f"{fmt(su['median'], 0)} in set-up for N={case['n']}")
        targets.append(("reactor: no redundant epoll_ctl (none in the loop, one per watch in set-up)", not extra,
                        "; ".join(extra) if extra else "0 in the loop in every case"))
    # heisen's loop profile (callgrind_annotate, inclusive of nothing: self cost per function)
    profiles = sorted(f for f in os.listdir(TMP) if f.startswith("profile.heisen.")) if os.path.isdir(TMP) else []
    wanted = [f for f in profiles if ".n1000." in f] or profiles
    for f in wanted[:4]:
        import re
        lines = [re.sub(r" \[[^]]*\]$", "", l.rstrip()) for l in open(os.path.join(TMP, f)) if l.strip() and not l.startswith("-")]
        if lines:
            out.append(f"\n<details><summary>heisen loop profile, {f[len('profile.heisen.'):-4]} (callgrind, self Ir per function, top entries)</summary>\n")
            out.append("```\n" + "\n".join(lines[:16]) + "\n```\n</details>")
    return "\n".join(out)


# ------------------------------------------------------------------ fcgi
FCGI_ORDER = ["c-epoll", "heisen-fcgi", "fastcgi-client-rs", "cgi-fcgi"]


def fcgi_md(d, targets):
    S, t = "fcgi", "client"
    if (S, t) not in d.g:
        return ""
    cs = order(d.contenders(S, t), FCGI_ORDER)
    cases = case_sort(d.cases[(S, t)], ["keepalive", "c"])
    rows = []
    for k, case in cases:
        base_rps = d.stat(S, t, k, "c-epoll", "rps")
        base_cpu = d.stat(S, t, k, "c-epoll", "cpu_us_per_req")
        for c in cs:
            rps = d.stat(S, t, k, c, "rps")
            if not rps:
                continue
            cpu = d.stat(S, t, k, c, "cpu_us_per_req")
            err = d.stat(S, t, k, c, "errors")
            rows.append([case["c"], "yes" if case["keepalive"] else "no", c, cell(rps), rfmt(ratio(rps, base_rps)),
                         cell(d.stat(S, t, k, c, "p50_us"), spread=False), cell(d.stat(S, t, k, c, "p99_us"), spread=False),
                         cell(cpu), rfmt(ratio(cpu, base_cpu)), fmt(err["median"], 0) if err else "–"])
    out = ["\n**FastCGI client alone, against the libfcgi responder (unix socket)** — requests/s median [min–max], "
           "latency µs (medians of each round's percentiles), client CPU µs per request (user+sys, whole process)\n",
           table_md(["c", "keep-alive", "client", "req/s", "×c-epoll", "p50 µs", "p99 µs", "CPU µs/req", "×c-epoll", "errors"], rows)]
    t2 = "callgrind"
    if (S, t2) in d.g:
        rows2 = []
        for k, case in case_sort(d.cases[(S, t2)], ["keepalive", "c"]):
            base = d.stat(S, t2, k, "c-epoll", "ir_per_request")
            for c in order(d.contenders(S, t2), FCGI_ORDER):
                st = d.stat(S, t2, k, c, "ir_per_request")
                if st:
                    rows2.append([case["c"], "yes" if case["keepalive"] else "no", c, fmt(st["median"], 0), rfmt(ratio(st, base))])
        out.append("\n**User-space instructions per request (callgrind)**: difference between a short and a long run, "
                   "so start-up cancels out\n")
        out.append(table_md(["c", "keep-alive", "client", "Ir/request", "×c-epoll"], rows2))
    for f in sorted(x for x in (os.listdir(TMP) if os.path.isdir(TMP) else []) if x.startswith("profile.heisen-fcgi."))[:2]:
        import re
        lines = [re.sub(r" \[[^]]*\]$", "", l.rstrip()) for l in open(os.path.join(TMP, f)) if l.strip() and not l.startswith("-")]
        if lines:
            out.append(f"\n<details><summary>heisen-fcgi profile, {f[len('profile.heisen-fcgi.'):-4]} (callgrind, self Ir per function, top entries)</summary>\n")
            out.append("```\n" + "\n".join(lines[:16]) + "\n```\n</details>")
    if "heisen-fcgi" in cs:
        bad, parts = [], []
        for k, case in cases:
            if case["c"] not in (1, 32):
                continue
            r = ratio(d.stat(S, t, k, "heisen-fcgi", "cpu_us_per_req"), d.stat(S, t, k, "c-epoll", "cpu_us_per_req"))
            if r is None:
                continue
            parts.append(f"c={case['c']} ka={case['keepalive']}: {r:.2f}×")
            if r > 1.25:
                bad.append(r)
        targets.append(("heisen-fcgi: client CPU/request ≤ 1.25× the hand-written epoll C client (c=1, 32; with and without keep-alive)",
                        bool(parts) and not bad, "; ".join(parts) or "not measured"))
        for k, case in cases:
            if case["c"] == 32 and case["keepalive"]:
                r = ratio(d.stat(S, t, k, "heisen-fcgi", "rps"), d.stat(S, t, k, "fastcgi-client-rs", "rps"))
                targets.append(("heisen-fcgi: ≥ 1.5× the fastcgi-client crate's requests/s at c=32 (keep-alive)",
                                r is not None and r >= 1.5, rfmt(r)))
    return "\n".join(out)


# ------------------------------------------------------------------ http
HTTP_ORDER = ["heisen-httpd", "nginx-ka", "nginx"]


def http_md(d, targets):
    S, t = "http", "wrk"
    if (S, t) not in d.g:
        return ""
    cs = order(d.contenders(S, t), HTTP_ORDER)
    cases = case_sort(d.cases[(S, t)], ["pinned", "workers", "backend", "conns"])
    rows = []
    for k, case in cases:
        base = d.stat(S, t, k, "nginx-ka", "rps")
        base_cpu = d.stat(S, t, k, "nginx-ka", "front_cpu_us_per_req")
        for c in cs:
            rps = d.stat(S, t, k, c, "rps")
            if not rps:
                continue
            fc = d.stat(S, t, k, c, "front_cpu_us_per_req")
            bc = d.stat(S, t, k, c, "backend_cpu_us_per_req")
            wc = d.stat(S, t, k, c, "wrk_cpu_us_per_req")
            n2 = d.stat(S, t, k, c, "non2xx")
            se = d.stat(S, t, k, c, "socket_errors")
            rows.append(["pinned" if case["pinned"] else "shared", case["workers"], case["backend"], case["conns"], c,
                         cell(rps), rfmt(ratio(rps, base)), cell(d.stat(S, t, k, c, "p50_us"), spread=False),
                         cell(d.stat(S, t, k, c, "p99_us"), spread=False),
                         fmt(n2["median"], 0) if n2 else "–", fmt(se["median"], 0) if se else "–",
                         cell(fc, spread=False), rfmt(ratio(fc, base_cpu)), cell(bc, spread=False), cell(wc, spread=False)])
    out = ["\n**HTTP front + FastCGI backend over unix sockets, loaded by wrk** — requests/s median [min–max], "
           "latency µs (medians of each round's wrk percentiles), non-2xx and socket errors (medians), "
           "front-end, backend and wrk CPU µs per request (/proc utime+stime; wait4 for wrk): how the cores were shared. "
           "shared = everything floats on both cores, wrk -t 2; pinned = wrk -t 1 on cpu0, front and backends on cpu1. nginx-ka = `fastcgi_keep_conn on` + "
           "upstream `keepalive`; nginx = a new FastCGI connection per request.\n",
           table_md(["cores", "workers", "backend", "conns", "front", "req/s", "×nginx-ka", "p50 µs", "p99 µs", "non-2xx",
                     "sock err", "front CPU µs/req", "×nginx-ka", "backend CPU µs/req", "wrk CPU µs/req"], rows)]
    if (S, "callgrind") in d.g:
        rows2 = []
        for k, case in d.cases[(S, "callgrind")].items():
            base = d.stat(S, "callgrind", k, "nginx-ka", "ir_per_request")
            for c in order(d.contenders(S, "callgrind"), HTTP_ORDER):
                st = d.stat(S, "callgrind", k, c, "ir_per_request")
                if st:
                    rows2.append([c, fmt(st["median"], 0), rfmt(ratio(st, base))])
        out.append("\n**Front-end user-space instructions per request** (callgrind; nginx as a single process; "
                   "wrk -c 8 on the libfcgi responder, counted after a warm-up; HTTP keep-alive, FastCGI keep-alive)\n")
        out.append(table_md(["front", "Ir/request", "×nginx-ka"], rows2))
    pf = os.path.join(TMP, "profile.heisen-httpd.txt")
    if os.path.exists(pf):
        import re
        lines = [re.sub(r" \[[^]]*\]$", "", l.rstrip()) for l in open(pf) if l.strip() and not l.startswith("-")]
        if lines:
            out.append("\n<details><summary>heisen-httpd profile (callgrind, inclusive Ir per function, top entries)</summary>\n")
            out.append("```\n" + "\n".join(lines[:34]) + "\n```\n</details>")
    if "heisen-httpd" in cs:
        for k, case in cases:
            if not case["pinned"] or case["backend"] != "libfcgi":
                continue
            h, n = d.stat(S, t, k, "heisen-httpd", "rps"), d.stat(S, t, k, "nginx-ka", "rps")
            hp, np_ = d.stat(S, t, k, "heisen-httpd", "p99_us"), d.stat(S, t, k, "nginx-ka", "p99_us")
            hc, nc = d.stat(S, t, k, "heisen-httpd", "front_cpu_us_per_req"), d.stat(S, t, k, "nginx-ka", "front_cpu_us_per_req")
            r, rc = ratio(h, n), ratio(hc, nc)
            ok = r is not None and r >= 1.2 and hp and np_ and hp["median"] <= np_["median"] and rc is not None and rc <= 0.8
            targets.append((f"heisen-httpd pinned, C responder, {case['conns']} conns: ≥ 1.2× nginx-ka req/s, p99 no worse, front CPU ≤ 0.8×",
                            bool(ok), f"req/s {rfmt(r)}, p99 {cell(hp, spread=False)} vs {cell(np_, spread=False)} µs, CPU {rfmt(rc)}"))
        behind = []
        seen = False
        for k, case in cases:
            if case["backend"] != "php-fpm":
                continue
            h = d.stat(S, t, k, "heisen-httpd", "rps")
            for other in ("nginx-ka", "nginx"):
                o = d.stat(S, t, k, other, "rps")
                if h and o:
                    seen = True
                    if h["median"] < o["median"]:
                        behind.append(f"{'pinned' if case['pinned'] else 'shared'} w={case['workers']} c={case['conns']} vs {other}: {rfmt(ratio(h, o))}")
        if seen:
            targets.append(("heisen-httpd never behind nginx on php-fpm", not behind, "; ".join(behind) or "ahead or equal in every case"))
    return "\n".join(out)


# ------------------------------------------------------------------ memory
def mem_md(d, targets):
    S = "mem"
    out = []
    t = "idle"
    if (S, t) in d.g:
        rows = []
        for k, case in d.cases[(S, t)].items():
            for c in d.contenders(S, t):
                g = lambda m: d.stat(S, t, k, c, m)
                if not g("rss_after_kb"):
                    continue
                rows.append([c, case["conns"], cell(g("held"), 0, False), cell(g("rss_before_kb"), 0, False), cell(g("rss_after_kb"), 0, False),
                             cell(g("rss_per_conn_bytes"), 0, False), cell(g("anon_per_conn_bytes"), 0, False),
                             cell(g("heap_per_conn_bytes"), 0, False), cell(g("closed_by_peer"), 0, False)])
        out.append("\n**Idle keep-alive connections** (one worker; RSS of all the server's processes, kB; per connection = growth / connections; live heap from the LD_PRELOAD counter)\n")
        out.append(table_md(["server", "connections", "held", "RSS before kB", "RSS holding kB", "RSS bytes/conn", "anon bytes/conn", "live heap bytes/conn", "closed by server"], rows))
        if "heisen-httpd" in d.contenders(S, t):
            for k, case in d.cases[(S, t)].items():
                h, n = d.stat(S, t, k, "heisen-httpd", "rss_per_conn_bytes"), d.stat(S, t, k, "nginx", "rss_per_conn_bytes")
                if h and n:
                    targets.append(("memory: less RSS per idle keep-alive connection than nginx", h["median"] < n["median"],
                                    f"{fmt(h['median'], 0)} vs {fmt(n['median'], 0)} bytes"))
    t = "inflight"
    if (S, t) in d.g:
        rows = []
        for k, case in d.cases[(S, t)].items():
            for c in d.contenders(S, t):
                st = d.stat(S, t, k, c, "heap_per_request_bytes")
                if st:
                    rows.append([c, case.get("what", ""), f"{case.get('c1')} → {case.get('c2')}", cell(st, 0, False)])
        out.append("\n**Heap per in-flight FastCGI request** (live heap bytes by an LD_PRELOAD counter at the plateau, "
                   "difference between two concurrency levels / difference in requests; includes the request's connection)\n")
        out.append(table_md(["program", "what", "in flight", "heap bytes/request"], rows))
    t = "allocs"
    if (S, t) in d.g:
        rows = []
        for k, case in d.cases[(S, t)].items():
            for c in d.contenders(S, t):
                st = d.stat(S, t, k, c, "allocs_per_request")
                if st:
                    rows.append([c, case.get("what", ""), cell(st, 2, False), cell(d.stat(S, t, k, c, "requests"), 0, False)])
                    if c.startswith("heisen"):
                        targets.append((f"memory: no allocation per request once warm ({c}, {case.get('what', '')})",
                                        st["median"] < 0.01, f"{st['median']:.2f} allocations/request"))
        out.append("\n**Allocations per request in steady state** (malloc/calloc/realloc/memalign calls, after a warm-up, by an LD_PRELOAD counter)\n")
        out.append(table_md(["program", "what", "allocations/request", "requests counted"], rows))
    return "\n".join(out)


def summary_md(d):
    """the headline figures, compact enough for the README's Performance section"""
    rows = []
    S = "reactor"
    for (a, t) in ((100, 0), (1, 0), (1, 1)):
        for key, case in d.cases.get((S, "callgrind"), {}).items():
            if case["n"] == 1000 and case["a"] == a and case["timers"] == t:
                base = d.stat(S, "callgrind", key, "epoll", "ir_loop_per_event")
                cells = []
                for c in order(d.contenders(S, "callgrind"), REACTOR_ORDER):
                    if c.startswith("heisen-"):
                        continue
                    st = d.stat(S, "callgrind", key, c, "ir_loop_per_event")
                    if st:
                        cells.append(f"{c} {fmt(st['median'], 0)} ({rfmt(ratio(st, base))})")
                tk = [k2 for k2, c2 in d.cases.get((S, "time"), {}).items() if c2["n"] == 1000 and c2["a"] == a and c2["timers"] == t]
                times = []
                if tk:
                    tb = d.stat(S, "time", tk[0], "epoll", "loop_us")
                    for c in order(d.contenders(S, "time"), REACTOR_ORDER):
                        if c.startswith("heisen-") or c == "epoll":
                            continue
                        st = d.stat(S, "time", tk[0], c, "loop_us")
                        if st:
                            times.append(f"{c} {rfmt(ratio(st, tb))}")
                rows.append([f"reactor, bench.c N=1000 A={a}{' + timers' if t else ''}", "Ir/event, loop: " + "; ".join(cells),
                             "loop time vs raw epoll: " + "; ".join(times)])
    S = "fcgi"
    for key, case in d.cases.get((S, "client"), {}).items():
        if case["c"] == 32 and case["keepalive"]:
            cells = []
            for c in order(d.contenders(S, "client"), FCGI_ORDER):
                st, cpu = d.stat(S, "client", key, c, "rps"), d.stat(S, "client", key, c, "cpu_us_per_req")
                if st:
                    cells.append(f"{c} {fmt(st['median'], 0)} req/s, {fmt(cpu['median'] if cpu else None)} µs CPU/req")
            rows.append(["FastCGI client, c=32 keep-alive, libfcgi responder", "; ".join(cells), ""])
    S = "http"
    for key, case in d.cases.get((S, "wrk"), {}).items():
        if case["pinned"] and case["conns"] == 32:
            cells = []
            base = d.stat(S, "wrk", key, "nginx-ka", "rps")
            for c in order(d.contenders(S, "wrk"), HTTP_ORDER):
                st, cpu = d.stat(S, "wrk", key, c, "rps"), d.stat(S, "wrk", key, c, "front_cpu_us_per_req")
                if st:
                    cells.append(f"{c} {fmt(st['median'], 0)} req/s ({rfmt(ratio(st, base))}), front {fmt(cpu['median'] if cpu else None)} µs CPU/req")
            rows.append([f"HTTP → {case['backend']}, pinned, wrk -c 32", "; ".join(cells), ""])
    S = "mem"
    for key, case in d.cases.get((S, "idle"), {}).items():
        cells = []
        for c in d.contenders(S, "idle"):
            st = d.stat(S, "idle", key, c, "rss_per_conn_bytes")
            if st:
                cells.append(f"{c} {fmt(st['median'], 0)} B")
        rows.append([f"RSS per idle keep-alive connection ({case['conns']} held)", "; ".join(cells), ""])
    if not rows:
        return ""
    return table_md(["benchmark", "figures (medians of this run)", ""], rows)


SECTIONS = [
    ("reactor", "Reactor: libevent's bench.c method (socketpair chain)", reactor_md),
    ("fcgi", "FastCGI client alone", fcgi_md),
    ("http", "FastCGI behind HTTP: heisen-httpd vs nginx", http_md),
    ("mem", "Memory", mem_md),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite")
    ap.add_argument("--samples", default=os.path.join(TMP, "samples.jsonl"))
    ap.add_argument("--notes", default=os.path.join(TMP, "notes.jsonl"))
    ap.add_argument("--meta", default=os.path.join(TMP, "meta.json"))
    ap.add_argument("--md")
    ap.add_argument("--json")
    a = ap.parse_args()
    samples = [s for s in load(a.samples) if not a.suite or s["suite"] == a.suite]
    notes = [n for n in load(a.notes) if not a.suite or n["suite"] == a.suite]
    meta = {}
    if os.path.exists(a.meta):
        try:
            meta = json.load(open(a.meta))
        except ValueError:
            pass
    d = Data(samples)
    targets = []
    md = ["# heisen benchmark results", ""]
    if meta and not a.suite:
        md.append(f"Run {meta.get('started', '?')} → {meta.get('finished', '?')} ({meta.get('seconds', '?')} s), "
                  f"commit `{meta.get('commit', '?')}`, {meta.get('mode', '')}, {meta.get('rounds_note', '')}")
        md.append("")
        md.append(f"Machine: {meta.get('cpu', '?')}, {meta.get('cores', '?')} cores, kernel {meta.get('kernel', '?')}; "
                  f"{meta.get('versions', '')}")
        md.append("")
        md.append("Reproduce: `make bench` (or `bench/run.sh`; `BENCH_QUICK=1` for a smoke run of a minute or two). "
                  "Every comparison is interleaved (contenders rotate inside each round); figures are medians over "
                  "rounds with [min–max]; ratios compare medians of this same run. The machine is shared and noisy: "
                  "read ratios, not absolute figures.")
    if not a.suite:
        summ = summary_md(d)
        if summ:
            md.append("\n## Summary\n")
            md.append(summ)
    for key, title, fn in SECTIONS:
        if a.suite and key != a.suite:
            continue
        body = fn(d, targets)
        sec_notes = [n["note"] for n in notes if n["suite"] == key]
        if not body and not sec_notes:
            continue
        md.append(f"\n## {title}\n")
        if body:
            md.append(body)
        if sec_notes:
            md.append("\nNotes:\n")
            for n in OrderedDict.fromkeys(sec_notes):
                md.append(f"- {n}")
    if targets:
        md.append("\n## Targets (issue 6)\n")
        md.append(table_md(["target", "met", "figures"], [[t, "**yes**" if ok else "**no**", f] for t, ok, f in targets]))
    md.append("")
    text = "\n".join(md)
    result = {"meta": meta, "results": d.to_json(), "notes": notes,
              "targets": [{"target": t, "met": ok, "figures": f} for t, ok, f in targets]}
    if a.md:
        open(a.md, "w").write(text)
    else:
        sys.stdout.write(text)
    if a.json:
        json.dump(result, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
