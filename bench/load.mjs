// Load generator for crosswire's benchmark; bench/run.py starts it pinned with `taskset -c 1`.
//
//   node load.mjs --mode echo      --url ws://127.0.0.1:PORT/ --conns 10 --window 16
//   node load.mjs --mode broadcast --url ws://127.0.0.1:PORT/ --subs 1000 --bwindow 8
//                 [--puburl ws://127.0.0.1:OTHER/]   (the publisher on another instance)
//                 [--typed 1]                        (typed fan-out, see below)
//   node load.mjs --mode idle      --url ws://127.0.0.1:PORT/ --conns 2000
//   node load.mjs --mode rpc       --url ws://127.0.0.1:PORT/ --conns 10 --window 16
//   node load.mjs --mode sio       --url http://127.0.0.1:PORT/ --conns 10 --window 16
//
// Options: --size (bytes per message, 100), --warmup (s, 0.5), --duration (s, 3),
// --concurrency (handshakes in flight while connecting, 100).
//
// Prints JSON lines on stdout: {"event":"connected"}; {"event":"measure"} when the warm-up ends;
// {"event":"end"} when the measurement ends; {"event":"result", ...}; then closes every
// connection with a closing handshake and exits. In idle mode: {"event":"ready"} once every
// connection is open and has echoed one message, then it waits until stdin closes.
//
// Server protocol: "sub" subscribes the connection to topic "b"; "pub:..." is broadcast to every
// subscriber (the publisher is not one); anything else is echoed back.
//
// rpc: typed RPC in crosswire's canonical dialect: {"type":"ECHO","meta":{"correlationId"},
// "payload":{"text"}} answered by ECHO_RESULT with the same correlationId (checked).
// broadcast --typed 1: typed fan-out in the canonical dialect. Each subscriber calls the RPC
// {"type":"SUB","meta":{"correlationId":"s1"}} and waits for its reply (SUBBED: the
// subscription is in place) instead of "sub" + probe; the publisher sends the event
// {"type":"PUB","payload":{"text"}} (about --size bytes) instead of "pub:...", which the
// server publishes as NEWS {text}. Each subscriber's first delivery is checked to be a NEWS
// frame (`wrong` counts those that are not).
// sio: socket.io (websocket transport): emit("echo", text, ack), the reply through the ack.

import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { io } from "socket.io-client";

const DEFAULTS = {
  mode: "echo",
  url: "ws://127.0.0.1:8000/",
  conns: 10,
  window: 16,
  subs: 1000,
  bwindow: 8,
  puburl: "",
  typed: 0,
  size: 100,
  warmup: 0.5,
  duration: 3,
  concurrency: 100,
};

function parseArgs(argv) {
  const opts = { ...DEFAULTS };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in opts)) throw new Error(`unknown option --${key}`);
    opts[key] = typeof DEFAULTS[key] === "number" ? Number(argv[i + 1]) : argv[i + 1];
  }
  return opts;
}

const opts = parseArgs(process.argv);
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const WS_OPTIONS = {
  perMessageDeflate: false, // no compression on any server: measure the hooks, not zlib
  skipUTF8Validation: true, // the client generates load; checking the server is the tests' job
  handshakeTimeout: 30000,
};
const TEXT = { binary: false }; // send Buffers as text frames (no string encoding per send)

function payload(prefix) {
  return Buffer.from(prefix + "x".repeat(Math.max(0, opts.size - prefix.length)));
}

function openOne(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, WS_OPTIONS);
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

// Open n connections, at most opts.concurrency handshakes at a time; `ready(ws)` runs after
// each opens (e.g. waits for a probe echo).
async function openMany(n, ready) {
  const sockets = new Array(n);
  let next = 0;
  async function worker() {
    while (next < n) {
      const i = next++;
      const ws = await openOne(opts.url);
      ws.on("error", (err) => {
        emit({ event: "error", message: String(err) });
        process.exit(2);
      });
      if (ready) await ready(ws);
      sockets[i] = ws;
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, n) }, worker));
  return sockets;
}

// Send "probe" and resolve on its echo: the server has handled everything sent before it.
function probe(ws) {
  return new Promise((resolve) => {
    ws.once("message", () => resolve());
    ws.send("probe");
  });
}

// Close every connection with a closing handshake (servers see a clean 1000, not a reset),
// waiting at most `ms` for the handshakes.
async function closeAll(sockets, ms = 5000) {
  const open = sockets.filter((ws) => ws && ws.readyState !== WebSocket.CLOSED);
  const closed = open.map((ws) => new Promise((resolve) => ws.once("close", resolve)));
  for (const ws of open) ws.close(1000);
  await Promise.race([Promise.all(closed), sleep(ms)]);
}

