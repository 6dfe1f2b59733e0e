// The small client of scripts/durable-streams-bench.sh (node:http, keep-alive, no
// dependency). Each command prints one JSON line on stdout; every wait is bounded.
//
//   node client.mjs fill    BASE ID BYTES CHUNK   creates ID (text/plain) and appends
//                                                  BYTES in CHUNK-byte POSTs (4 at a time)
//   node client.mjs catchup BASE ID BYTES READS    reads ID from offset -1 to up-to-date,
//                                                  READS times, each read timed
//   node client.mjs sse     BASE ID SAMPLES        SSE tail latency: creates ID, follows it
//                                                  live from offset now, appends SAMPLES
//                                                  64-byte messages one at a time, each
//                                                  timed from the POST until its SSE event
//
// BASE is http://127.0.0.1:PORT/v1/stream.
import http from "node:http"

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
const TIMEOUT_MS = 30_000

function request(method, url, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent, timeout: TIMEOUT_MS }, (res) => {
      const chunks = []
      let length = 0
      res.on("data", (c) => {
        chunks.push(c)
        length += c.length
      })
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, length, chunks }))
      res.on("error", reject)
    })
    req.on("timeout", () => req.destroy(new Error(`${method} ${url}: timed out`)))
    req.on("error", reject)
    req.end(body)
  })
}

async function create(base, id) {
  const res = await request("PUT", `${base}/${id}`, { headers: { "content-type": "text/plain" } })
  if (res.status !== 201 && res.status !== 200) throw new Error(`PUT ${id}: ${res.status}`)
}

async function append(base, id, body) {
  const res = await request("POST", `${base}/${id}`, {
    headers: { "content-type": "text/plain", "content-length": Buffer.byteLength(body) },
    body,
  })
  if (res.status !== 204 && res.status !== 200) throw new Error(`POST ${id}: ${res.status}`)
}

const ms = (start) => Number(process.hrtime.bigint() - start) / 1e6

async function fill(base, id, bytes, chunk) {
  await create(base, id)
  const body = "x".repeat(chunk - 1) + "\n"
  let left = Math.floor(bytes / chunk)
  const appends = left
  const start = process.hrtime.bigint()
  const worker = async () => {
    while (left > 0) {
      left--
      await append(base, id, body)
    }
  }
  await Promise.all([worker(), worker(), worker(), worker()])
  return { cmd: "fill", appends, bytes: appends * chunk, ms: ms(start) }
}

async function catchup(base, id, bytes, reads) {
  const times = []
  let requests = 0
  for (let r = 0; r < reads; r++) {
    let offset = "-1"
    let total = 0
    let n = 0
    const start = process.hrtime.bigint()
    for (;;) {
      const res = await request("GET", `${base}/${id}?offset=${offset}`)
      n++
      if (res.status !== 200) throw new Error(`GET ${id}: ${res.status}`)
      total += res.length
      offset = res.headers["stream-next-offset"]
      if (res.headers["stream-up-to-date"] === "true") break
      if (n > 100_000) throw new Error("no end in sight")
    }
    times.push(ms(start))
    requests = n
    if (total !== bytes) throw new Error(`read ${total} bytes of ${bytes}`)
  }
  const sorted = [...times].sort((a, b) => a - b)
  return {
    cmd: "catchup",
    bytes,
    reads,
    requests_per_read: requests,
    ms: times,
    median_ms: sorted[Math.floor(sorted.length / 2)],
  }
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

async function sse(base, id, samples) {
  await create(base, id)
  const warmup = 20
  let buffer = ""
  let waiting = null // { marker, resolve }
  const res = await new Promise((resolve, reject) => {
    const req = http.get(`${base}/${id}?offset=now&live=sse`, { timeout: TIMEOUT_MS }, resolve)
    req.on("timeout", () => req.destroy(new Error("SSE: timed out")))
    req.on("error", reject)
  })
  if (res.statusCode !== 200) throw new Error(`SSE: ${res.statusCode}`)
  res.setEncoding("utf8")
  res.on("data", (text) => {
    buffer += text
    if (waiting && buffer.includes(waiting.marker)) {
      const w = waiting
      waiting = null
      buffer = ""
      w.resolve()
    }
  })
  const latencies = []
  for (let i = 0; i < warmup + samples; i++) {
    const marker = `<m${i}>`
    const body = marker.padEnd(64, ".")
    const arrived = new Promise((resolve, reject) => {
      waiting = { marker, resolve }
      setTimeout(() => reject(new Error(`SSE: ${marker} never came`)), 10_000).unref()
    })
    const start = process.hrtime.bigint()
    await append(base, id, body)
    await arrived
    if (i >= warmup) latencies.push(ms(start) * 1000)
  }
  res.destroy()
  const sorted = [...latencies].sort((a, b) => a - b)
  const round = (x) => Math.round(x)
  return {
    cmd: "sse",
    samples,
    p50_us: round(percentile(sorted, 50)),
    p90_us: round(percentile(sorted, 90)),
    p99_us: round(percentile(sorted, 99)),
    max_us: round(sorted[sorted.length - 1]),
    mean_us: round(latencies.reduce((a, b) => a + b, 0) / latencies.length),
  }
}

const [cmd, base, id, a, b] = process.argv.slice(2)
const deadline = setTimeout(() => {
  console.error(`${cmd}: no result within 120 s`)
  process.exit(3)
}, 120_000)
deadline.unref()
let result
if (cmd === "fill") result = await fill(base, id, Number(a), Number(b))
else if (cmd === "catchup") result = await catchup(base, id, Number(a), Number(b))
else if (cmd === "sse") result = await sse(base, id, Number(a))
else {
  console.error("usage: node client.mjs fill|catchup|sse BASE ID ...")
  process.exit(2)
}
console.log(JSON.stringify(result))
agent.destroy()
process.exit(0)
