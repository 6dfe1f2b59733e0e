// The Vercel AI SDK's own client (`DefaultChatTransport` of npm `ai`, pinned in
// scripts/aisdk/package.json) against the `ai_chat` example of resumable-stream-axum.
//
//   node scripts/aisdk/chat.test.mjs --a http://127.0.0.1:PORT [--b http://127.0.0.1:PORT2] [--name NAME]
//
// Every chat is sent (POST /api/chat) to --a; every resume (GET /api/chat/{id}/stream,
// through `reconnectToStream`) goes to --b (default: --a), another instance on the same
// Redis when given. `ai` is loaded from $RS_AISDK_NODE_DIR (scripts/aisdk-test.sh
// installs it there, outside the source tree).
//
// Checks, each failing the run when wrong:
//   (a) a chat streams whole: the UI message stream header, the parts in order (start,
//       text-start, one text-delta per token, text-end, finish) and the message the SDK
//       assembles (readUIMessageStream) carry exactly the answer the server's model
//       gives for the prompt (GET /api/answer, computed without streaming);
//   (b) a chat whose connection is cut (abort signal) after a few deltas, mid-stream, is
//       resumed through reconnectToStream, and the resumed parts carry the whole answer;
//   (c) after the end, and for a chat that never ran, reconnectToStream returns null
//       (the server answered 204);
//   (e) a new message in the same chat starts a new stream, and a resume follows that
//       one, not the first;
//   (f) a body without a user message is refused with 400;
//   (g) the body of the AI SDK's resume guide (`{ id, message }`, the last message
//       only, from prepareSendMessagesRequest) is answered alike;
//   (h) POST /api/chat/{id}/stop (on the other instance) stops a running answer: its
//       reader gets an error part and no finish (200 `{"stopped":"cancelled"}`), a
//       reconnect then gets null, and a second stop finds nothing running (204).
// The last line is `NAME: N passed, M failed`; exits 0 only when nothing failed, and
// never runs longer than WATCHDOG_MS.

import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { checks, diff, within, serverArgs } from "../lib/checks.mjs";

const WATCHDOG_MS = 120_000;
const STEP_MS = 30_000;
// Deltas read before the cut: a few, far fewer than any answer has.
const DELTAS_BEFORE_CUT = 5;

const { name, baseA, baseB } = serverArgs("chat.test.mjs", "a", "b", "ai_chat");
const nodeDir = process.env.RS_AISDK_NODE_DIR ?? `${process.env.HOME}/.cache/resumable-stream/aisdk`;
// `ai` is an ES module: resolve it from the install directory, then import it.
const aiEntry = createRequire(`${nodeDir}/`).resolve("ai");
const ai = await import(pathToFileURL(aiEntry).href);
const aiVersion = createRequire(`${nodeDir}/`)("ai/package.json").version;
const { DefaultChatTransport, readUIMessageStream } = ai;

const { check, fail, finish } = checks(name, WATCHDOG_MS);

// The SDK's fetch, recorded: the tests look at statuses and headers the transport
// does not return.
const exchanges = [];
function recordingFetch(input, init) {
  return globalThis.fetch(input, init).then((response) => {
    exchanges.push({ method: init?.method ?? "GET", url: String(input), status: response.status, headers: response.headers });
    return response;
  });
}
const lastExchange = () => exchanges[exchanges.length - 1];

const sender = new DefaultChatTransport({ api: `${baseA}/api/chat`, fetch: recordingFetch });
const resumer = new DefaultChatTransport({ api: `${baseB}/api/chat`, fetch: recordingFetch });

const unique = (label) => `${label}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
const userMessage = (text) => ({ id: unique("user"), role: "user", parts: [{ type: "text", text }] });

async function expectedAnswer(prompt) {
  const response = await within(STEP_MS, fetch(`${baseA}/api/answer?prompt=${encodeURIComponent(prompt)}`), "GET /api/answer");
  return response.json(); // { text, tokens }
}

// Reads UI message chunks to the end (or until `stopAfter(chunks)` says so).
// `from` is a stream, or the reader of an earlier call to go on with.
async function readChunks(from, stopAfter = () => false) {
  const reader = from instanceof ReadableStream ? from.getReader() : from;
  const chunks = [];
  for (;;) {
    const { done, value } = await within(STEP_MS, reader.read(), "reading the UI message stream");
    if (done) return { chunks, reader, ended: true };
    chunks.push(value);
    if (stopAfter(chunks)) return { chunks, reader, ended: false };
  }
}

// The message the SDK itself assembles from chunks (what useChat would render).
async function assemble(chunks) {
  const stream = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  let last;
  for await (const message of readUIMessageStream({ stream, terminateOnError: true })) last = message;
  return last;
}

const deltasOf = (chunks) => chunks.filter((c) => c.type === "text-delta").map((c) => c.delta);

// What a whole stream must be, as checks: the protocol's order, and exactly `want`.
async function checkWhole(label, chunks, want) {
  const types = chunks.map((c) => c.type);
  const n = want.tokens;
  const shape = types.length === n + 4
    && types[0] === "start" && types[1] === "text-start"
    && types.slice(2, 2 + n).every((t) => t === "text-delta")
    && types[2 + n] === "text-end" && types[3 + n] === "finish";
  check(`${label}: start, text-start, ${n} text-deltas, text-end, finish, in that order`, shape,
    `got ${types.length} parts: ${[...new Set(types)].join(", ")}; first ${types.slice(0, 3).join(", ")}, last ${types.slice(-2).join(", ")}`);
  const text = deltasOf(chunks).join("");
  check(`${label}: the deltas make exactly the answer`, text === want.text, diff(text, want.text));
  const message = await assemble(chunks);
  const parts = message?.parts?.filter((p) => p.type === "text") ?? [];
  check(`${label}: the SDK's assembled message has one text part, the answer, done`,
    message?.role === "assistant" && parts.length === 1 && parts[0].text === want.text && parts[0].state === "done",
    `role ${message?.role}, ${parts.length} text parts; ${diff(parts[0]?.text ?? "", want.text)}`);
  return message;
}

