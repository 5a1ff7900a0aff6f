"""The web page at /ui in headless Chromium (selenium + the system chromium/chromedriver),
against the real service with a scripted upstream and the fixture MCP server.

Env: MCP_CHAT_URL (a proxy in front of the service), MCP_CHAT_CUT_URL (cuts the proxy's
connections), MCP_CHAT_KEY, MCP_CHAT_SCREENSHOTS (a folder), CHROMIUM, CHROMEDRIVER.
The upstream's script (tests/ui.rs) answers, in order: a streamed hello; an `echo` tool call
whose text is a script-injection payload, then an answer repeating it; an upstream error,
then the retried answer; the answer of the second model; a call waiting for approval and the
answer after it; an answer cut by a dropped connection, then the retried one; one at 360 px. Prints "all checks passed".
"""

import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

URL = os.environ["MCP_CHAT_URL"]
KEY = os.environ["MCP_CHAT_KEY"]
SHOTS = os.environ["MCP_CHAT_SCREENSHOTS"]
os.makedirs(SHOTS, exist_ok=True)
for old in os.listdir(SHOTS):
    if old.endswith(".png"):
        os.remove(os.path.join(SHOTS, old))

checks = 0
LOG = open(os.path.join(SHOTS, "log.txt"), "w", encoding="utf-8")


def say(line):
    print(line, flush=True)
    LOG.write(line + "\n")
    LOG.flush()


def check(cond, what):
    global checks
    if not cond:
        say(f"FAILED: {what}")
        shot("failure")
        sys.exit(1)
    checks += 1
    say(f"ok: {what}")


def shot(name):
    path = os.path.join(SHOTS, f"{name}.png")
    driver.save_screenshot(path)


def wait(cond, what, timeout=20):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: cond())
    except Exception as e:  # noqa: BLE001 - report what we waited for
        say(f"FAILED waiting for: {what} ({type(e).__name__})")
        say(driver.find_element(By.TAG_NAME, "body").text)
        shot("failure")
        sys.exit(1)


def js(script, *args):
    return driver.execute_script(script, *args)


def by(css):
    return driver.find_elements(By.CSS_SELECTOR, css)


def text_of(css):
    found = by(css)
    return found[-1].text if found else ""


def banner():
    b = driver.find_element(By.ID, "banner")
    return b.text if b.is_displayed() else ""


def send(message):
    """Types into the message box and presses Enter: the keyboard path."""
    box = driver.find_element(By.ID, "prompt")
    box.click()
    box.send_keys(message)
    box.send_keys(Keys.ENTER)


def answers():
    return by(".msg.assistant")


def pwned():
    return js("return window.__pwned === undefined ? null : window.__pwned;")


options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for arg in [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1200,800",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--hide-scrollbars",
]:
    options.add_argument(arg)
service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
driver = webdriver.Chrome(service=service, options=options)
driver.set_script_timeout(15)
driver.set_page_load_timeout(30)

