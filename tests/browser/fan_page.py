#!/usr/bin/env python3
"""The fan page (GET /) in headless Chromium, driven by selenium, against a live
boxoffice that tests/browser/run.sh started (BASE_URL, ADMIN_KEY, BROWSER_OUT,
SERVER_PID). Elements are found by the `data-test` names of API.md, "The fan
page". Every wait is an explicit condition: the page polls every max(2 s,
estimate / 10) and at least every 15 s, so a change shows within ~15 s.

  1. Two fans, one slot. The room is paused with max_active 1. Fan A waits at
     place 1 (PAUSED), reloads and keeps its token and place; fan B (another
     browser, phone width) waits at place 2. The operator's message reaches
     both; their polls were 2 to 15 s apart.
     The room resumes: A is ACTIVE, sees the schedule and every seat, holds
     one (PENDING, a countdown), fails to pay with no balance (a readable
     error), charges, pays (CONFIRMED) and becomes PROCESSED, which frees the
     slot: B is ACTIVE and sees that seat SOLD.
  2. The pre-queue: a room that opens in five minutes shows SCHEDULED, no
     place, and a mm:ss countdown that counts down.
  3. The sold-out end: a one-seat concert is bought through the API while a fan
     waits in the browser; the fan's page says SOLD_OUT.

Screenshots of each state go to BROWSER_OUT (target/browser/), and FAIL-*.png
there when a step fails.
"""
import base64
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

# Selenium Manager must not go looking for a driver on the network: the
# driver and the browser are Debian's, named below.
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

BASE = os.environ["BASE_URL"].rstrip("/")
ADMIN_KEY = os.environ["ADMIN_KEY"]
OUT = os.environ.get("BROWSER_OUT", "target/browser")
SERVER_PID = int(os.environ.get("SERVER_PID", "0"))
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Without these Chromium hangs or floods a closed network (and root needs --no-sandbox).
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--lang=en-US",
]
# Long enough for one slow poll (15 s) and the request after it.
WAIT = 30
DESKTOP = (1200, 900)
PHONE = (390, 844)
PRICE = 5000
T0 = time.monotonic()


class Failed(Exception):
    pass


def step(words):
    print(f"  {time.monotonic() - T0:6.1f}s  {words}", flush=True)


# ----------------------------------------------------------------- the API, for set-up

