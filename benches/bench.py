#!/usr/bin/env python3
"""Helpers for benches/compare.sh (Python 3 standard library only).

Subcommands:
  free-ports N                 N free TCP ports on 127.0.0.1, on one line
  cpu PID                      CPU time (µs) of PID and all its descendants:
                               utime + stime (+ cutime + cstime of reaped children)
  hwm PID                      peak RSS (VmHWM, KiB) of PID and its descendants, summed
  wrk FILE                     parse one `wrk --latency` output: "requests rps p50_ms p99_ms"
  stub URL                     nginx stub_status: total requests served so far
  login --start URL --cookie NAME [--user U]
                               a scripted browser login (the provider's login and consent
                               forms); prints "NAME=value" of the proxy's session cookie
  login-cpu --start URL --callback-path P --pid PID --count N
                               N fresh-browser logins; prints the proxy's CPU (µs) per whole
                               login and per callback request (token exchange + verification)
  report TSV MD                medians and ratios of the runs in TSV; prints the table and
                               writes it, with the run's context, as markdown to MD

All network use is to the URLs given (compare.sh only gives 127.0.0.1).
"""

import html.parser
import http.cookiejar
import json
import os
import re
import socket
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


# === /proc ===


def _stat(pid):
    """Fields of /proc/PID/stat after the `(comm)` field (index 0 is `state`)."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rindex(")") + 2 :].split()


def descendants(root):
    """root and every process below it."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat(entry)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [int(root)]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu_us(root):
    total = 0
    for p in descendants(root):
        try:
            f = _stat(p)
        except OSError:
            continue
        # utime stime cutime cstime are fields 14-17 of stat, i.e. 11-14 here.
        total += sum(int(x) for x in f[11:15])
    return total * 1_000_000 // CLK_TCK


def tree_runtime_ns(root):
    """The scheduler's exact run time (ns), summed over every thread of root and the
    processes below it (threads that exited in between are not counted)."""
    total = 0
    for pid in descendants(root):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError):
                continue
    return total


def tree_hwm_kib(root):
    total = 0
    for p in descendants(root):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


