// The authors' reference server (@durable-streams/server, its in-memory store) on
// 127.0.0.1:PORT, for scripts/durable-streams-bench.sh. Runs until SIGTERM/SIGINT.
//
//   node reference-server.mjs PORT
import { DurableStreamTestServer } from "@durable-streams/server"

const port = Number(process.argv[2])
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: node reference-server.mjs PORT")
  process.exit(2)
}
const server = new DurableStreamTestServer({ port, host: "127.0.0.1" })
await server.start()
console.error(`reference server at http://127.0.0.1:${port}/v1/stream/ (in memory)`)
const stop = async () => {
  await server.stop().catch(() => {})
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
