// The official Durable Streams conformance suite, run against the server at
// $DURABLE_STREAMS_URL (scripts/durable-streams-test.sh starts `resumable-stream serve`
// and sets it). Copied next to the installed package, outside the source tree, and
// run with the vitest that the package brings. The opt-in tests of the reserved
// subscription APIs (protocol sections 6 and 7) run when DURABLE_STREAMS_SUBSCRIPTIONS
// is 1: the script sets it for the stores that implement them (memory).
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.DURABLE_STREAMS_URL
if (!baseUrl) throw new Error("DURABLE_STREAMS_URL is required")

runConformanceTests({
  baseUrl,
  longPollTimeoutMs: Number(process.env.DURABLE_STREAMS_LONG_POLL_MS ?? 20000),
  subscriptions: process.env.DURABLE_STREAMS_SUBSCRIPTIONS === "1",
})
