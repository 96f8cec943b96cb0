// A JavaScript Yjs peer of a quietsync server, written from docs/protocol.md alone.
//
//   node [--experimental-websocket] yjs_peer.mjs --url http://127.0.0.1:PORT --token T --node js1
//
// Scripted over stdio: one JSON command per line on stdin, one JSON answer per
// line on stdout, in order ({"id": <the command's id>, "ok": true, ...} or
// {"id", "ok": false, "error"}). Diagnostics go to stderr. A field is named
// by "field": [collection, key, field]; positions ("index", "length") are
// code points, as in quietsync's Python API, and converted to Yjs's UTF-16
// units here (the doc's recipe).
//
// Commands (op):
//   init      {field, content}  create the field with the documented initial update
//   insert    {field, index, text}
//   delete    {field, index, length}
//   push      {}                push the outbox (one batch, in id order)
//   push_v2   {field}           push the field's whole doc as a v2 update (must be refused)
//   pull      {limit?}          pull pages while has_more
//   follow    {}                open /v1/live from the cursor; answers after the hello
//   unfollow  {}
//   text      {field}           the field's text and this peer's counters
//   wait      {field, contains?, equals?, timeout_ms?}  until the text matches

import { createHash } from "node:crypto";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import * as Y from "yjs";

const { values: args } = parseArgs({
  options: { url: { type: "string" }, token: { type: "string" }, node: { type: "string" } },
});
const BASE_URL = args.url.replace(/\/$/, "");
const TOKEN = args.token;
const NODE = args.node; // stamp node id and mutation id client
const REMOTE = Symbol("remote"); // transaction origin of updates that came from the server

// -- stamps: <wall ms, 15 digits>-<counter, 8 hex>-<node> ------------------------

const STAMP = /^(\d{15})-([0-9a-f]{8})-(.+)$/;

class Clock {
  wall = 0;
  counter = 0;

  next() {
    const now = Date.now();
    if (now > this.wall) {
      this.wall = now;
      this.counter = 0;
    } else {
      this.counter += 1;
    }
    const wall = String(this.wall).padStart(15, "0");
    return `${wall}-${this.counter.toString(16).padStart(8, "0")}-${NODE}`;
  }

  observe(stamp) {
    const m = STAMP.exec(stamp);
    if (!m) throw new Error(`not a stamp: ${stamp}`);
    const wall = Number(m[1]);
    const counter = parseInt(m[2], 16);
    if (wall > this.wall || (wall === this.wall && counter > this.counter)) {
      this.wall = wall;
      this.counter = counter;
    }
  }
}

// -- state ------------------------------------------------------------------------

const clock = new Clock();
let lastN = 0; // mutation ids: `${NODE}:${n}`, n growing
let cursor = 0;
let history = null;
const outbox = []; // mutations not acknowledged yet, in id order
const refused = []; // mutations the server refused (set aside)
const fields = new Map(); // "collection\0key\0field" -> {ref, doc, stamp}
const counters = { pulls: 0, pulled: 0, live_messages: 0, live_changes: 0 };
const waiters = new Set();

function fieldOf(ref) {
  const name = ref.join("\0");
  let f = fields.get(name);
  if (!f) {
    const doc = new Y.Doc(); // a client id of our own, picked by Yjs
    f = { ref, doc, stamp: null };
    doc.on("update", (update, origin) => {
      if (origin !== REMOTE) queue(f, update);
    });
    fields.set(name, f);
  }
  return f;
}

function queue(f, update) {
  const stamp = clock.next();
  const [collection, key, field] = f.ref;
  outbox.push({
    id: `${NODE}:${++lastN}`,
    collection,
    key,
    field,
    kind: "crdt",
    update: Buffer.from(update).toString("base64"),
    stamp,
    base: f.stamp,
  });
  f.stamp = stamp;
}

function applyChange(change) {
  clock.observe(change.stamp);
  if (change.kind !== "crdt") return;
  const f = fieldOf([change.collection, change.key, change.field]);
  Y.applyUpdate(f.doc, Buffer.from(change.update, "base64"), REMOTE);
  if (f.stamp === null || change.stamp > f.stamp) f.stamp = change.stamp;
  for (const wake of [...waiters]) wake();
}

// -- positions: code points <-> Yjs (UTF-16) -------------------------------------

const toYjs = (s, i) => [...s].slice(0, i).join("").length;

// -- the initial update ------------------------------------------------------------

function initialUpdate(collection, key, field, content) {
  const material = Buffer.from([collection, key, field, content].join("\0"), "utf8");
  const digest = createHash("sha256").update(material).digest();
  const id = Number(digest.readBigUInt64BE(0) >> 11n) || 1;
  const doc = new Y.Doc();
  doc.clientID = id;
  doc.getText("text").insert(0, content);
  return Y.encodeStateAsUpdate(doc);
}

// -- HTTP ----------------------------------------------------------------------------

async function request(method, path, body) {
  const resp = await fetch(BASE_URL + path, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = { raw: text };
  }
  return { status: resp.status, body: json };
}

async function push() {
  const batch = outbox.slice(0, 1000);
  if (batch.length === 0) return { status: null, body: null, pushed: 0 };
  const answer = await request("POST", "/v1/push", { mutations: batch });
  if (answer.status === 200) {
    outbox.splice(0, batch.length);
  } else if (answer.status === 422 && Array.isArray(answer.body.refused)) {
    const bad = new Set(answer.body.refused.map((r) => r.index));
    for (const i of [...bad].sort((a, b) => b - a)) refused.push(...outbox.splice(i, 1));
  }
  return { ...answer, pushed: batch.length };
}

