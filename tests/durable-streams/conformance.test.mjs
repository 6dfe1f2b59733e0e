// The official Durable Streams conformance suite, run against the server at
// $DURABLE_STREAMS_URL (scripts/durable-streams-test.sh starts `resumable-stream serve`
// and sets it). Copied next to the installed package, outside the source tree, and
// run with the vitest that the package brings.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.DURABLE_STREAMS_URL
if (!baseUrl) throw new Error("DURABLE_STREAMS_URL is required")

runConformanceTests({
  baseUrl,
  longPollTimeoutMs: Number(process.env.DURABLE_STREAMS_LONG_POLL_MS ?? 20000),
})
