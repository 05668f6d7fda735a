// The HTTP API as a TypeScript/JavaScript agent app uses it: plain fetch, no dependencies.
// Run by tests/test_http_node.py against a real `wizd serve` and a daemon that runs the
// `researcher` agent; WIZD_URL and WIZD_TOKEN (an enqueue token for that queue) say where.
import assert from "node:assert/strict";
import { test } from "node:test";

const BASE = process.env.WIZD_URL;
const TOKEN = process.env.WIZD_TOKEN;
assert.ok(BASE && TOKEN, "WIZD_URL and WIZD_TOKEN must be set");
const QUEUE = "researcher";

async function api(method, path, body, token = TOKEN) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`${BASE}/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const type = res.headers.get("content-type") ?? "";
  const data = type.includes("json") ? await res.json() : await res.text();
  return { status: res.status, type, data };
}

// The events of one job as they come (GET /v1/events?job=ID, text/event-stream), until
// `done(event)` says so; then the stream is closed.
async function watch(jobId, done) {
  const abort = new AbortController();
  const res = await fetch(`${BASE}/v1/events?job=${jobId}`, {
    headers: { Authorization: `Bearer ${TOKEN}`, Accept: "text/event-stream" },
    signal: abort.signal,
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/event-stream/);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const events = [];
  let buffer = "";
  try {
    for (;;) {
      const { value, done: ended } = await reader.read();
      assert.ok(!ended, `the stream ended before the job finished: ${JSON.stringify(events)}`);
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const fields = {};
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue; // a keep-alive comment
          const colon = line.indexOf(":");
          fields[line.slice(0, colon)] = line.slice(colon + 1).trimStart();
        }
        assert.notEqual(fields.event, "error", `the stream sent an error: ${fields.data}`);
        if (fields.data === undefined) continue;
        const event = JSON.parse(fields.data);
        assert.equal(String(event.cursor), fields.id, "an event's SSE id is its cursor");
        events.push(event);
        if (done(event)) return events;
      }
    }
  } finally {
    abort.abort();
  }
}

test("enqueue a research job, watch it over SSE, await its result", async () => {
  const made = await api("POST", "/jobs", {
    name: "interval",
    queue: QUEUE,
    payload: { seconds: 0.3 },
    tags: ["node"],
  });
  assert.equal(made.status, 201, JSON.stringify(made.data));
  const job = made.data;
  assert.equal(job.status, "pending");

  const watched = watch(job.id, (e) => e.status === "completed");
  const waited = await api("POST", `/jobs/${job.id}/wait?timeout=30`);
  assert.equal(waited.status, 200);
  assert.equal(waited.data.status, "completed", JSON.stringify(waited.data));
  assert.ok(waited.data.result.end > waited.data.result.start);

  const events = await watched;
  assert.ok(events.every((e) => e.job_id === job.id && e.queue === QUEUE));
  const statuses = events.map((e) => e.status).filter(Boolean);
  assert.ok(statuses.includes("running"), JSON.stringify(statuses));
  assert.equal(statuses.at(-1), "completed");
  const cursors = events.map((e) => e.cursor);
  assert.deepEqual(cursors, [...cursors].sort((a, b) => a - b), "events in order");

  const page = await api("GET", `/jobs?queue=${QUEUE}&tag=node&status=completed`);
  assert.equal(page.status, 200);
  assert.deepEqual(page.data.jobs.map((j) => j.id), [job.id]);
});

test("list the agent's jobs and cancel one", async () => {
  const later = await api("POST", "/jobs", {
    name: "interval",
    queue: QUEUE,
    payload: { seconds: 0 },
    delay: 3600,
  });
  assert.equal(later.status, 201);
  assert.equal(later.data.status, "delayed");

  const listed = await api("GET", `/jobs?queue=${QUEUE}&status=delayed`);
  assert.ok(listed.data.jobs.some((j) => j.id === later.data.id));

  const cancelled = await api("POST", `/jobs/${later.data.id}/cancel`);
  assert.equal(cancelled.status, 200);
  assert.equal(cancelled.data.status, "cancelled");
  const again = await api("GET", `/jobs/${later.data.id}`);
  assert.equal(again.data.status, "cancelled");
});

test("errors are problem documents: a queue beyond the token, a bad token", async () => {
  const beyond = await api("POST", "/jobs", { name: "interval", queue: "other" });
  assert.equal(beyond.status, 403);
  assert.match(beyond.type, /^application\/problem\+json/);
  assert.equal(beyond.data.status, 403);

  const stranger = await api("GET", `/jobs?queue=${QUEUE}`, undefined, "wizd_nope_nope");
  assert.equal(stranger.status, 401);
  assert.equal(stranger.data.title, "Unauthorized");

  const bad = await api("POST", "/jobs", { name: "interval", queue: QUEUE, priority: 9 });
  assert.equal(bad.status, 422);
  assert.equal(bad.data.field, "priority");
});