async function pull(limit = 500) {
  let pages = 0;
  let changes = 0;
  for (;;) {
    const params = new URLSearchParams({ since: String(cursor), limit: String(limit) });
    if (history !== null) params.set("history", history);
    const answer = await request("GET", `/v1/pull?${params}`);
    if (answer.status !== 200) {
      throw new Error(`pull: ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    counters.pulls += 1;
    pages += 1;
    for (const change of answer.body.changes) applyChange(change);
    changes += answer.body.changes.length;
    counters.pulled += answer.body.changes.length;
    cursor = answer.body.cursor;
    history = answer.body.history;
    if (!answer.body.has_more) return { pages, changes, cursor, history };
  }
}

// -- live -----------------------------------------------------------------------------

let socket = null;

function follow() {
  return new Promise((resolve, reject) => {
    const params = new URLSearchParams({ since: String(cursor), token: TOKEN });
    if (history !== null) params.set("history", history);
    const ws = new WebSocket(`${BASE_URL.replace(/^http/, "ws")}/v1/live?${params}`);
    let hello = null;
    socket = ws;
    ws.onmessage = async (event) => {
      const msg = JSON.parse(event.data);
      counters.live_messages += 1;
      if (msg.type === "hello") {
        hello = msg;
        history = msg.history;
        resolve(msg);
      } else if (msg.type === "changes") {
        if (msg.after > cursor) await pull(); // a gap: something was never delivered
        for (const change of msg.changes) applyChange(change);
        counters.live_changes += msg.changes.length;
        cursor = Math.max(cursor, msg.cursor);
      } else if (msg.type === "pull") {
        cursor = Math.max(cursor, msg.cursor); // the close (4000) that follows pulls from here
      }
    };
    ws.onerror = (event) => {
      if (hello === null) reject(new Error(`live: ${event.message ?? "connection failed"}`));
    };
    ws.onclose = async (event) => {
      if (hello === null) reject(new Error(`live closed before hello (${event.code})`));
      if (socket !== ws) return; // unfollowed
      socket = null;
      if (event.code === 4000) {
        await pull(); // fell behind: pull from the last cursor, then reconnect
        await follow();
      } else {
        console.error(`live closed: ${event.code} ${event.reason}`);
      }
    };
  });
}

// -- commands ----------------------------------------------------------------------------

function textOf(f) {
  return f.doc.getText("text").toString();
}

function describe(f) {
  const text = textOf(f);
  return { text, utf16_length: text.length, code_points: [...text].length, ...counters };
}

async function waitFor(f, cmd) {
  const deadline = Date.now() + (cmd.timeout_ms ?? 5000);
  const matches = () =>
    (cmd.contains === undefined || textOf(f).includes(cmd.contains)) &&
    (cmd.equals === undefined || textOf(f) === cmd.equals);
  while (!matches()) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timeout: text is ${JSON.stringify(textOf(f))}`);
    await new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, left);
      waiters.add(wake);
    });
  }
  return describe(f);
}

const COMMANDS = {
  init({ field, content }) {
    const f = fieldOf(field);
    const update = initialUpdate(...field, content);
    queue(f, update); // push the initial update itself...
    Y.applyUpdate(f.doc, update, REMOTE); // ...and edit on top of it with our own id
    return { update: Buffer.from(update).toString("base64"), client_id: f.doc.clientID };
  },
  insert({ field, index, text }) {
    const f = fieldOf(field);
    const at = toYjs(textOf(f), index);
    f.doc.getText("text").insert(at, text);
    return { yjs_index: at };
  },
  delete({ field, index, length }) {
    const f = fieldOf(field);
    const s = textOf(f);
    const at = toYjs(s, index);
    const units = toYjs(s, index + length) - at;
    f.doc.getText("text").delete(at, units);
    return { yjs_index: at, yjs_length: units };
  },
  push,
  async push_v2({ field }) {
    const f = fieldOf(field);
    const [collection, key, name] = field;
    const mutation = {
      id: `${NODE}:${++lastN}`,
      collection,
      key,
      field: name,
      kind: "crdt",
      update: Buffer.from(Y.encodeStateAsUpdateV2(f.doc)).toString("base64"),
      stamp: clock.next(),
      base: f.stamp,
    };
    const answer = await request("POST", "/v1/push", { mutations: [mutation] });
    return { ...answer, mutation_id: mutation.id };
  },
  pull: ({ limit }) => pull(limit),
  follow,
  unfollow() {
    const ws = socket;
    socket = null;
    ws?.close();
    return {};
  },
  text: ({ field }) => describe(fieldOf(field)),
  wait: (cmd) => waitFor(fieldOf(cmd.field), cmd),
  state: () => ({
    cursor,
    history,
    outbox: outbox.length,
    refused: refused.map((m) => m.id),
    ...counters,
  }),
};

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  let cmd = {};
  let answer;
  try {
    cmd = JSON.parse(line);
    const run = COMMANDS[cmd.op];
    if (!run) throw new Error(`unknown op ${JSON.stringify(cmd.op)}`);
    answer = { id: cmd.id, ok: true, ...(await run(cmd)) };
  } catch (err) {
    answer = { id: cmd.id, ok: false, error: String(err?.stack ?? err) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
socket?.close();
process.exit(0);