def http(method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, (json.loads(raw) if raw else None)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def must(status, answer, method, path, want=(200, 201, 204)):
    if status not in want:
        raise Failed(f"{method} {path}: {status} {answer}")
    return answer


def admin(method, path, body=None):
    return must(*http(method, path, body, {"X-Admin-Key": ADMIN_KEY}), method, path)


def as_user(access_token, method, path, body=None, headers=None, want=(200, 201, 204)):
    h = {"Authorization": f"Bearer {access_token}", **(headers or {})}
    return must(*http(method, path, body, h), method, path, want)


def new_concert(title, seat_count):
    concert = admin("POST", "/admin/concerts", {"title": title, "artist": "The Queue Jumpers"})
    schedule = admin("POST", f"/admin/concerts/{concert['id']}/schedules",
                     {"start_at": "2027-04-01T19:00:00Z", "seat_count": seat_count, "price": PRICE})
    return concert["id"], schedule["id"]


def room(concert_id, **settings):
    return admin("PATCH", f"/admin/concerts/{concert_id}/waiting-room", settings)


def wait_for_server():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if SERVER_PID:
            try:
                os.kill(SERVER_PID, 0)
            except ProcessLookupError:
                raise Failed("the server exited at start (see server.log)")
        try:
            if http("GET", "/ready")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    raise Failed(f"the server did not answer {BASE}/ready within 60 s")


# -------------------------------------------------------------------- a fan's browser

class Fan:
    """One fan: a Chromium of its own (own profile, so its own localStorage)."""

    def __init__(self, name, size=DESKTOP):
        self.name = name
        self.size = size
        self.profile = tempfile.mkdtemp(prefix=f"bo-browser-{name}-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={self.profile}")
        # Headless Chromium keeps windows at least 500 px wide: a phone's
        # width is set by device emulation instead (see phone()).
        opts.add_argument(f"--window-size={max(size[0], 500)},{size[1]}")
        # performance: the network events, to time the page's polls.
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        service = Service(CHROMEDRIVER, log_output=os.path.join(OUT, f"chromedriver-{name}.log"))
        self.driver = webdriver.Chrome(options=opts, service=service)
        self.driver.set_page_load_timeout(30)
        self.console = []
        if size[0] < 500:
            self.phone(size)

    def phone(self, size):
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": True})

    def desktop(self):
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        self.driver.set_window_size(*DESKTOP)

    def open(self, path):
        self.driver.get(BASE + path)

    def quit(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # -- reading the page

    def find(self, test):
        return self.driver.find_element(By.CSS_SELECTOR, f'[data-test="{test}"]')

    def all(self, test):
        return self.driver.find_elements(By.CSS_SELECTOR, f'[data-test="{test}"]')

    def text(self, test):
        """What a person sees of the element: '' when it is absent or hidden."""
        try:
            return self.find(test).text.strip()
        except (NoSuchElementException, StaleElementReferenceException):
            return ""

    def shown(self, test):
        try:
            return self.find(test).is_displayed()
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    def seat(self, seat_no):
        return self.driver.find_element(By.CSS_SELECTOR, f'[data-test="seat"][data-seat-no="{seat_no}"]')

    def seats(self):
        """{seat_no: data-status} of every seat element on the page."""
        return {int(s.get_attribute("data-seat-no")): s.get_attribute("data-status") for s in self.all("seat")}

    def local(self, key):
        return self.driver.execute_script("return window.localStorage.getItem(arguments[0])", key)

    def access_token(self):
        kept = self.local("bo.user")
        if not kept:
            raise Failed(f"fan {self.name}: no user in localStorage (bo.user)")
        return json.loads(kept)["access_token"]

    def state(self):
        seen = {t: self.text(t) for t in ("status", "position", "message", "countdown", "reservation-status", "error")}
        return f"url {self.driver.current_url}, the page shows {json.dumps({k: v for k, v in seen.items() if v})}"

    # -- waiting for the page

    def wait(self, what, condition, timeout=WAIT):
        """Waits until condition() is truthy; fails naming what and what the page showed."""
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.2,
                                 ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                                 ).until(lambda _: condition())
        except TimeoutException:
            raise Failed(f"fan {self.name}: {what}: not within {timeout} s; {self.state()}") from None

    def wait_text(self, test, want, timeout=WAIT):
        self.wait(f'[data-test="{test}"] reads {want!r}', lambda: self.text(test) == want, timeout)

    def click(self, test):
        element = self.wait(f'[data-test="{test}"] is shown and enabled',
                            lambda: (lambda e: e if e.is_displayed() and e.is_enabled() else None)(self.find(test)))
        element.click()

    # -- evidence

    def shot(self, name):
        """A full-page PNG at the window's width."""
        d = self.driver
        metrics = d.execute_cdp_cmd("Page.getLayoutMetrics", {})
        width = metrics["cssLayoutViewport"]["clientWidth"]
        height = max(metrics["cssContentSize"]["height"], metrics["cssLayoutViewport"]["clientHeight"])
        png = d.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        })["data"]
        path = os.path.join(OUT, f"{name}.png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(png))
        return path

    def poll_gaps(self):
        """Seconds between this browser's token reads (the join, POST /queue/tokens,
        then the polls, GET /queue/tokens/{token}) since the last call, within each
        page load (a reload starts afresh)."""
        by_page = {}
        for entry in self.driver.get_log("performance"):
            event = json.loads(entry["message"])["message"]
            if event["method"] != "Network.requestWillBeSent":
                continue
            request = event["params"]["request"]
            path = urllib.parse.urlsplit(request["url"]).path
            if (request["method"], path.startswith("/queue/tokens/")) == ("GET", True) or \
                    (request["method"], path) == ("POST", "/queue/tokens"):
                by_page.setdefault(event["params"]["loaderId"], []).append(event["params"]["timestamp"])
        return [b - a for times in by_page.values() for a, b in zip(times, times[1:])]

    def collect_console(self):
        try:
            self.console += self.driver.get_log("browser")
        except Exception:  # a driver that is gone has nothing more to say
            pass
        return self.console


def human(words):
    """A message a person reads: words, not an error code, JSON or a status number."""
    return (len(words) >= 10 and not re.search(r"\b[a-z]+_[a-z_]+\b", words)
            and "{" not in words and not re.search(r"\b[45]\d\d\b", words))


CLOCK = re.compile(r"^(\d{1,2}:)?\d{2}:\d{2}$")


def clock_seconds(text):
    parts = [int(p) for p in text.split(":")]
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds


# ---------------------------------------------------------------------- the scenarios

def two_fans_one_slot(fans):
    concert, schedule = new_concert("Spring tour", 30)
    settings = room(concert, paused=True, max_active=1)
    assert settings["state"] == "PAUSED", settings
    step(f"concert {concert}: schedule {schedule} of 30 seats at {PRICE}; room PAUSED, max_active 1")

    a = fans.setdefault("A", Fan("A"))
    a.open(f"/?concert={concert}")
    a.wait_text("status", "PAUSED")
    a.wait_text("position", "1")
    token = a.local(f"bo.token.{concert}")
    if not token:
        raise Failed(f"fan A: no queue token in localStorage bo.token.{concert}")
    step("A waits: PAUSED, position 1")

    a.driver.refresh()
    a.wait_text("status", "PAUSED")
    a.wait_text("position", "1")
    after = a.local(f"bo.token.{concert}")
    if after != token:
        raise Failed(f"fan A: the reload changed the token: {token} -> {after}")
    seen = as_user(a.access_token(), "GET", f"/queue/tokens/{token}")
    if (seen["status"], seen["position"]) != ("WAITING", 1):
        raise Failed(f"fan A after the reload: the server says {seen}")
    step("A reloads: same token, still position 1")

    b = fans.setdefault("B", Fan("B", PHONE))
    b.open(f"/?concert={concert}")
    b.wait_text("status", "PAUSED")
    b.wait_text("position", "2")
    if b.local(f"bo.token.{concert}") in (None, token):
        raise Failed(f"fan B: no token of its own ({b.local(f'bo.token.{concert}')})")
    step("B (phone width, own browser) joins: position 2")

    message = "Doors at 7. The sale resumes in a moment; everyone keeps their place."
    room(concert, message=message)
    a.wait("the operator's message is shown", lambda: a.text("message") == message)
    step("the operator's message reaches A")
    a.shot("01-waiting-paused")
    b.wait("the operator's message is shown", lambda: b.text("message") == message)
    step("and B")
    b.shot("02-waiting-paused-phone")

    # API.md: a waiting page polls at most every max(2 s, estimate / 10) and at
    # least every 15 s (a little slack for timers and the request itself).
    for fan in (a, b):
        gaps = fan.poll_gaps()
        if not gaps or min(gaps) < 1.9 or max(gaps) > 16:
            raise Failed(f"fan {fan.name}: polls {', '.join(f'{g:.1f}' for g in gaps) or 'none'} s apart, "
                         "not every 2 to 15 s")
        step(f"{fan.name} polled every {min(gaps):.1f} to {max(gaps):.1f} s ({len(gaps)} gap{'s' * (len(gaps) != 1)})")

    room(concert, paused=False)
    a.wait_text("status", "ACTIVE")
    step("the room resumes: A is ACTIVE")
    a.wait(f"schedule {schedule} is shown",
           lambda: [s.get_attribute("data-schedule-id") for s in a.all("schedule")] == [str(schedule)])
    a.wait("30 seats, 1..30, every one AVAILABLE",
           lambda: a.seats() == {n: "AVAILABLE" for n in range(1, 31)})
    step("A sees the schedule and 30 AVAILABLE seats")
    a.shot("04-seat-map")

    pick = 7
    a.seat(pick).click()
    a.click("hold")
    a.wait_text("reservation-status", "PENDING")
    countdown_line = a.find("reservation-status").find_element(By.XPATH, "..")
    a.wait("a countdown (m:ss) next to the hold",
           lambda: re.search(r"\b\d{1,2}:\d{2}\b", countdown_line.text))
    a.wait(f"seat {pick} reads HELD", lambda: a.seats().get(pick) == "HELD")
    step(f"A holds seat {pick}: PENDING, counting down ({countdown_line.text.strip()!r})")
    a.shot("05-hold")

    a.click("pay")
    a.wait("an error is shown after paying with no balance", lambda: a.shown("error") and a.text("error"))
    error = a.text("error")
    if not human(error):
        raise Failed(f"fan A: the no-balance error is not for people: {error!r}")
    if not re.search(r"balance|fund|money", error, re.I):
        raise Failed(f"fan A: the no-balance error does not say what is short: {error!r}")
    if a.text("reservation-status") != "PENDING":
        raise Failed(f"fan A: a failed payment changed the reservation: {a.state()}")
    step(f"A pays with no balance: {error!r}")
    a.shot("06-pay-no-balance")

    a.click("charge")
    user = a.access_token()
    a.wait(f"the balance covers {PRICE}", lambda: as_user(user, "GET", "/balance")["balance"] >= PRICE)
    a.wait("the error is gone after the charge", lambda: not a.shown("error"))
    a.click("pay")
    a.wait_text("reservation-status", "CONFIRMED")
    if a.shown("error"):
        raise Failed(f"fan A: an error stays after paying: {a.text('error')!r}")
    step("A charges and pays: CONFIRMED")
    a.shot("07-confirmed")

    a.wait_text("status", "PROCESSED")
    if a.text("reservation-status") != "CONFIRMED":
        raise Failed(f"fan A: the receipt went away when the token was PROCESSED: {a.state()}")
    step("A's token is PROCESSED: the slot is free")
    a.shot("07b-processed")

    b.wait_text("status", "ACTIVE")
    b.wait(f"seat {pick} reads SOLD, the other 29 AVAILABLE",
           lambda: b.seats() == {n: ("SOLD" if n == pick else "AVAILABLE") for n in range(1, 31)})
    step(f"B is ACTIVE and sees seat {pick} SOLD")
    b.shot("08-b-seat-sold-phone")
    b.desktop()
    b.shot("09-b-seat-sold")


def pre_queue_countdown(fans):
    concert, _ = new_concert("Summer tour", 10)
    opens = (datetime.now(timezone.utc) + timedelta(minutes=5)).replace(microsecond=0)
    settings = room(concert, opens_at=opens.isoformat().replace("+00:00", "Z"))
    assert settings["state"] == "SCHEDULED", settings
    step(f"concert {concert}: the room opens at {opens:%H:%M:%S} UTC")

    c = fans.setdefault("C", Fan("C"))
    c.open(f"/?concert={concert}")
    c.wait_text("status", "SCHEDULED")
    c.wait("a countdown m:ss", lambda: CLOCK.match(c.text("countdown")))
    first = c.text("countdown")
    if not 240 <= clock_seconds(first) <= 300:
        raise Failed(f"fan C: the countdown reads {first!r}, not the five minutes left")
    if c.text("position"):
        raise Failed(f"fan C: a place in the pre-queue is shown: {c.text('position')!r}")
    c.wait(f"the countdown moves on from {first}",
           lambda: CLOCK.match(c.text("countdown")) and clock_seconds(c.text("countdown")) < clock_seconds(first),
           timeout=5)
    step(f"C waits in the pre-queue: SCHEDULED, no place, countdown {first} -> {c.text('countdown')}")
    c.shot("03-pre-queue-countdown")


def sold_out_end(fans):
    concert, schedule = new_concert("One last seat", 1)
    room(concert, max_active=1)
    step(f"concert {concert}: one seat, max_active 1")

    buyer = must(*http("POST", "/users", {}), "POST", "/users")["access_token"]
    as_user(buyer, "POST", "/balance/charge", {"amount": PRICE})
    token = as_user(buyer, "POST", "/queue/tokens", {"concert_id": concert})["token"]
    deadline = time.monotonic() + 15
    while as_user(buyer, "GET", f"/queue/tokens/{token}")["status"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise Failed("the API buyer was not admitted within 15 s")
        time.sleep(0.2)
    step("a buyer (API) is ACTIVE")

    d = fans.setdefault("D", Fan("D"))
    d.open(f"/?concert={concert}")
    d.wait_text("status", "WAITING")
    d.wait_text("position", "1")
    step("D waits in the browser: WAITING, position 1")

    pass_ = {"X-Queue-Token": token}
    held = as_user(buyer, "POST", "/reservations", {"schedule_id": schedule, "seat_no": 1}, pass_)
    as_user(buyer, "POST", "/payments", {"reservation_id": held["id"]},
            {**pass_, "Idempotency-Key": str(uuid.uuid4())})
    step("the buyer holds and pays the last seat")
    d.wait_text("status", "SOLD_OUT")
    step("D's page: SOLD_OUT")
    d.shot("10-sold-out")


def main():
    os.makedirs(OUT, exist_ok=True)
    print(f"browser test: {CHROMIUM} via {CHROMEDRIVER} against {BASE}", flush=True)
    wait_for_server()
    fans = {}
    failed = None
    try:
        for scenario in (two_fans_one_slot, pre_queue_countdown, sold_out_end):
            print(f"{scenario.__name__}:", flush=True)
            t = time.monotonic()
            scenario(fans)
            print(f"{scenario.__name__}: ok ({time.monotonic() - t:.1f} s)", flush=True)
    except Exception as e:  # Failed, a WebDriver error, an assertion
        failed = e
        print(f"FAIL: {type(e).__name__}: {e}", flush=True)
        for fan in fans.values():
            try:
                print(f"  fan {fan.name}: {fan.state()}; screenshot {fan.shot(f'FAIL-{fan.name}')}", flush=True)
            except Exception as shot_error:
                print(f"  fan {fan.name}: no screenshot ({shot_error})", flush=True)
    finally:
        uncaught = []
        for fan in fans.values():
            for entry in fan.collect_console():
                if "Uncaught" in entry.get("message", ""):
                    uncaught.append(f"fan {fan.name}: {entry['message']}")
            fan.quit()
    if uncaught and not failed:
        failed = Failed("script errors in the page")
        print("FAIL: the page threw:\n  " + "\n  ".join(uncaught), flush=True)
    total = time.monotonic() - T0
    if failed:
        print(f"browser test: FAILED after {total:.1f} s (screenshots in {OUT}/)", flush=True)
        return 1
    print(f"browser test: passed in {total:.1f} s (screenshots in {OUT}/)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