async function send(chatId, messages, abortSignal) {
  return within(STEP_MS, sender.sendMessages({ chatId, messages, trigger: "submit-message", messageId: undefined, abortSignal }), "POST /api/chat");
}

async function reconnect(chatId) {
  return within(STEP_MS, resumer.reconnectToStream({ chatId }), `GET /api/chat/${chatId}/stream`);
}

console.log(`${name}: ai@${aiVersion} on node ${process.version}; chats sent to ${baseA}, resumed on ${baseB}`);
let stage = "setup";
try {
  // The model's answers, computed by the server without streaming.
  const prompts = {
    whole: "What is a resumable stream?",
    cut: "Tell me what happens when the connection drops.",
    // Framing characters in the prompt (CR, LF, a fake SSE field): the answer quotes
    // them, and they must reach the client as text, not as protocol.
    second: "Line one\r\ndata: [DONE]\n\nevent: end\nid: 7 — with 日本 and 🚀",
  };
  const want = {};
  for (const [key, prompt] of Object.entries(prompts)) want[key] = await expectedAnswer(prompt);
  check("the model answers a few hundred characters, different for each prompt",
    Object.values(want).every((w) => w.text.length >= 200 && w.tokens >= 20)
      && new Set(Object.values(want).map((w) => w.text)).size === 3,
    Object.values(want).map((w) => `${w.text.length} chars, ${w.tokens} tokens`).join("; "));
  if (baseB !== baseA) {
    const there = await (await fetch(`${baseB}/api/answer?prompt=${encodeURIComponent(prompts.whole)}`)).json();
    check("the second instance's model gives the same answer", there.text === want.whole.text, diff(there.text, want.whole.text));
  }

  // (a) A chat streams whole.
  stage = "(a) a whole chat";
  const chatA = unique("chat");
  const firstUser = userMessage(prompts.whole);
  const whole = await readChunks(await send(chatA, [firstUser]));
  const post = exchanges.find((e) => e.method === "POST");
  check("(a) POST /api/chat answers 200, text/event-stream, x-vercel-ai-ui-message-stream: v1",
    post?.status === 200 && post.headers.get("x-vercel-ai-ui-message-stream") === "v1"
      && (post.headers.get("content-type") ?? "").startsWith("text/event-stream"),
    `status ${post?.status}, content-type ${post?.headers.get("content-type")}, x-vercel-ai-ui-message-stream ${post?.headers.get("x-vercel-ai-ui-message-stream")}`);
  const assistant = await checkWhole("(a)", whole.chunks, want.whole);

  // (c) After the end, a reconnect finds nothing to resume.
  stage = "(c) reconnect after the end";
  check("(c) after the end, reconnectToStream returns null (204)",
    (await reconnect(chatA)) === null && lastExchange().status === 204, `status ${lastExchange().status}`);
  stage = "(c) reconnect to a chat that never ran";
  check("(c) for a chat that never ran, reconnectToStream returns null (204)",
    (await reconnect(unique("never"))) === null && lastExchange().status === 204, `status ${lastExchange().status}`);

  // (b) Cut after a few deltas, then resume.
  stage = "(b) cut and resume";
  const chatB = unique("chat");
  const abort = new AbortController();
  const cutStream = await send(chatB, [userMessage(prompts.cut)], abort.signal);
  const beforeCut = await readChunks(cutStream, (chunks) => deltasOf(chunks).length >= DELTAS_BEFORE_CUT);
  abort.abort();
  // What the client had parsed before the abort may still come out; then the stream
  // must fail (the abort), not end.
  let afterAbort = "ended";
  const drained = [];
  for (;;) {
    const next = await within(STEP_MS, beforeCut.reader.read().then((r) => r, () => null), "reading after the abort");
    if (next === null) { afterAbort = "rejected"; break; }
    if (next.done) break;
    drained.push(next.value);
  }
  const seen = deltasOf([...beforeCut.chunks, ...drained]);
  check(`(b) the connection was cut mid-stream, after ${seen.length} of ${want.cut.tokens} deltas`,
    !beforeCut.ended && seen.length >= DELTAS_BEFORE_CUT && seen.length < want.cut.tokens && afterAbort === "rejected",
    `${seen.length} deltas, then the stream ${afterAbort}`);
  check("(b) what arrived before the cut is the start of the answer", want.cut.text.startsWith(seen.join("")));
  const resumed = await reconnect(chatB);
  check("(b) reconnectToStream finds the cut chat still active (200, not 204)",
    resumed !== null && lastExchange().status === 200
      && lastExchange().headers.get("x-vercel-ai-ui-message-stream") === "v1",
    `status ${lastExchange().status}: the stream may have ended before the resume (TOKEN_MS too small?)`);
  if (resumed !== null) await checkWhole("(b) resumed", (await readChunks(resumed)).chunks, want.cut);
  check("(b) after the resumed stream's end, reconnectToStream returns null",
    (await reconnect(chatB)) === null, `status ${lastExchange().status}`);

  // (e) A second message in the first chat: a new stream, followed by a resume.
  stage = "(e) a second message in the same chat";
  const secondTurn = [firstUser, assistant, userMessage(prompts.second)];
  const sending = await send(chatA, secondTurn);
  const head = await readChunks(sending, (chunks) => deltasOf(chunks).length >= 2);
  const follower = await reconnect(chatA);
  check("(e) while the second answer streams, reconnectToStream finds it active", follower !== null, `status ${lastExchange().status}`);
  const [rest, followed] = await Promise.all([
    readChunks(head.reader),
    follower ? readChunks(follower) : Promise.resolve({ chunks: [] }),
  ]);
  await checkWhole("(e) the sender", [...head.chunks, ...rest.chunks], want.second);
  if (follower) await checkWhole("(e) the resume, from the start of the second answer", followed.chunks, want.second);
  check("(e) after the second answer's end, reconnectToStream returns null",
    (await reconnect(chatA)) === null, `status ${lastExchange().status}`);

  // (f) A malformed request is the client's error.
  stage = "(f) a body without a user message";
  const refused = await send(unique("chat"), []).then(() => null, (error) => error);
  check("(f) a body without a user message is refused with 400 and a reason",
    refused?.statusCode === 400 && String(refused?.responseBody ?? "").length > 0,
    `${refused ? `status ${refused.statusCode}: ${refused.responseBody}` : "it was accepted"}`);

  // (g) The body of the AI SDK's resume guide: the last message only.
  stage = "(g) a body with the last message only";
  const lastOnly = new DefaultChatTransport({
    api: `${baseA}/api/chat`,
    fetch: recordingFetch,
    prepareSendMessagesRequest: ({ id, messages }) => ({ body: { id, message: messages[messages.length - 1] } }),
  });
  const chatG = unique("chat");
  const single = await within(STEP_MS, lastOnly.sendMessages({
    chatId: chatG, messages: [userMessage(prompts.whole)], trigger: "submit-message", messageId: undefined,
  }), "POST /api/chat with { id, message }");
  await checkWhole("(g) { id, message }", (await readChunks(single)).chunks, want.whole);

  // (h) A stop from the other instance: the answer ends with an error part, no finish.
  stage = "(h) a stop";
  const chatH = unique("chat");
  const stopping = await send(chatH, [userMessage(prompts.cut)]);
  const early = await readChunks(stopping, (chunks) => deltasOf(chunks).length >= 3);
  const stopAnswer = await within(STEP_MS, fetch(`${baseB}/api/chat/${chatH}/stop`, { method: "POST" }), "POST stop");
  const stopped = await stopAnswer.json();
  check("(h) POST /api/chat/{id}/stop stops the running answer", stopAnswer.status === 200 && stopped.stopped === "cancelled",
    `status ${stopAnswer.status}, ${JSON.stringify(stopped)}`);
  const tail = await readChunks(early.reader);
  const stoppedChunks = [...early.chunks, ...tail.chunks];
  const types = stoppedChunks.map((c) => c.type);
  check("(h) the stopped answer ends with an error part, short of the whole answer, without finish",
    types[types.length - 1] === "error" && !types.includes("finish") && deltasOf(stoppedChunks).length < want.cut.tokens,
    `${deltasOf(stoppedChunks).length} of ${want.cut.tokens} deltas; last parts ${types.slice(-3).join(", ")}`);
  check("(h) after the stop, reconnectToStream returns null", (await reconnect(chatH)) === null, `status ${lastExchange().status}`);
  const again = await within(STEP_MS, fetch(`${baseA}/api/chat/${chatH}/stop`, { method: "POST" }), "POST stop again");
  check("(h) a second stop finds nothing running: 204", again.status === 204, `status ${again.status}`);
} catch (error) {
  fail(stage, error);
}

finish();