// Warm up, then count for opts.duration seconds. client_cpu is the share of its CPU this
// process used meanwhile: near 100% means the load generator may be the limit.
async function measure(counter) {
  await sleep(opts.warmup * 1000);
  const c0 = counter();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  emit({ event: "measure" });
  await sleep(opts.duration * 1000);
  const count = counter() - c0;
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  emit({ event: "end" });
  return {
    count,
    seconds: ms / 1000,
    rate: (count * 1000) / ms,
    client_cpu: (cpu.user + cpu.system) / 1000 / ms,
    client_cpu_system: cpu.system / 1000 / ms,
  };
}

// -- echo: every connection keeps `window` messages in flight ------------------------------------

async function echo() {
  const msg = payload("e");
  let received = 0;
  let sent = 0;
  let running = true;
  const sockets = await openMany(opts.conns, probe);
  emit({ event: "connected", conns: sockets.length });
  for (const ws of sockets) {
    // The replies to the frames of one socket read leave in one write: cork the socket on the
    // first reply, uncork once the read has been handled.
    const socket = ws._socket;
    let corked = false;
    const uncork = () => {
      corked = false;
      socket.uncork();
    };
    ws.on("message", () => {
      received++;
      if (!running) return;
      if (!corked) {
        corked = true;
        socket.cork();
        process.nextTick(uncork);
      }
      ws.send(msg, TEXT);
      sent++;
    });
    for (let i = 0; i < opts.window; i++) ws.send(msg, TEXT);
    sent += opts.window;
  }
  const r = await measure(() => received);
  running = false;
  emit({ event: "result", mode: "echo", conns: opts.conns, window: opts.window,
         size: msg.length, messages: r.count, ...r }); // prettier-ignore
  // Let the messages in flight come back (at most 2 s), then close.
  for (let i = 0; i < 200 && received < sent; i++) await sleep(10);
  await closeAll(sockets);
}

// Subscribe to topic "b": "sub" then a probe, or with --typed the SUB RPC and its reply.
async function subscribe(ws) {
  if (!opts.typed) {
    ws.send("sub");
    await probe(ws); // echoed after "sub" was handled: the subscription is in place
    return;
  }
  const reply = await new Promise((resolve) => {
    ws.once("message", (data) => resolve(JSON.parse(data)));
    ws.send('{"type":"SUB","meta":{"correlationId":"s1"}}');
  });
  if (reply.type !== "SUBBED" || reply.meta?.correlationId !== "s1") {
    throw new Error(`SUB answered with ${JSON.stringify(reply)}`);
  }
}

// What the publisher sends: "pub:xxx...", or with --typed a PUB event; about --size bytes.
function publication() {
  if (!opts.typed) return payload("pub:");
  const frame = (text) => `{"type":"PUB","payload":{"text":"${text}"}}`;
  return Buffer.from(frame("x".repeat(Math.max(1, opts.size - frame("").length))));
}

// With --typed, whether a delivery is the NEWS event (checked on each subscriber's first).
const NEWS = Buffer.from('{"type":"NEWS",');
const isNews = (data) => Buffer.isBuffer(data) && NEWS.equals(data.subarray(0, NEWS.length));

// -- broadcast: one publisher, n subscribers, at most `bwindow` broadcasts outstanding ------------

