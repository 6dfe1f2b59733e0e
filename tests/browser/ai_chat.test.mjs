// The ai_chat example's page in a real headless browser (Debian's chromium, driven by
// playwright-core): a chat in the Vercel AI SDK's protocol, cut and resumed, reloaded
// and resumed, and followed from a second tab.
//
//   node tests/browser/ai_chat.test.mjs --base http://127.0.0.1:PORT [--second http://127.0.0.1:PORT2] [--name NAME]
//
// --base is the ai_chat the first tab uses; --second (default: --base) the one the
// second tab uses: another instance on the same Redis, to check that it resumes the
// first one's chats. playwright-core is loaded from $RS_BROWSER_NODE_DIR; the browser
// is $CHROMIUM (default /usr/bin/chromium).
//
// The first tab sends a prompt (POST /api/chat); after some text, "Cut connection"
// aborts the response and the page resumes (GET /api/chat/{id}/stream, which replays
// the chat's active stream from its start); after more text, a reload, on which the
// page resumes as useChat({ resume: true }) does on mount. The second tab opens the
// same chat while it runs. Both must end with exactly the model's answer (GET
// /api/answer); a reload after the end gets 204 and keeps the finished message. Each
// interruption must happen mid-stream, or the run fails as not having tested anything.
// Exits 0 when every check passed, 1 otherwise; never runs longer than WATCHDOG_MS.

import { checks, diff, inBrowser, serverArgs } from "../../scripts/lib/checks.mjs";

const WATCHDOG_MS = 120_000;
const STEP_MS = 20_000;
const PROMPT = "How does a chat resume after a reload? Ünïcode: 日本 🚀";

const { name, baseA, baseB } = serverArgs("ai_chat.test.mjs", "base", "second", "ai_chat");
const { check, fail, finish } = checks(name, WATCHDOG_MS);

// What a page shows.
const shown = (page) => page.evaluate(() => ({
  answer: document.getElementById("answer").textContent,
  state: document.getElementById("state").textContent,
  how: document.getElementById("how").textContent,
  kept: Number(document.getElementById("kept").textContent),
  log: Array.from(document.querySelectorAll("#log li"), (li) => li.textContent).reverse(),
}));
const untilLength = (page, n) =>
  page.waitForFunction((n) => document.getElementById("answer").textContent.length >= n, n, { timeout: STEP_MS });
const untilHow = (page, how) =>
  page.waitForFunction((how) => document.getElementById("how").textContent === how, how, { timeout: STEP_MS });
const untilDone = (page) =>
  page.waitForFunction(() => document.getElementById("state").textContent === "done", null, { timeout: 60_000 });

console.log(`${name}: first tab on ${baseA}, second tab on ${baseB}`);
const expected = (await (await fetch(`${baseA}/api/answer?prompt=${encodeURIComponent(PROMPT)}`)).json()).text;
check("the model gives an answer of a few hundred characters", expected.length > 200, `${expected.length} characters`);

await inBrowser(STEP_MS, { check, fail }, async (run) => {
  const tab1 = await run.newTab("tab 1");
  await tab1.goto(`${baseA}/`);

  // 1. Send, then cut: the page aborts its response and resumes by GET.
  run.stage = "send: waiting for 40 characters";
  await tab1.fill("#prompt", PROMPT);
  await tab1.click("#send");
  await untilLength(tab1, 40);
  const chatId = (await tab1.evaluate(() => location.hash)).slice(1);
  const beforeCut = await shown(tab1);
  check("Send streams the answer (state streaming)", beforeCut.state === "streaming" && chatId.length > 0,
    `state ${beforeCut.state}, chat ${JSON.stringify(chatId)}`);
  check("the POST answered with x-vercel-ai-ui-message-stream: v1",
    beforeCut.log.some((l) => l === "sent, x-vercel-ai-ui-message-stream: v1"), beforeCut.log.join(" | "));
  run.stage = "cut: waiting for the page to resume";
  await tab1.click("#cut");
  await untilHow(tab1, "resumed after the cut");
  const afterCut = await shown(tab1);
  check("after the cut, the page resumed the chat (200), mid-stream",
    beforeCut.answer.length < expected.length && afterCut.log.some((l) => /^connection cut at \d+/.test(l))
      && afterCut.log.includes("resumed after the cut (200)"),
    `cut at ${beforeCut.answer.length} of ${expected.length}; ${afterCut.log.join(" | ")}`);
  check("after the cut, the text is a prefix of the answer", expected.startsWith(afterCut.answer), diff(afterCut.answer, expected));

  // 2. A second tab on the same chat, possibly on another instance.
  const tab2 = await run.newTab("tab 2");
  run.stage = "second tab: waiting for it to resume on load";
  await tab2.goto(`${baseB}/#${chatId}`);
  await untilHow(tab2, "resumed on load");
  const second = await shown(tab2);
  check("a second tab resumes the running chat on load", second.state === "streaming" && expected.startsWith(second.answer),
    `state ${second.state}; ${diff(second.answer, expected)}`);

  // 3. Reload: the page resumes on mount, as useChat({ resume: true }) does.
  run.stage = "reload: waiting for 30 more characters, then the resume on load";
  await untilLength(tab1, afterCut.answer.length + 30);
  const beforeReload = await shown(tab1);
  await tab1.reload();
  await untilHow(tab1, "resumed on load");
  const afterReload = await shown(tab1);
  check("after the reload, the page resumed the chat mid-stream",
    beforeReload.answer.length < expected.length && afterReload.state === "streaming",
    `reloaded at ${beforeReload.answer.length} of ${expected.length}; state ${afterReload.state}`);

  // 4. To the end.
  run.stage = "waiting for both tabs to see the end";
  await Promise.all([untilDone(tab1), untilDone(tab2)]);
  for (const [name, tab] of [["first tab", tab1], ["second tab", tab2]]) {
    const end = await shown(tab);
    check(`${name}: exactly the answer`, end.answer === expected, diff(end.answer, expected));
  }
  const kept = await shown(tab1);
  check("first tab: the user message and the answer are kept", kept.kept === 2, `${kept.kept} messages`);

  // 5. A reload after the end: 204, nothing fetched again, the answer kept.
  run.stage = "reload after the end";
  await tab1.reload();
  await untilHow(tab1, "nothing to resume (204)");
  const afterEnd = await shown(tab1);
  check("a reload after the end gets 204 and shows the kept answer",
    afterEnd.answer === expected && afterEnd.state === "done", `${afterEnd.state}; ${diff(afterEnd.answer, expected)}`);
  console.log(`  (tab 1 log: ${afterEnd.log.join(" | ")})`);
});

finish();
