#!/usr/bin/env python3
"""The dashboard and the alerts against a real Prometheus scraping a live
boxoffice, both started by tests/prometheus/run.sh (BASE_URL, ADMIN_KEY,
PROM_URL, RULES_DIR). Python's standard library only.

  1. Every metric name in deploy/grafana/boxoffice.json and
     deploy/prometheus/alerts.yml is a family of docs/metrics.md (or `up`).
  2. A short journey load: an operator makes a concert with a room of two
     slots; six fans sign up, charge, join, wait, poll until ACTIVE, read the
     schedules and the seat map, race for seat 1 (one 201, the rest 409),
     hold, pay (one with too little balance first, one cancels and re-holds,
     one replays its Idempotency-Key), and one leaves instead of paying; a
     few bad requests (400, 401, 404). Spread over several seconds, so that
     every counter moves between scrapes (1 s apart).
  3. Every dashboard panel's query (template variables substituted: $job,
     $instance, $concert as Grafana's "All", $__rate_interval as 1m) is run
     through /api/v1/query: it must parse and return at least one series with
     a number (not NaN). Every alert expression, as Prometheus loaded it from
     the committed alerts.yml, must parse and evaluate; Prometheus's own
     evaluation of each rule must be healthy.
  4. One alert fires for real: BoxofficeAdmissionStalled, in a copy with 5 s
     windows and `for: 0s`, on a concert whose one slot is taken by a fan
     who does not buy while others wait; it goes quiet when the next fan is
     admitted, and fires again 5 s later.

Prints the query -> series table (also written to $OUT/queries.md).
"""
import json
import math
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