async function broadcast() {
  const n = opts.subs;
  const W = opts.bwindow;
  const RING = 1 << 16; // must exceed W: slot k % RING counts subscribers that got broadcast k
  const got = new Uint32Array(n); // per subscriber: broadcasts received (they arrive in order)
  const ring = new Uint32Array(RING);
  const msg = publication();
  let delivered = 0;
  let wrong = 0; // with --typed: first deliveries that were not NEWS; frames to the publisher
  let completed = 0; // broadcasts 0..completed-1 reached every subscriber
  let sent = 0;
  let running = false;
  let pub = null;

  // Send broadcast k only once broadcast k-W reached every subscriber.
  function pump() {
    while (running && sent < completed + W) {
      pub.send(msg, TEXT);
      sent++;
    }
  }

  function onDelivery(i) {
    delivered++;
    const k = got[i]++;
    if (++ring[k & (RING - 1)] === n && k === completed) {
      while (ring[completed & (RING - 1)] === n) {
        ring[completed & (RING - 1)] = 0;
        completed++;
      }
      pump();
    }
  }

  const subs = await openMany(n, subscribe);
  subs.forEach((ws, i) =>
    ws.on("message", (data) => {
      if (opts.typed && got[i] === 0 && !isNews(data)) wrong++;
      onDelivery(i);
    }),
  );
  pub = await openOne(opts.puburl || opts.url);
  pub.on("error", (err) => {
    emit({ event: "error", message: String(err) });
    process.exit(2);
  });
  pub.on("message", () => wrong++); // the publisher is not a subscriber: an error, if anything
  emit({ event: "connected", conns: n + 1 });
  running = true;
  pump();
  const r = await measure(() => delivered);
  running = false;
  // Let the broadcasts in flight arrive (at most 2 s), so that the counts can be checked.
  for (let i = 0; i < 200 && completed < sent; i++) await sleep(10);
  let lo = sent;
  let hi = 0;
  for (const g of got) {
    lo = Math.min(lo, g);
    hi = Math.max(hi, g);
  }
  emit({ event: "result", mode: "broadcast", subs: n, bwindow: W, size: msg.length,
         typed: Boolean(opts.typed), wrong, deliveries: r.count, broadcasts: r.count / n, ...r,
         // every subscriber received exactly the broadcasts that were sent:
         complete: lo === sent && hi === sent }); // prettier-ignore
  await closeAll([pub, ...subs]);
}

// -- idle: open connections and hold them ---------------------------------------------------------

async function idle() {
  const sockets = await openMany(opts.conns, probe);
  emit({ event: "ready", conns: sockets.length });
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on("end", resolve));
  await closeAll(sockets);
}

// -- rpc: like echo, with typed requests and correlated replies -----------------------------------

async function rpc() {
  const text = "x".repeat(Math.max(1, opts.size - 60)); // the frame is about --size bytes
  let received = 0;
  let wrong = 0;
  let sent = 0;
  let running = true;
  const sockets = await openMany(opts.conns, probe);
  emit({ event: "connected", conns: sockets.length });
  sockets.forEach((ws, c) => {
    const socket = ws._socket;
    let corked = false;
    let next = 0;
    const pending = new Set();
    const uncork = () => {
      corked = false;
      socket.uncork();
    };
    const request = () => {
      const id = `${c}-${next++}`;
      pending.add(id);
      ws.send(`{"type":"ECHO","meta":{"correlationId":"${id}"},"payload":{"text":"${text}"}}`);
      sent++;
    };
    ws.on("message", (data) => {
      const reply = JSON.parse(data);
      if (reply.type !== "ECHO_RESULT" || !pending.delete(reply.meta.correlationId)) wrong++;
      received++;
      if (!running) return;
      if (!corked) {
        corked = true;
        socket.cork();
        process.nextTick(uncork);
      }
      request();
    });
    for (let i = 0; i < opts.window; i++) request();
  });
  const r = await measure(() => received);
  running = false;
  emit({ event: "result", mode: "rpc", conns: opts.conns, window: opts.window, wrong,
         messages: r.count, ...r }); // prettier-ignore
  for (let i = 0; i < 200 && received < sent; i++) await sleep(10);
  await closeAll(sockets);
}

// -- sio: socket.io events answered through their ack -----------------------------------------------

async function sio() {
  const text = "x".repeat(Math.max(1, opts.size - 40));
  let received = 0;
  let sent = 0;
  let running = true;
  const clients = [];
  for (let i = 0; i < opts.conns; i++) {
    const client = io(opts.url, { transports: ["websocket"], reconnection: false, forceNew: true });
    await new Promise((resolve, reject) => {
      client.once("connect", resolve);
      client.once("connect_error", reject);
    });
    clients.push(client);
  }
  emit({ event: "connected", conns: clients.length });
  for (const client of clients) {
    const request = () => {
      client.emit("echo", text, () => {
        received++;
        if (running) request();
      });
      sent++;
    };
    for (let i = 0; i < opts.window; i++) request();
  }
  const r = await measure(() => received);
  running = false;
  emit({ event: "result", mode: "sio", conns: opts.conns, window: opts.window,
         messages: r.count, ...r }); // prettier-ignore
  for (let i = 0; i < 200 && received < sent; i++) await sleep(10);
  for (const client of clients) client.close();
}

const modes = { echo, broadcast, idle, rpc, sio };
if (!(opts.mode in modes)) throw new Error(`unknown mode ${opts.mode}`);
modes[opts.mode]()
  .then(() => process.exit(0))
  .catch((err) => {
    emit({ event: "error", message: String(err && err.stack ? err.stack : err) });
    process.exit(1);
  });