# === wrk ===

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unparsable latency {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(text):
    reqs = re.search(r"^\s*(\d+) requests in ", text, re.M)
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    if not (reqs and rps and p50 and p99):
        raise ValueError("not a `wrk --latency` output:\n" + text)
    errors = re.search(r"Socket errors: (.*)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "requests": int(reqs.group(1)),
        "rps": float(rps.group(1)),
        "p50": _ms(p50.group(1)),
        "p99": _ms(p99.group(1)),
        "errors": errors.group(1) if errors else "",
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def stub_requests(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    # "Active connections: N\nserver accepts handled requests\n A H R\n..."
    return int(text.splitlines()[2].split()[2])


# === the scripted browser ===


class _Forms(html.parser.HTMLParser):
    """Every <form> with its <input> name/value pairs."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "fields": []})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"].append((a["name"], a.get("value") or ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """A cookie jar and one request at a time; redirects are followed by the caller."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def request(self, url, data=None):
        req = urllib.request.Request(url, data=data)
        req.add_header("Accept", BROWSER_ACCEPT)
        req.add_header("User-Agent", "Mozilla/5.0 (portcullis bench)")
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, r.headers, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode("utf-8", "replace")

    def cookie(self, name):
        for c in self.jar:
            if c.name == name:
                return c.value
        return None


def login(start, user="bench-user", callback_path=None, on_callback=None):
    """Drives a login from `start` (a protected URL of the proxy) through the provider's login
    and consent forms back to the proxy's page. `on_callback(fn)` wraps the request to the
    proxy's `callback_path`. Returns the browser."""
    b = Browser()
    origin = urllib.parse.urlsplit(start)[:2]
    url, data = start, None
    for _ in range(30):
        target = urllib.parse.urlsplit(url)
        is_callback = (
            callback_path is not None
            and target[:2] == origin
            and target.path == callback_path
        )
        if is_callback and on_callback is not None:
            status, headers, body = on_callback(lambda: b.request(url, data))
        else:
            status, headers, body = b.request(url, data)
        data = None
        if status in (301, 302, 303, 307, 308):
            url = urllib.parse.urljoin(url, headers["Location"])
            continue
        if status != 200:
            raise RuntimeError(f"login: {status} at {url}: {body[:500]}")
        if target[:2] == origin:
            return b  # landed on the proxied page
        parser = _Forms()
        parser.feed(body)
        forms = [f for f in parser.forms if f["fields"]]
        if len(forms) != 1:
            raise RuntimeError(f"login: expected one form at {url}: {body[:500]}")
        fields = dict(forms[0]["fields"])
        if fields.get("prompt") == "login":
            fields["login"] = user
            fields["password"] = "any-password"
        elif fields.get("prompt") != "consent":
            raise RuntimeError(f"login: unexpected provider page at {url}: {body[:500]}")
        url = urllib.parse.urljoin(url, forms[0]["action"])
        data = urllib.parse.urlencode(fields).encode()
    raise RuntimeError("login: too many steps")


def cmd_login(args):
    opts = _opts(args, {"--start": None, "--cookie": None, "--user": "bench-user"})
    b = login(opts["--start"], opts["--user"])
    value = b.cookie(opts["--cookie"])
    if value is None:
        raise SystemExit(f"login: no cookie {opts['--cookie']} after the login")
    print(f"{opts['--cookie']}={value}")


def cmd_login_cpu(args):
    opts = _opts(
        args,
        {"--start": None, "--callback-path": None, "--pid": None, "--count": "50"},
    )
    pid, n = int(opts["--pid"]), int(opts["--count"])
    spent = {"ns": 0}

    def timed(fn):
        before = tree_runtime_ns(pid)
        r = fn()
        spent["ns"] += tree_runtime_ns(pid) - before
        return r

    # One login first: discovery and JWKS are warm, connection pools open.
    login(opts["--start"], "bench-warmup")
    spent["ns"] = 0
    cpu0, ns0, t0 = tree_cpu_us(pid), tree_runtime_ns(pid), time.monotonic()
    for i in range(n):
        login(opts["--start"], f"bench-login-{i}", opts["--callback-path"], timed)
    cpu1, ns1, t1 = tree_cpu_us(pid), tree_runtime_ns(pid), time.monotonic()
    print(
        json.dumps(
            {
                "logins": n,
                "seconds": round(t1 - t0, 2),
                # The callback request alone: code exchange, ID token verification, userinfo,
                # session creation (exact per-thread run time from schedstat).
                "cpu_us_per_callback": round(spent["ns"] / n / 1000),
                # The whole login at the proxy: the redirect to the provider, the callback
                # and the first proxied page (schedstat, and /proc/PID/stat ticks).
                "cpu_us_per_login": round((ns1 - ns0) / n / 1000),
                "cpu_us_per_login_ticks": round((cpu1 - cpu0) / n),
            }
        )
    )


# === the report ===


def cmd_report(args):
    tsv, md = args[0], args[1]
    runs = {}
    order = []
    meta = {}
    with open(tsv) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("#"):
                k, _, v = line[1:].partition("\t")
                meta[k.strip()] = v
                continue
            (target, _round, reqs, rps, p50, p99, cpu_us, hits, hwm, errs) = line.split("\t")
            if target not in runs:
                order.append(target)
                runs[target] = []
            runs[target].append(
                {
                    "requests": int(reqs),
                    "rps": float(rps),
                    "p50": float(p50),
                    "p99": float(p99),
                    "cpu": float(cpu_us) / max(int(reqs), 1),
                    "hits": int(hits) / max(int(reqs), 1),
                    "hwm": int(hwm),
                    "errors": errs,
                }
            )
    med = {}
    for t in order:
        rs = runs[t]
        med[t] = {
            k: statistics.median(r[k] for r in rs)
            for k in ("rps", "p50", "p99", "cpu", "hits")
        }
        med[t]["hwm"] = max(r["hwm"] for r in rs)
        med[t]["rounds"] = len(rs)
        med[t]["errors"] = "; ".join(sorted({r["errors"] for r in rs if r["errors"]}))

    nginx = med.get("nginx")
    oidc = med.get("mod_auth_openidc")
    header = (
        "| target | req/s | p50 ms | p99 ms | proxy CPU µs/req | peak RSS MiB "
        "| req/s ÷ nginx | CPU ÷ nginx | p99 − nginx ms | req/s ÷ mod_auth_openidc "
        "| reached upstream |"
    )
    lines = [header, "|" + " --- |" * 11]
    for t in order:
        m = med[t]
        lines.append(
            "| {t} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.1f} | {hwm:.1f} | {rn} | {cn} | {pn} | {ro} | {hits:.0%} |".format(
                t=t,
                rps=m["rps"],
                p50=m["p50"],
                p99=m["p99"],
                cpu=m["cpu"],
                hwm=m["hwm"] / 1024,
                rn=f"{m['rps'] / nginx['rps']:.2f}×" if nginx else "–",
                cn=f"{m['cpu'] / nginx['cpu']:.2f}×" if nginx else "–",
                pn=f"{m['p99'] - nginx['p99']:+.2f}" if nginx else "–",
                ro=f"{m['rps'] / oidc['rps']:.2f}×" if oidc else "–",
                hits=m["hits"],
            )
        )
    table = "\n".join(lines)

    verdict = []
    p = med.get("portcullis")
    if p and nginx:
        verdict.append(
            "- req/s ≥ 1.0× nginx: {:.2f}× — {}".format(
                p["rps"] / nginx["rps"], "met" if p["rps"] >= nginx["rps"] else "NOT met"
            )
        )
        verdict.append(
            "- proxy CPU/req ≤ 1.2× nginx: {:.2f}× — {}".format(
                p["cpu"] / nginx["cpu"], "met" if p["cpu"] <= 1.2 * nginx["cpu"] else "NOT met"
            )
        )
        verdict.append(
            "- p99 ≤ nginx p99 + 1 ms: {:+.2f} ms — {}".format(
                p["p99"] - nginx["p99"], "met" if p["p99"] <= nginx["p99"] + 1 else "NOT met"
            )
        )
    if p and oidc:
        verdict.append(
            "- req/s ≥ 6× mod_auth_openidc: {:.2f}× — {}".format(
                p["rps"] / oidc["rps"], "met" if p["rps"] >= 6 * oidc["rps"] else "NOT met"
            )
        )
    if meta.get("login"):
        lp = json.loads(meta["login"])
        verdict.append(
            "- login CPU ≤ 2 ms per callback (code exchange, ID token verification, userinfo, "
            "session; warm JWKS): {} µs — {} ({} µs for the whole login: redirect, callback, "
            "first page; {} logins)".format(
                lp["cpu_us_per_callback"],
                "met" if lp["cpu_us_per_callback"] <= 2000 else "NOT met",
                lp["cpu_us_per_login"],
                lp["logins"],
            )
        )
    if meta.get("login_oidc"):
        lo = json.loads(meta["login_oidc"])
        verdict.append(
            "- for comparison, mod_auth_openidc: {} µs per callback, {} µs per whole login".format(
                lo["cpu_us_per_callback"], lo["cpu_us_per_login"]
            )
        )

    notes = [m for m in (med[t]["errors"] and f"- {t}: wrk socket errors {med[t]['errors']}" for t in order) if m]

    doc = [f"# portcullis benchmark, {meta.get('date', '?')}", ""]
    for k in ("machine", "load", "versions", "command", "settings"):
        if k in meta:
            doc.append(f"- {k}: {meta[k]}")
    doc += [
        "",
        "Medians over the rounds; ratios are against the baselines of this same run.",
        "CPU is the proxy's whole process tree (utime+stime from /proc) divided by the",
        "requests wrk completed; peak RSS is VmHWM summed over the tree (the largest round).",
        '"reached upstream" counts the upstream\'s requests (nginx stub_status) per wrk',
        "request: 100% proves every request passed the proxy's authentication.",
        "",
        table,
        "",
        "Targets (portcullis with a session):",
        *verdict,
        *notes,
        "",
    ]
    text = "\n".join(doc)
    with open(md, "w") as f:
        f.write(text)
    print(text)


# === plumbing ===


def _opts(args, spec):
    out = dict(spec)
    it = iter(args)
    for a in it:
        if a not in spec:
            raise SystemExit(f"unknown option {a}")
        out[a] = next(it)
    missing = [k for k, v in out.items() if v is None]
    if missing:
        raise SystemExit(f"missing {' '.join(missing)}")
    return out


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "free-ports":
        socks = []
        for _ in range(int(args[0])):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
        for s in socks:
            s.close()
    elif cmd == "cpu":
        print(tree_cpu_us(args[0]))
    elif cmd == "hwm":
        print(tree_hwm_kib(args[0]))
    elif cmd == "wrk":
        with open(args[0]) as f:
            r = parse_wrk(f.read())
        print(r["requests"], r["rps"], r["p50"], r["p99"], r["non2xx"], r["errors"] or "-", sep="\t")
    elif cmd == "stub":
        print(stub_requests(args[0]))
    elif cmd == "login":
        cmd_login(args)
    elif cmd == "login-cpu":
        cmd_login_cpu(args)
    elif cmd == "report":
        cmd_report(args)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