BASE = os.environ["BASE_URL"].rstrip("/")
PROM = os.environ["PROM_URL"].rstrip("/")
ADMIN_KEY = os.environ["ADMIN_KEY"]
RULES_DIR = os.environ["RULES_DIR"]
OUT = os.environ.get("PROM_OUT", "target/prometheus")
DASHBOARD = "deploy/grafana/boxoffice.json"
ALERTS = "deploy/prometheus/alerts.yml"
CATALOG = "docs/metrics.md"
# What Grafana puts in for the dashboard's variables with "All" selected. 1m
# is $__rate_interval for a 15 s scrape interval; here it covers the load.
VARIABLES = {"job": "boxoffice", "instance": ".*", "concert": ".*",
             "__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
FANS = 6
STARTED = time.monotonic()
failures = []


def log(msg):
    print(f"prometheus-test: [{time.monotonic() - STARTED:5.1f}s] {msg}", flush=True)


def fail(msg):
    failures.append(msg)
    log("FAIL: " + msg)


# --- HTTP ----------------------------------------------------------------------------
def http(method, url, body=None, headers=None, raw=None, timeout=15):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def api(method, path, body=None, headers=None, want=None, raw=None):
    status, answer = http(method, BASE + path, body, headers, raw)
    if want is not None and status not in want:
        raise AssertionError(f"{method} {path}: {status} {answer} (wanted {want})")
    return status, answer


def admin(method, path, body=None):
    return api(method, path, body, {"X-Admin-Key": ADMIN_KEY}, want=(200, 201))[1]


def prom(path, params=None, method="GET"):
    url = PROM + path
    if params and method == "GET":
        url += "?" + urllib.parse.urlencode(params)
    raw = urllib.parse.urlencode(params).encode() if params and method == "POST" else None
    req = urllib.request.Request(url, data=raw, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            text = r.read().decode()
    except urllib.error.HTTPError as e:
        text = e.read().decode()
    try:
        return json.loads(text)
    except ValueError:
        return {"status": "error", "error": text}


def query(expr):
    return prom("/api/v1/query", {"query": expr})


# --- 1. metric names ---------------------------------------------------------------------
def catalog_families():
    rows = re.findall(r"^\| `([a-z_:]+)` \| (\w+) \|", open(CATALOG).read(), re.M)
    assert rows, f"no families found in {CATALOG}"
    return dict(rows)


KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan"}


def metric_names(expr):
    """The metric names an expression selects: identifiers that are not
    functions (followed by '('), keywords, label names or durations."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group(0).lower() in KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def check_names(exprs, families):
    unknown = {}
    for where, expr in exprs:
        for name in metric_names(expr):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            known = name in families or name == "up" or (
                base != name and families.get(base) == "histogram")
            if not known:
                unknown.setdefault(name, where)
    for name, where in unknown.items():
        fail(f"{where}: metric {name} is not in {CATALOG}")
    return len(unknown) == 0


# --- 2. the journey load ---------------------------------------------------------------------
def fan(i, concert, schedule, stats):
    """One fan's whole journey; returns quietly, records what it saw."""
    _, user = api("POST", "/users", {}, want=(201,))
    auth = {"Authorization": f"Bearer {user['access_token']}"}
    api("GET", "/concerts", want=(200,))
    api("GET", "/balance", headers=auth, want=(200,))
    # Fan 1 charges too little at first: a 402 insufficient_balance.
    first = 500 if i == 1 else 10_000
    api("POST", "/balance/charge", {"amount": first}, {**auth, "Idempotency-Key": f"c-{uuid.uuid4()}"},
        want=(200,))
    time.sleep(0.15 * i)
    _, tok = api("POST", "/queue/tokens", {"concert_id": concert}, auth, want=(200, 201))
    qt = tok["token"]
    deadline = time.monotonic() + 40
    while True:
        _, st = api("GET", f"/queue/tokens/{qt}", headers=auth, want=(200,))
        if st["status"] == "ACTIVE":
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"fan {i} not admitted in 40 s: {st}")
        time.sleep(0.3)
    gated = {**auth, "X-Queue-Token": qt}
    api("GET", f"/concerts/{concert}/schedules", headers=gated, want=(200,))
    api("GET", f"/schedules/{schedule}/seats", headers=gated, want=(200,))
    time.sleep(0.4)
    api("GET", f"/schedules/{schedule}/seats?status=AVAILABLE", headers=gated, want=(200,))
    # Everyone wants seat 1: one hold, then 409s.
    status, held = api("POST", "/reservations", {"schedule_id": schedule, "seat_no": 1}, gated,
                       want=(201, 409))
    stats["seat1"].append(status)
    if status == 409:
        _, held = api("POST", "/reservations", {"schedule_id": schedule, "seat_no": 2 + i}, gated,
                      want=(201,))
    time.sleep(0.4)
    if i == FANS - 1:
        # The last fan leaves instead of paying: its hold is released, its token ends.
        api("DELETE", f"/queue/tokens/{qt}", headers=auth, want=(204,))
        return
    if i == 2:
        # Cancels, then holds another seat.
        api("DELETE", f"/reservations/{held['id']}", headers=auth, want=(204,))
        _, held = api("POST", "/reservations", {"schedule_id": schedule, "seat_no": 20 + i}, gated,
                      want=(201,))
    pay_headers = {**gated, "Idempotency-Key": f"pay-{uuid.uuid4()}"}
    if i == 1:
        api("POST", "/payments", {"reservation_id": held["id"]}, pay_headers, want=(402,))
        api("POST", "/balance/charge", {"amount": 10_000}, auth, want=(200,))
        pay_headers["Idempotency-Key"] = f"pay-{uuid.uuid4()}"
    api("POST", "/payments", {"reservation_id": held["id"]}, pay_headers, want=(201,))
    if i == 0:
        # The same request again (a client retry): the stored answer is replayed.
        api("POST", "/payments", {"reservation_id": held["id"]}, pay_headers)
    api("GET", f"/reservations/{held['id']}", headers=auth, want=(200,))
    api("GET", f"/queue/tokens/{qt}", headers=auth, want=(200,))
    api("GET", "/balance/history", headers=auth, want=(200,))
    stats["paid"] += 1


def journey_load():
    concert = admin("POST", "/admin/concerts", {"title": "Prometheus check", "artist": "The Scrapers"})["id"]
    schedule = admin("POST", f"/admin/concerts/{concert}/schedules",
                     {"start_at": "2031-05-01T19:00:00Z", "seat_count": 40, "price": 1000})["id"]
    # Two slots: the other fans wait until a buyer's token is PROCESSED.
    admin("PATCH", f"/admin/concerts/{concert}/waiting-room", {"max_active": 2, "opens_at": None})
    admin("GET", f"/admin/concerts/{concert}/waiting-room")
    # A few bad requests: 400 (a body that is not JSON, a bad field), 401, 404.
    api("POST", "/queue/tokens", raw=b"{not json", want=(400, 401))
    api("POST", "/admin/concerts", {"title": ""}, {"X-Admin-Key": ADMIN_KEY}, want=(400,))
    api("POST", "/reservations", {"schedule_id": schedule, "seat_no": 1}, want=(401,))
    api("GET", "/concerts/999999999", want=(404,))
    api("GET", "/no/such/route", want=(404,))
    stats = {"seat1": [], "paid": 0}
    errors = []

    def run(i):
        try:
            fan(i, concert, schedule, stats)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"fan {i}: {e}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(FANS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for e in errors:
        fail(e)
    wins = stats["seat1"].count(201)
    if wins != 1 or stats["seat1"].count(409) != FANS - 1:
        fail(f"seat 1: wanted one 201 and {FANS - 1} 409s, got {stats['seat1']}")
    log(f"journey load: concert {concert}, {FANS} fans, {stats['paid']} paid, seat 1 answers {sorted(stats['seat1'])}")
    return concert


# --- 3. queries ---------------------------------------------------------------------------
def substitute(expr):
    def var(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in VARIABLES:
            raise KeyError(name)
        return VARIABLES[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", var, expr)


def series_of(answer):
    result = answer.get("data", {}).get("result", [])
    kind = answer.get("data", {}).get("resultType")
    if kind == "scalar":
        result = [{"metric": {}, "value": result}]
    values = []
    for r in result:
        try:
            values.append(float(r["value"][1]))
        except (KeyError, ValueError, TypeError, IndexError):
            values.append(float("nan"))
    return len(result), sum(1 for v in values if math.isfinite(v))


def panel_queries():
    board = json.load(open(DASHBOARD))
    panels = []

    def walk(ps):
        for p in ps:
            if p.get("type") == "row":
                walk(p.get("panels", []))
            else:
                panels.append(p)
    walk(board["panels"])
    variables = [v["name"] for v in board.get("templating", {}).get("list", [])]
    if "datasource" not in variables:
        fail(f"{DASHBOARD}: no datasource variable")
    out = []
    for p in panels:
        ds = (p.get("datasource") or {}).get("uid")
        if ds != "${datasource}":
            fail(f"panel {p.get('title')!r}: datasource {ds!r}, not the ${{datasource}} variable")
        if not p.get("targets"):
            fail(f"panel {p.get('title')!r} has no query")
        for t in p.get("targets", []):
            out.append((p["title"], t["refId"], t["expr"]))
    return panels, out


def check_panels():
    _, targets = panel_queries()
    rows = []
    for title, ref, expr in targets:
        try:
            q = substitute(expr)
        except KeyError as e:
            fail(f"panel {title!r} {ref}: unknown variable ${e.args[0]}")
            continue
        answer = query(q)
        if answer.get("status") != "success":
            fail(f"panel {title!r} {ref}: {answer.get('errorType')}: {answer.get('error')}")
            rows.append((f"{title} ({ref})", q, "error", 0))
            continue
        n, finite = series_of(answer)
        if n == 0 or finite == 0:
            fail(f"panel {title!r} {ref}: {n} series, {finite} with a number: {q}")
        rows.append((f"{title} ({ref})", q, n, finite))
    return rows


def rule_groups():
    answer = prom("/api/v1/rules")
    assert answer.get("status") == "success", answer
    return answer["data"]["groups"]


def check_alerts():
    committed = re.findall(r"^\s*- alert: (\w+)", open(ALERTS).read(), re.M)
    loaded = [r for g in rule_groups() if g["file"].endswith("/alerts.yml") for r in g["rules"]
              if r["type"] == "alerting"]
    if sorted(r["name"] for r in loaded) != sorted(committed):
        fail(f"Prometheus loaded alerts {sorted(r['name'] for r in loaded)}, {ALERTS} has {sorted(committed)}")
    rows = []
    for r in loaded:
        answer = query(r["query"])
        if answer.get("status") != "success":
            fail(f"alert {r['name']}: {answer.get('errorType')}: {answer.get('error')}")
            rows.append((r["name"], "error", r["health"], r["state"]))
            continue
        if r.get("health") != "ok":
            fail(f"alert {r['name']}: Prometheus's evaluation is {r.get('health')}: {r.get('lastError')}")
        rows.append((r["name"], series_of(answer)[0], r["health"], r["state"]))
    return loaded, rows


# --- 4. one alert fires -------------------------------------------------------------------------
def stalled_alerts(name, concert):
    alerts = prom("/api/v1/alerts")["data"]["alerts"]
    return [a for a in alerts if a["labels"].get("alertname") == name
            and a["labels"].get("copy") == "tests/prometheus" and a["labels"].get("concert") == str(concert)]


def wait_alert(name, concert, firing, within, polls):
    """Waits until the copy of alert `name` for `concert` is firing (or gone),
    polling the waiting fans' tokens meanwhile; returns the alert (or True)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for auth, token in polls:
            _, st = api("GET", f"/queue/tokens/{token}", headers=auth, want=(200,))
            if st["status"] != "WAITING":
                raise AssertionError(f"a fan behind the full slot is {st['status']}, not WAITING")
        mine = stalled_alerts(name, concert)
        if firing and mine and mine[0]["state"] == "firing":
            return mine[0]
        if not firing and not mine:
            return True
        time.sleep(0.5)
    return None


def fire_admission_stalled(loaded):
    """BoxofficeAdmissionStalled, copied with 5 s windows and `for: 0s`, on a
    room of one slot: it fires while fans wait behind a fan who does not buy,
    goes quiet when that fan leaves and the next is admitted, and fires again
    5 s later."""
    name = "BoxofficeAdmissionStalled"
    rule = next((r for r in loaded if r["name"] == name), None)
    if rule is None:
        fail(f"no {name} in alerts.yml")
        return None
    expr = rule["query"].replace("[3m]", "[5s]").replace("[1m]", "[5s]")
    copy = {"groups": [{"name": "tests-prometheus-copy", "interval": "1s", "rules": [{
        "alert": name, "expr": expr, "for": "0s",
        "labels": {**rule.get("labels", {}), "copy": "tests/prometheus"},
        "annotations": rule.get("annotations", {})}]}]}
    with open(os.path.join(RULES_DIR, "firing-copy.yml"), "w") as f:
        json.dump(copy, f, indent=2)  # JSON is YAML
    with urllib.request.urlopen(urllib.request.Request(PROM + "/-/reload", method="POST"), timeout=15) as r:
        assert r.status == 200, r.status
    if not any(g["name"] == "tests-prometheus-copy" for g in rule_groups()):
        fail(f"Prometheus did not load the copy of {name}")
        return None

    concert = admin("POST", "/admin/concerts", {"title": "Stalled sale"})["id"]
    schedule = admin("POST", f"/admin/concerts/{concert}/schedules",
                     {"start_at": "2031-06-01T19:00:00Z", "seat_count": 10, "price": 1000})["id"]
    admin("PATCH", f"/admin/concerts/{concert}/waiting-room", {"max_active": 1, "opens_at": None})
    fans = []
    for _ in range(3):
        _, user = api("POST", "/users", {}, want=(201,))
        auth = {"Authorization": f"Bearer {user['access_token']}"}
        _, tok = api("POST", "/queue/tokens", {"concert_id": concert}, auth, want=(200, 201))
        fans.append((auth, tok["token"]))
        time.sleep(0.3)
    (a_auth, a_token), b, c = fans
    # A has the one slot and browses without buying; B and C wait.
    api("GET", f"/schedules/{schedule}/seats", headers={**a_auth, "X-Queue-Token": a_token}, want=(200,))
    log(f"{name}: a copy with 5 s windows and for: 0s; concert {concert}: one slot, taken; two fans wait")
    first = wait_alert(name, concert, True, 20, [b, c])
    if not first:
        fail(f"{name} (the copy) did not fire for concert {concert} within 20 s")
        return None
    log(f"  firing: {first['annotations'].get('summary')}")
    api("DELETE", f"/queue/tokens/{a_token}", headers=a_auth, want=(204,))
    deadline = time.monotonic() + 10
    while api("GET", f"/queue/tokens/{b[1]}", headers=b[0], want=(200,))[1]["status"] != "ACTIVE":
        if time.monotonic() > deadline:
            fail("the second fan was not admitted within 10 s of the first leaving")
            return None
        time.sleep(0.2)
    admitted = time.monotonic()
    if not wait_alert(name, concert, False, 5, [c]):
        fail(f"{name} still fires 5 s after the next fan was admitted")
        return None
    log(f"  quiet {time.monotonic() - admitted:.1f} s after the next fan's admission")
    again = wait_alert(name, concert, True, 20, [c])
    if not again:
        fail(f"{name} did not fire again within 20 s of the last admission")
        return None
    after = time.monotonic() - admitted
    if after < 3:
        fail(f"{name} fired again {after:.1f} s after an admission: its 5 s window should keep it quiet")
    log(f"  firing again {after:.1f} s after the last admission: {again['annotations'].get('summary')}")
    return again


# --- main ---------------------------------------------------------------------------------------
def wait_for_scrapes(n):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        a = query('count_over_time(up{job="boxoffice"}[1m])')
        up = query('up{job="boxoffice"}')
        try:
            seen = float(a["data"]["result"][0]["value"][1])
            if seen >= n and float(up["data"]["result"][0]["value"][1]) == 1:
                return seen
        except (KeyError, IndexError, TypeError):
            pass
        time.sleep(0.5)
    targets = prom("/api/v1/targets")
    raise SystemExit(f"prometheus-test: Prometheus did not scrape boxoffice {n} times in 30 s: {targets}")


def main():
    os.makedirs(OUT, exist_ok=True)
    log(f"scrapes so far: {wait_for_scrapes(2):.0f}")
    families = catalog_families()
    _, targets = panel_queries()
    exprs = [(f"{DASHBOARD}: {t}", e) for t, _, e in targets]
    # The alert expressions as Prometheus parsed them from alerts.yml.
    exprs += [(f"{ALERTS}: {r['name']}", r["query"]) for g in rule_groups() for r in g["rules"]]
    if check_names(exprs, families):
        log(f"every metric name of the dashboard and the alerts is in {CATALOG} ({len(families)} families)")
    concert = journey_load()
    time.sleep(3)  # three more scrapes after the last request
    log(f"scrapes so far: {wait_for_scrapes(4):.0f}")

    panel_rows = check_panels()
    loaded, alert_rows = check_alerts()
    fired = fire_admission_stalled(loaded)

    width = max(len(r[0]) for r in panel_rows)
    lines = ["| panel (query) | query as run | series | with a number |", "|---|---|---|---|"]
    for title, q, n, finite in panel_rows:
        cell = " ".join(q.split()).replace("|", "\\|")
        lines.append(f"| {title} | `{cell}` | {n} | {finite} |")
    lines += ["", "| alert | series now | Prometheus's evaluation | state |", "|---|---|---|---|"]
    for name, n, health, state in alert_rows:
        lines.append(f"| {name} | {n} | {health} | {state} |")
    if fired:
        lines += ["", f"Fired (test copy, 5 s windows, for: 0s): {fired['labels']['alertname']} "
                      f"concert={fired['labels']['concert']} value={fired['value']}: {fired['annotations'].get('summary')}"]
    with open(os.path.join(OUT, "queries.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print()
    print(f"{'panel (query)':<{width}}  series  with a number")
    for title, _, n, finite in panel_rows:
        print(f"{title:<{width}}  {n!s:>6}  {finite!s:>13}")
    print()
    print(f"{'alert':<{width}}  series  evaluation  state")
    for name, n, health, state in alert_rows:
        print(f"{name:<{width}}  {n!s:>6}  {health:>10}  {state}")
    print()
    log(f"concert {concert}; {len(panel_rows)} panel queries, {len(alert_rows)} alerts; table in {OUT}/queries.md")
    if failures:
        log(f"{len(failures)} failure(s):")
        for f in failures:
            print("  - " + f)
        sys.exit(1)
    log("passed")


if __name__ == "__main__":
    main()