try:
    # --- 401: no key yet; a wrong key; then the right one.
    driver.get(f"{URL}/ui")
    wait(lambda: "401" in banner(), "a 401 banner without a key")
    check("needs an API key" in banner(), "the banner says a key is needed")
    check(driver.find_element(By.ID, "key-form").is_displayed(), "the key form is shown")
    check(
        driver.switch_to.active_element.get_attribute("id") == "key",
        "the key field has the focus",
    )
    shot("01-needs-key")
    driver.switch_to.active_element.send_keys("wrong-key", Keys.ENTER)
    wait(lambda: "refused this API key" in banner(), "a 401 banner for a wrong key")
    shot("02-wrong-key")
    driver.switch_to.active_element.send_keys(KEY, Keys.ENTER)
    wait(lambda: js("return document.body.dataset.ready === 'true'"), "the page ready with the key")
    check(banner() == "", "the error is gone once the key works")
    check(js("return sessionStorage.getItem('mcp-chat.key')") == KEY, "the key is in session storage")
    check(js("return localStorage.getItem('mcp-chat.key')") is None, "and not in local storage")

    # --- models and tools.
    models = [o.get_attribute("value") for o in by("#model option")]
    check(models == ["test-model", "other-model"], f"the model picker lists {models}")
    wait(lambda: by("#servers [data-server='fx']"), "the tools panel shows the fixture server")
    fx = text_of("#servers [data-server='fx']")
    check("ready" in fx and "echo" in fx and "add" in fx, "the server is ready with its tools")

    # --- a question, streamed in steps.
    send("Say hello")
    seen = []
    deadline = time.time() + 20
    while time.time() < deadline:
        t = text_of(".msg.assistant .text")
        if t and (not seen or seen[-1] != t):
            seen.append(t)
        if "upstream" in t and not driver.find_element(By.ID, "send").get_attribute("disabled"):
            break
        time.sleep(0.03)
    say(f"streamed states: {seen}")
    check(len(seen) >= 3, f"the answer arrived in steps ({len(seen)} states seen)")
    check(seen[-1] == "Hello from the fake upstream", "the whole answer is shown")
    check(by(".msg.assistant .text strong")[-1].text == "fake", "Markdown bold is rendered")
    shot("03-streamed-answer")

    # --- a tool call whose result carries a script-injection payload.
    send("Echo the payload")
    wait(lambda: by(".tool[data-call='call_echo']"), "a tool call card")
    wait(lambda: "ok" in (by(".tool[data-call='call_echo']")[0].get_attribute("class") or ""), "the tool result")
    card = by(".tool[data-call='call_echo']")[0]
    check("echo" in card.find_element(By.CSS_SELECTOR, "summary").text, "the card names the tool")
    check("ms" in card.find_element(By.CSS_SELECTOR, ".dur").text, "the card shows the duration")
    result = card.find_element(By.CSS_SELECTOR, ".result").text
    check("<script>window.__pwned=1</script>" in result, "the tool result is shown as text")
    wait(lambda: "done" in text_of(".msg.assistant:last-child .text"), "the answer after the tool")
    final = text_of(".msg.assistant:last-child .text")
    check("<script>window.__pwned=3</script>" in final, "the model's script is shown as text")
    check(pwned() is None, "no injected script ran")
    check(not by("#log script, #log img, #log iframe"), "no element came from the payload")
    check(not by("#log a[href^='javascript']"), "a javascript: link is not a link")
    shot("04-tool-call")
    # The card collapses and opens from the keyboard (a <details>).
    summary = card.find_element(By.CSS_SELECTOR, "summary")
    js("arguments[0].focus()", summary)
    summary.send_keys(Keys.ENTER)
    check(card.get_attribute("open") is None, "the card collapses with Enter")
    summary.send_keys(Keys.ENTER)
    check(card.get_attribute("open") is not None, "and opens again")

    # --- an upstream error, then Retry.
    send("This one fails first")
    wait(lambda: banner() != "", "an error banner for the upstream error")
    say(f"upstream error banner: {banner()}")
    check("upstream" in banner().lower(), "the banner names the upstream")
    retry = driver.find_element(By.ID, "banner-retry")
    check(retry.is_displayed(), "with a Retry button")
    shot("05-upstream-error")
    js("arguments[0].focus()", retry)
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait(lambda: "Recovered" in text_of(".msg.assistant:last-child .text"), "the retried answer")
    check(banner() == "", "the banner is gone after the retry")

    # --- reload: the session is in the sidebar and reopens from the server.
    session_id = js("return localStorage.getItem('mcp-chat.current')")
    check(bool(session_id), "the session id is kept")
    driver.refresh()
    wait(lambda: js("return document.body.dataset.ready === 'true'"), "the page ready after reload")
    check(by(f"#sessions li[data-session='{session_id}']"), "the sidebar lists the session")
    wait(lambda: by(".tool[data-call='call_echo']"), "the stored tool call is shown again")
    texts = [m.text for m in by(".msg.user")]
    check(any("Say hello" in t for t in texts), "the stored conversation is shown")
    check("<script>" in text_of(".tool[data-call='call_echo'] .result"), "the stored result is text")
    check(pwned() is None, "no injected script ran after the reload")
    shot("06-after-reload")

    # --- another model: the next turn goes to it.
    Select(driver.find_element(By.ID, "model")).select_by_value("other-model")
    send("Which model are you?")
    wait(lambda: "second model" in text_of(".msg.assistant:last-child .text"), "the second model's answer")
    check(js("return localStorage.getItem('mcp-chat.model')") == "other-model", "the pick is kept")
    shot("07-other-model")

    # --- approvals: the turn goes to /v1/chat/completions and waits for Approve.
    box = driver.find_element(By.ID, "ask-approval")
    js("arguments[0].focus()", box)
    box.send_keys(Keys.SPACE)
    check(box.is_selected(), "ask before each tool call is on")
    send("Add 2 and 3")
    wait(lambda: by(".approval[data-approval='call_add'] button"), "an approval card")
    card = by(".approval[data-approval='call_add']")[0]
    check("add" in card.text and '"a": 2' in card.text, "the card shows the call and its arguments")
    shot("08-approval")
    approve = [b for b in card.find_elements(By.TAG_NAME, "button") if b.text == "Approve"][0]
    check(any(b.text == "Deny" for b in card.find_elements(By.TAG_NAME, "button")), "with Deny beside Approve")
    js("arguments[0].focus()", approve)
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait(lambda: "sum is 5" in text_of(".msg.assistant:last-child .text"), "the answer after the approval")
    check(by(".msg.assistant:last-child .tool.ok"), "the approved call is shown as done")
    check(banner() == "", "no error on the way")
    js("arguments[0].focus()", box)
    box.send_keys(Keys.SPACE)
    check(not box.is_selected(), "ask before each tool call is off again")

    # --- a dropped connection mid-answer (the proxy in front cuts it), then Retry.
    send("This connection drops")
    wait(lambda: "Half" in text_of(".msg.assistant:last-child .text"), "the start of the answer")
    urllib.request.urlopen(os.environ["MCP_CHAT_CUT_URL"], timeout=10).close()
    wait(lambda: "Connection problem" in banner(), "a dropped-connection banner")
    say(f"dropped banner: {banner()}")
    check("(incomplete)" in text_of(".msg.assistant:last-child"), "the cut answer is marked")
    shot("09-dropped")
    retry = driver.find_element(By.ID, "banner-retry")
    check(retry.is_displayed(), "with a Retry button")
    js("arguments[0].focus()", retry)
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait(lambda: "Whole again" in text_of(".msg.assistant:last-child .text"), "the retried answer")
    check(banner() == "", "the banner is gone after the retry")

    # --- the renderer on hostile and ordinary Markdown.
    rendered = js(
        """
        const box = document.createElement('div');
        const cases = {
          js: '[x](javascript:alert(1))', data: '[y](data:text/html,hi)',
          ok: '[docs](https://example.org/a?b=1)', html: '<b onclick="x()">b</b>',
          code: '```\\n<img src=x onerror=alert(1)>\\n```', list: '- one\\n- **two**',
        };
        const out = {};
        for (const [k, v] of Object.entries(cases)) {
          box.replaceChildren(window.mcpChat.renderMarkdown(v));
          out[k] = {
            links: [...box.querySelectorAll('a')].map(a => a.getAttribute('href')),
            tags: [...box.querySelectorAll('*')].map(e => e.tagName.toLowerCase()),
            text: box.textContent,
          };
        }
        return JSON.stringify(out);
        """
    )
    r = json.loads(rendered)
    check(r["js"]["links"] == [] and "javascript:" in r["js"]["text"], "javascript: links stay text")
    check(r["data"]["links"] == [], "data: links stay text")
    check(r["ok"]["links"] == ["https://example.org/a?b=1"], "https links are links")
    check(r["html"]["tags"] == ["p"] and "<b" in r["html"]["text"], "HTML stays text")
    check(r["code"]["tags"] == ["pre", "code"] and "<img" in r["code"]["text"], "code blocks are text")
    check(r["list"]["tags"] == ["ul", "li", "li", "strong"], "lists and bold")

    # --- no request left this origin, and nothing broke the policy.
    resources = js("return performance.getEntriesByType('resource').map(e => e.name)")
    check(all(u.startswith(URL) for u in resources), f"every request went to the service ({len(resources)})")
    check(js("return window.mcpChat.violations") == [], "no Content-Security-Policy violation")

    # --- desktop screenshot for the README.
    shot("10-desktop")

    # --- a new session, then delete the old one.
    driver.find_element(By.ID, "new-session").send_keys(Keys.ENTER)
    check("new conversation" in driver.find_element(By.ID, "log").text, "a new session starts empty")
    delete = by(f"#sessions li[data-session='{session_id}'] .delete")[0]
    js("arguments[0].focus()", delete)
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait(lambda: not by(f"#sessions li[data-session='{session_id}']"), "the session leaves the sidebar")
    status = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/sessions/' + arguments[0], {headers: {authorization: 'Bearer ' + arguments[1]}})"
        ".then(r => done(r.status), e => done(String(e)));",
        session_id,
        KEY,
    )
    check(status == 404, f"the deleted session is gone on the server ({status})")

    # --- 360 px wide: one column, panels behind buttons, nothing wider than the screen.
    driver.set_window_size(360, 740)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 360, "height": 740, "deviceScaleFactor": 1, "mobile": True},
    )
    time.sleep(0.3)
    width = js("return document.documentElement.clientWidth")
    scroll = js("return document.documentElement.scrollWidth")
    check(scroll <= width, f"no horizontal scrolling at 360 px ({scroll} <= {width})")
    toggle = driver.find_element(By.ID, "toggle-sidebar")
    check(toggle.is_displayed(), "the sessions button is shown on a narrow screen")
    check(not driver.find_element(By.ID, "sidebar").is_displayed(), "the sidebar is folded away")
    check(driver.find_element(By.ID, "prompt").is_displayed(), "the message box is shown")
    send("Hello from a phone")
    wait(lambda: "narrow" in text_of(".msg.assistant:last-child .text"), "an answer at 360 px")
    shot("11-narrow")
    js("arguments[0].focus()", toggle)
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    check(driver.find_element(By.ID, "sidebar").is_displayed(), "the sessions panel opens by keyboard")
    check(
        driver.switch_to.active_element.get_attribute("id") == "new-session",
        "and takes the focus",
    )
    shot("12-narrow-sessions")
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    check(not driver.find_element(By.ID, "sidebar").is_displayed(), "Escape folds it again")

    # --- Progress: a running call's card shows the server's reports as they come.
    send("Take your time")
    wait(
        lambda: js(
            "const p = document.querySelector(\"details.tool[data-call='call_slow'] progress\");"
            "return !!p && !p.hidden && p.value > 0 && p.value < p.max;"
        ),
        "a progress bar that moves while the call runs",
    )
    shot("13-progress")
    wait(lambda: "Slow but done" in text_of(".msg.assistant:last-child .text"), "the answer after the slow call")
finally:
    driver.quit()

say(f"{checks} checks; all checks passed")
