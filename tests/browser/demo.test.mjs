// The demo page in a real headless browser (Debian's chromium, driven by playwright-core):
// start a stream, interrupt it mid-stream three ways, resume, and check that every tab
// ends with the whole answer exactly once.
//
//   node tests/browser/demo.test.mjs --base http://127.0.0.1:PORT [--second http://127.0.0.1:PORT2] [--name NAME]
//
// --base is the server the first tab uses; --second (default: --base) the server the
// second tab uses: another instance on the same Redis, to check that it serves resumes
// of the first one's streams. playwright-core is loaded from $RS_BROWSER_NODE_DIR
// (scripts/browser-test.sh installs it there, outside the source tree); the browser is
// $CHROMIUM (default /usr/bin/chromium); scripts/lib/checks.mjs has what the tests share.
//
// The first tab: Start; after some text, "Cut connection" (the server closes the SSE
// response; the browser's EventSource reconnects by itself with Last-Event-ID and the
// page must show that it resumed from an event id); after more text, a reload (the page
// resumes from the text it kept, by UTF-16 offset); then to the end. The second tab opens
// the same stream id while it runs and follows it from the start. Both texts must equal
// the server's answer (GET /api/answer): a duplicated or lost token fails the run. Each
// interruption must happen mid-stream, or the run fails as not having tested anything.
// Exits 0 when every check passed, 1 otherwise; never runs longer than WATCHDOG_MS.

import { checks, diff, inBrowser, serverArgs } from "../../scripts/lib/checks.mjs";

const WATCHDOG_MS = 120_000;
const STEP_MS = 20_000;

const { name, baseA, baseB } = serverArgs("demo.test.mjs", "base", "second", "demo");
const { check, fail, finish } = checks(name, WATCHDOG_MS);

// What a page shows: the text, its length as the page counts it, and the status lines.
async function shown(page) {
  return page.evaluate(() => ({
    text: document.getElementById("text").textContent,
    count: Number(document.getElementById("count").textContent),
    state: document.getElementById("state").textContent,
    conn: document.getElementById("conn").textContent,
    resumed: document.getElementById("resumed").textContent,
    eventId: document.getElementById("eventid").textContent,
    log: Array.from(document.querySelectorAll("#log li"), (li) => li.textContent).reverse(),
  }));
}

const untilLength = (page, n) =>
  page.waitForFunction((n) => document.getElementById("text").textContent.length >= n, n, { timeout: STEP_MS });
const untilResumed = (page, pattern) =>
  page.waitForFunction((p) => new RegExp(p).test(document.getElementById("resumed").textContent), pattern, { timeout: STEP_MS });
const untilEnded = (page) =>
  page.waitForFunction(() => document.getElementById("conn").textContent.startsWith("closed")
    && document.getElementById("state").textContent === "done", null, { timeout: 60_000 });

console.log(`${name}: first tab on ${baseA}, second tab on ${baseB}`);
const expected = await (await fetch(`${baseA}/api/answer`)).text();
check("the server gives the expected answer", expected.length > 100, `got ${expected.length} characters`);

await inBrowser(STEP_MS, { check, fail }, async (run) => {
  const tab1 = await run.newTab("tab 1");
  await tab1.goto(`${baseA}/`);
  run.stage = "Start: waiting for the stream to start";
  await tab1.click("#start");
  await untilResumed(tab1, "started the stream");
  const id = (await tab1.evaluate(() => location.hash)).slice(1);
  check("Start creates a stream and produces it", /^[0-9a-f]{16}$/.test(id), `id ${JSON.stringify(id)}`);

  // 1. Cut: the server closes the response; the browser reconnects with Last-Event-ID.
  run.stage = "waiting for the state to be active and 40 characters";
  await tab1.waitForFunction(() => document.getElementById("state").textContent === "active", null, { timeout: STEP_MS });
  await untilLength(tab1, 40);
  const beforeCut = await shown(tab1);
  check("the state is active while streaming", beforeCut.state === "active", `state ${beforeCut.state}`);
  run.stage = "cut: waiting for the browser to resume by Last-Event-ID (did the stream end first?)";
  await tab1.click("#cut");
  await untilResumed(tab1, "from event id \\d+ \\(Last-Event-ID");
  const afterCut = await shown(tab1);
  check("after the cut, the browser resumed by Last-Event-ID, mid-stream",
    beforeCut.text.length < expected.length && afterCut.log.some((l) => /connection lost/.test(l)),
    `cut at ${beforeCut.text.length} of ${expected.length}; ${afterCut.resumed}`);
  check("after the cut, the text so far is a prefix of the answer",
    expected.startsWith(afterCut.text), diff(afterCut.text, expected));

  // 2. A second tab on the same stream id, possibly on another instance.
  const tab2 = await run.newTab("tab 2");
  run.stage = "second tab: waiting for it to resume from the start";
  await tab2.goto(`${baseB}/#${id}`);
  await untilResumed(tab2, "from the start");
  const second = await shown(tab2);
  check("a second tab follows the running stream from the start, as a resumer",
    second.log.some((l) => /connected as resumer/.test(l)) && expected.startsWith(second.text),
    `${second.log.join(" | ")}; ${diff(second.text, expected)}`);

  // 3. Reload: the page keeps its text and resumes by UTF-16 offset.
  run.stage = "reload: waiting for 30 more characters, then a resume by offset";
  await untilLength(tab1, afterCut.text.length + 30);
  const beforeReload = await shown(tab1);
  await tab1.reload();
  await untilResumed(tab1, "from offset \\d+");
  const afterReload = await shown(tab1);
  const offset = Number(/from offset (\d+)/.exec(afterReload.resumed)[1]);
  check("after the reload, the page resumed by offset, mid-stream",
    offset >= beforeReload.text.length && offset < expected.length,
    `offset ${offset}, ${beforeReload.text.length} before the reload, of ${expected.length}`);
  check("after the reload, the kept text is a prefix of the answer",
    expected.startsWith(afterReload.text), diff(afterReload.text, expected));

  // 4. To the end, and the texts.
  run.stage = "waiting for both tabs to see the end";
  await Promise.all([untilEnded(tab1), untilEnded(tab2)]);
  for (const [name, tab] of [["first tab", tab1], ["second tab", tab2]]) {
    const end = await shown(tab);
    check(`${name}: the whole answer exactly once`, end.text === expected, diff(end.text, expected));
    check(`${name}: the UTF-16 count matches`, end.count === expected.length, `${end.count} vs ${expected.length}`);
    check(`${name}: the state is done`, end.state === "done", `state ${end.state}`);
    check(`${name}: the connection closed at the stream's end`, end.conn === "closed: the stream ended", end.conn);
  }

  // 5. A reload after the end: the text is kept, nothing is fetched twice.
  run.stage = "reload after the end";
  await tab1.reload();
  await tab1.waitForFunction(() => document.getElementById("conn").textContent.startsWith("closed"), null, { timeout: STEP_MS });
  const afterEnd = await shown(tab1);
  check("a reload after the end shows the whole answer once, and the stream as done",
    afterEnd.text === expected && afterEnd.conn === "closed: Stream is already done",
    `${afterEnd.conn}; ${diff(afterEnd.text, expected)}`);
  console.log(`  (tab 1 log: ${afterReload.log.join(" | ")})`);
});

finish();
