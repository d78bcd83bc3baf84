"""The browser chat page (examples/web, served by examples/python/web.py) in headless Chromium,
driven by Selenium: two tabs chat through one sidecast, then through two sidecast nodes that share
a redis-server (one tab per node), each node with the Python chat backend attached. A
python-socketio client joins them. The page shows the names people typed (never socket ids), and
its online list follows joins and leaves as the backend pushes them, with no button to press.

Skipped when Chromium, its driver or Selenium is absent, unless CI=true: then it must run.
On failure, a screenshot of every tab is saved in the test output directory ($SIDECAST_TEST_OUTPUT,
default .build/test-output/ in the repository) and its path printed."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest

from browser import BROWSER_WAIT, EXAMPLES, ChromiumTestCase, unavailable
from harness import REPO, Client, free_port, start_process, start_sidecast, wait_until

try:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # reported by ChromiumTestCase.setUpClass
    pass

OUTPUT = os.environ.get("SIDECAST_TEST_OUTPUT") or os.path.join(REPO, ".build", "test-output")


def wait_for_port(port, process, what):
    def listening():
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    wait_until(listening, timeout=20, message=f"{what} to listen on port {port}")


class BrowserChatTests(ChromiumTestCase):

    def setUp(self):
        self.web_port = free_port()
        self.origin = f"http://127.0.0.1:{self.web_port}"
        self.tabs = {}
        self.sids = {}  # tab -> the sid its page shows
        web = start_process([sys.executable, os.path.join(EXAMPLES, "python", "web.py"),
                             "--port", str(self.web_port)], "web", cwd=REPO)
        self.addCleanup(self.stop, web)
        wait_for_port(self.web_port, web, "examples/python/web.py")
        self.driver = self.start_browser()

    # Processes

    def stop(self, process):
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def node(self, *flags):
        """A sidecast that lets the page's origin in, with the Python chat backend attached."""
        sidecast = start_sidecast(self, "--cors-origin", self.origin, *flags)
        backend = start_process([sys.executable, os.path.join(EXAMPLES, "python", "chat.py"),
                                 sidecast.socket_path], "chat", cwd=REPO)
        self.addCleanup(self.stop, backend)
        wait_until(lambda: any("attached to sidecast node" in line for line in backend.log_lines),
                   timeout=15, message="the chat backend to attach")
        return sidecast

    def start_redis(self):
        if shutil.which("redis-server") is None:
            unavailable("redis-server is not installed")
        port = free_port()
        redis = start_process(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"], "redis")
        self.addCleanup(self.stop, redis)
        wait_for_port(port, redis, "redis-server")
        return f"redis://127.0.0.1:{port}"

    def start_browser(self):
        return self.start_chromium("--window-size=1100,800",
                                   # Background tabs must keep running their timers at full speed.
                                   "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                                   "--disable-backgrounding-occluded-windows")

    # The page

    def open_tab(self, name, server, room="lobby"):
        """Opens the page in a new tab (the first one reuses the browser's first tab)."""
        if self.tabs:
            self.driver.switch_to.new_window("tab")
        self.tabs[name] = self.driver.current_window_handle
        self.driver.get(f"{self.origin}/?room={room}&server={server}")
        self.wait_text("room", room)

    def switch(self, name):
        self.driver.switch_to.window(self.tabs[name])

    def wait(self, condition, what):
        # The page redraws its online list on every join and leave: an element found a moment
        # ago may be gone by the time it is read, and the next poll looks again.
        return WebDriverWait(self.driver, BROWSER_WAIT, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,)).until(condition, f"waiting for {what}")

    def wait_text(self, element_id, text):
        self.wait(EC.text_to_be_present_in_element((By.ID, element_id), text), f"{text!r} in #{element_id}")

    def join(self, name):
        """Joins in tab `name`, typing `name` as the name; returns the sid the page shows."""
        self.switch(name)
        field = self.driver.find_element(By.ID, "token")
        field.clear()
        field.send_keys(name)
        self.driver.find_element(By.ID, "join").click()
        self.wait_text("status", f"connected as {name}")
        self.sids[name] = self.driver.find_element(By.TAG_NAME, "body").get_attribute("data-sid")
        self.assertEqual(self.driver.find_element(By.ID, "me").text, self.sids[name])
        return self.sids[name]

    def label(self, tab, sid, name):
        """How tab `tab` names the socket `sid` of `name`: its own is marked "(you)"."""
        return f"{name} (you)" if self.sids.get(tab) == sid else name

    def say(self, name, text):
        self.switch(name)
        self.driver.find_element(By.ID, "text").send_keys(text, Keys.ENTER)

    def wait_message(self, tab, sender, name, text):
        """Waits in tab `tab` for `text` from socket `sender`, shown under the name `name`."""
        self.switch(tab)
        want = (sender, self.label(tab, sender, name), text)

        def shown(driver):
            for item in driver.find_elements(By.CSS_SELECTOR, "#messages li.message"):
                sender = item.find_element(By.CLASS_NAME, "from")
                if (sender.get_attribute("data-sid"), sender.text, item.find_element(By.CLASS_NAME, "text").text) == want:
                    return True
            return False
        self.wait(shown, f"{text!r} from {name} ({sender}) in tab {tab}")

    def wait_online(self, tab, members):
        """Waits until the "online" list of tab `tab` shows exactly `members` (sid -> name), by name."""
        self.switch(tab)
        want = sorted((sid, self.label(tab, sid, name)) for sid, name in members.items())

        def listed(driver):
            items = driver.find_elements(By.CSS_SELECTOR, "#online li")
            return sorted((item.get_attribute("data-sid"), item.text) for item in items) == want
        self.wait(listed, f"online list {want} in tab {tab}")

    @contextlib.contextmanager
    def screenshots_on_failure(self):
        try:
            yield
        except BaseException:
            os.makedirs(OUTPUT, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for name, handle in self.tabs.items():
                path = os.path.join(OUTPUT, f"{self.id()}-{name}-{stamp}.png")
                try:
                    self.driver.switch_to.window(handle)
                    self.driver.save_screenshot(path)
                    print(f"screenshot of tab {name}: {path}", file=sys.stderr, flush=True)
                except Exception as error:  # the browser may be the thing that broke
                    print(f"no screenshot of tab {name}: {error}", file=sys.stderr, flush=True)
            raise

    def chat_in_two_tabs(self, server_of_ann, server_of_bob):
        self.open_tab("ann", server_of_ann)
        self.open_tab("bob", server_of_bob)
        # The list keeps itself current: there is nothing to press.
        self.assertEqual(self.driver.find_elements(By.ID, "refresh"), [])

        # Without a name the backend refuses, and the page says why.
        self.switch("bob")
        self.driver.find_element(By.ID, "join").click()
        self.wait_text("status", "rejected: missing token")

        ann = self.join("ann")
        self.wait_online("ann", {ann: "ann"})
        bob = self.join("bob")
        self.wait_online("bob", {ann: "ann", bob: "bob"})
        self.wait_online("ann", {ann: "ann", bob: "bob"})
        self.wait_text("messages", "bob joined")

        self.say("ann", "hello from ann")
        self.wait_message("bob", ann, "ann", "hello from ann")
        self.wait_message("ann", ann, "ann", "hello from ann")
        self.say("bob", "hi ann ✓")
        self.wait_message("ann", bob, "bob", "hi ann ✓")
        # Bob's acknowledgement came back: his "sending" line is gone and none says "not delivered".
        self.switch("bob")
        self.wait(lambda driver: not driver.find_elements(By.CSS_SELECTOR, "#messages .pending, #messages .failed"),
                  "bob's message to be acknowledged")

        # A python-socketio client is a person too: both pages list carol by name as she comes
        # and goes, and show her message under her name.
        carol = Client(f"{server_of_ann}/?room=lobby", auth={"token": "carol"})
        self.addCleanup(carol.close)
        carol.connect()
        self.wait_online("bob", {ann: "ann", bob: "bob", carol.sid(): "carol"})
        self.wait_online("ann", {ann: "ann", bob: "bob", carol.sid(): "carol"})
        self.assertEqual(carol.call("message", "hi all"), ({"ok": True},))
        self.wait_message("bob", carol.sid(), "carol", "hi all")
        carol.close()
        self.wait_text("messages", "carol left")
        self.wait_online("bob", {ann: "ann", bob: "bob"})

        # Bob goes to another page: the page leaves at once (pagehide), although Chromium keeps
        # it in its back/forward cache, where it would otherwise stay online until sidecast
        # misses its pings (25 s + 20 s).
        self.switch("bob")
        self.driver.get(f"{self.origin}/style.css")
        self.switch("ann")
        self.wait_text("messages", "bob left")
        self.wait_online("ann", {ann: "ann"})

        # Back to the chat: the page comes out of that cache and joins again, as a new socket.
        # (Should Chromium have evicted it from the cache, the page loads afresh: bob joins again.)
        self.switch("bob")
        self.driver.back()
        def back(driver):
            status = driver.find_element(By.ID, "status").text
            return status if status in ("connected as bob", "not connected") else None
        if self.wait(back, "bob's page to be back") == "connected as bob":
            self.sids["bob"] = self.driver.find_element(By.TAG_NAME, "body").get_attribute("data-sid")
        else:
            self.join("bob")
        bob_again = self.sids["bob"]
        self.assertNotIn(bob_again, ("", bob))
        self.wait_online("bob", {ann: "ann", bob_again: "bob"})
        self.wait_online("ann", {ann: "ann", bob_again: "bob"})

        # Closing bob's tab disconnects him too.
        self.driver.switch_to.window(self.tabs["bob"])
        self.driver.close()
        del self.tabs["bob"]
        self.switch("ann")
        self.wait_online("ann", {ann: "ann"})

    def test_two_tabs_chat_through_one_sidecast(self):
        sidecast = self.node()
        with self.screenshots_on_failure():
            self.chat_in_two_tabs(sidecast.url, sidecast.url)

    def test_two_tabs_chat_through_two_nodes_sharing_redis(self):
        redis = self.start_redis()
        first = self.node("--redis", redis)
        second = self.node("--redis", redis)
        with self.screenshots_on_failure():
            self.chat_in_two_tabs(first.url, second.url)


if __name__ == "__main__":
    unittest.main()
