// The Node peer of the interop suite: a thin command-line wrapper around the npm
// library `resumable-stream` (2.2.13, with node-redis 4), with the same interface and
// exit codes as our CLI's `state`, `produce` and `resume` subcommands, so that the
// orchestrator (run.py) can drive the three languages alike.
//
//   node node_peer.mjs produce --redis URL --prefix P --id ID --chunks FILE [--delay-ms D] [--hold-ms H]
//   node node_peer.mjs resume  --redis URL --prefix P --id ID [--skip N] [--existing] [--unit U] [--ack-timeout-ms MS]
//   node node_peer.mjs state   --redis URL --prefix P --id ID
//
// Exit codes: 0 clean end, 1 library error (message on stderr), 2 usage, 3 done
// ("DONE" on stderr), 4 not found. The library is loaded from RS_INTEROP_NODE_DIR
// (default /tmp/rs-interop-node), where scripts/interop.sh installs it, outside the
// source tree.

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const NODE_DIR = process.env.RS_INTEROP_NODE_DIR || "/tmp/rs-interop-node";
const require = createRequire(path.join(NODE_DIR, "package.json"));
const { createResumableStreamContext } = require("resumable-stream");
const { createClient } = require("redis");

const EXIT_ERROR = 1;
const EXIT_USAGE = 2;
const EXIT_DONE = 3;
const EXIT_NOT_FOUND = 4;

const FLAGS = new Set(["--existing"]);
const OPTIONS = new Set([
  "--redis", "--prefix", "--id", "--chunks", "--delay-ms", "--hold-ms",
  "--skip", "--unit", "--ack-timeout-ms",
]);

function usage(message) {
  process.stderr.write(`node_peer: ${message}\n`);
  process.exit(EXIT_USAGE);
}

function parseArgs(argv) {
  const [command, ...rest] = argv;
  if (!["produce", "resume", "state"].includes(command)) usage(`unknown command ${command}`);
  const args = { command };
  for (let i = 0; i < rest.length; i++) {
    const name = rest[i];
    if (FLAGS.has(name)) args[name.slice(2)] = true;
    else if (OPTIONS.has(name) && i + 1 < rest.length) args[name.slice(2)] = rest[++i];
    else usage(`unexpected argument ${name}`);
  }
  args.redis = args.redis || process.env.REDIS_URL || process.env.KV_URL;
  if (!args.redis) usage("no Redis URL: pass --redis or set REDIS_URL or KV_URL");
  if (!args.id) usage("--id is required");
  return args;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Chunks, each after `delay` ms, then the end after `hold` ms. highWaterMark 0: the
// library pulls each chunk when it is ready for it, as a real source would be read.
function paced(chunks, delay, hold) {
  let next = 0;
  return new ReadableStream(
    {
      async pull(controller) {
        if (next < chunks.length) {
          await sleep(delay);
          controller.enqueue(chunks[next++]);
        } else {
          await sleep(hold);
          controller.close();
        }
      },
    },
    { highWaterMark: 0 },
  );
}

const empty = () => new ReadableStream({ start: (controller) => controller.close() });

async function copyToStdout(stream) {
  for await (const chunk of stream) process.stdout.write(chunk);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const skip = args.skip === undefined ? undefined : Number.parseInt(args.skip, 10);
  if (args.unit && args.unit !== "utf16") {
    // v1 carries no unit: this library always counts UTF-16 code units.
    process.stderr.write(`node_peer: --unit ${args.unit} ignored (the npm library counts UTF-16)\n`);
  }

  // The library connects its own clients only when it creates them; ours we connect.
  const publisher = createClient({ url: args.redis });
  const subscriber = createClient({ url: args.redis });
  for (const client of [publisher, subscriber]) {
    client.on("error", (e) => process.stderr.write(`node_peer: redis: ${e}\n`));
  }
  await Promise.all([publisher.connect(), subscriber.connect()]);

  // The producer's work after its local reader ends (sentinel DONE, end messages) is
  // handed to waitUntil; we wait for it before disconnecting.
  const background = [];
  const ctx = createResumableStreamContext({
    waitUntil: (promise) => background.push(promise),
    publisher,
    subscriber,
    keyPrefix: args.prefix || "resumable-stream",
  });

  let code = 0;
  let message;
  try {
    if (args.command === "state") {
      const state = await ctx.hasExistingStream(args.id);
      process.stdout.write(`${state === null ? "none" : state === "DONE" ? "done" : "active"}\n`);
    } else if (args.command === "produce") {
      const chunks = JSON.parse(readFileSync(args.chunks, "utf8"));
      const delay = Number(args["delay-ms"] || 0);
      const hold = args["hold-ms"] === undefined ? delay : Number(args["hold-ms"]);
      const stream = await ctx.resumableStream(args.id, () => paced(chunks, delay, hold));
      if (stream === null) [code, message] = [EXIT_DONE, "DONE"];
      else await copyToStdout(stream);
    } else if (args.existing) {
      const stream = await ctx.resumeExistingStream(args.id, skip);
      // undefined: no such stream; null: done.
      if (stream === undefined) [code, message] = [EXIT_NOT_FOUND, "NOT_FOUND"];
      else if (stream === null) [code, message] = [EXIT_DONE, "DONE"];
      else await copyToStdout(stream);
    } else {
      // As our CLI: an id that did not exist is not found (exit 4), though the call
      // made it an empty, finished stream (the source is asked for only then).
      let made = false;
      const source = () => ((made = true), empty());
      const stream = await ctx.resumableStream(args.id, source, skip);
      if (stream === null) [code, message] = [EXIT_DONE, "DONE"];
      else await copyToStdout(stream);
      if (made) {
        code = EXIT_NOT_FOUND;
        message = `NOT_FOUND: no stream "${args.id}" existed; it now holds an empty, finished stream`;
      }
    }
    await Promise.all(background);
  } catch (e) {
    [code, message] = [EXIT_ERROR, e && e.message ? e.message : String(e)];
  }
  if (message) process.stderr.write(`${message}\n`);
  await Promise.allSettled([publisher.disconnect(), subscriber.disconnect()]);
  // Exit once stdout has taken everything, whatever timers the library left armed.
  process.stdout.write("", () => process.exit(code));
}

main().catch((e) => {
  process.stderr.write(`node_peer: ${e && e.stack ? e.stack : e}\n`);
  process.exit(EXIT_ERROR);
});
