// What the Node test drivers share (scripts/aisdk/chat.test.mjs, tests/browser/*.test.mjs):
// their arguments, a tally of named checks with a watchdog over the whole run, bounded
// waits, a readable difference of two texts, and headless chromium through
// playwright-core loaded from a directory outside the source tree.

import { createRequire } from "node:module";
import { parseArgs } from "node:util";

// `--FIRST URL [--SECOND URL] [--name NAME]`: the two servers a run uses (SECOND
// defaults to FIRST), without a trailing slash. Exits 2 with the usage when FIRST is
// missing.
export function serverArgs(script, first, second, defaultName) {
  const { values } = parseArgs({
    options: {
      [first]: { type: "string" },
      [second]: { type: "string" },
      name: { type: "string", default: defaultName },
    },
  });
  if (!values[first]) {
    console.error(`usage: ${script} --${first} URL [--${second} URL] [--name NAME]`);
    process.exit(2);
  }
  const trim = (url) => url.replace(/\/$/, "");
  return { name: values.name, baseA: trim(values[first]), baseB: trim(values[second] ?? values[first]) };
}

// A run's checks: `check` prints and counts each, `fail` records what broke a stage,
// `finish` prints `NAME: N passed, M failed (S s)` and exits 0 only when nothing
// failed. The whole run is failed if it lasts longer than `watchdogMs`.
export function checks(name, watchdogMs) {
  const started = Date.now();
  const failures = [];
  let passed = 0;
  const watchdog = setTimeout(() => {
    console.error(`${name}: FAILED: the whole test took longer than ${watchdogMs} ms`);
    process.exit(1);
  }, watchdogMs);
  return {
    check(what, ok, detail = "") {
      if (ok) {
        passed += 1;
        console.log(`  ok    ${what}`);
      } else {
        failures.push(what);
        console.log(`  FAIL  ${what}${detail ? `\n        ${detail}` : ""}`);
      }
    },
    fail(stage, error) {
      failures.push(String(error));
      console.log(`  FAIL  ${stage}: ${(error?.message ?? String(error)).split("\n")[0]}`);
    },
    finish() {
      clearTimeout(watchdog);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      console.log(`${name}: ${passed} passed, ${failures.length} failed (${seconds} s)`);
      process.exit(failures.length === 0 ? 0 : 1);
    },
  };
}

// `promise`, or a rejection naming `what` after `ms`: every wait is bounded.
export function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A difference, readably: where two texts first part ("" when they are equal).
export function diff(got, want) {
  if (got === want) return "";
  let i = 0;
  while (i < got.length && i < want.length && got[i] === want[i]) i += 1;
  return `length ${got.length} vs ${want.length}; first difference at ${i}: got ${JSON.stringify(got.slice(i, i + 40))}, want ${JSON.stringify(want.slice(i, i + 40))}`;
}

// Headless chromium ($CHROMIUM, default /usr/bin/chromium) through the playwright-core
// installed in $RS_BROWSER_NODE_DIR (scripts/browser-test.sh puts it there).
export async function launchChromium(timeout) {
  const nodeDir = process.env.RS_BROWSER_NODE_DIR ?? `${process.env.HOME}/.cache/resumable-stream/browser`;
  const { chromium } = createRequire(`${nodeDir}/`)("playwright-core");
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    timeout,
    // Containers often have a small /dev/shm.
    args: ["--disable-dev-shm-usage"],
  });
}

// Runs `scenario(run)` in a fresh browser context, every wait bounded by `stepMs`:
// `run.newTab(label)` opens a tab whose script errors are collected, and `run.stage`
// says what the scenario waits for, to name a wait that times out (`fail`). Then the
// browser is closed, and `check` that no page had a script error.
export async function inBrowser(stepMs, { check, fail }, scenario) {
  const browser = await launchChromium(stepMs);
  const pageErrors = [];
  const run = { stage: "opening the page", newTab: null };
  try {
    const context = await browser.newContext();
    context.setDefaultTimeout(stepMs);
    run.newTab = async (label) => {
      const tab = await context.newPage();
      tab.on("pageerror", (e) => pageErrors.push(`${label}: ${e.message}`));
      return tab;
    };
    await scenario(run);
  } catch (error) {
    fail(run.stage, error);
  } finally {
    await browser.close().catch(() => {});
  }
  check("no script error in the page", pageErrors.length === 0, pageErrors.join("; "));
}
