// Drives src/crosswire/static/client.js against a real crosswire server (tests/integration/
// test_browser_client.py). argv: <client.js path> <ws url> <scenario>. Prints "step:<name>"
// lines when the Python side must act, and one final JSON line with what happened.
import { pathToFileURL } from "node:url";
import readline from "node:readline";

const [clientPath, url, scenario] = process.argv.slice(2);
const { wsClient, WsClientError } = await import(pathToFileURL(clientPath).href);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fast = { initialDelayMs: 20, maxDelayMs: 100 };

async function step(name) {
  console.log(`step:${name}`);
  await lines.next(); // the Python side answers when done
}

async function until(condition, ms = 5000) {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await sleep(5);
  }
}

const caught = async (promise) => {
  try {
    await promise;
    return null;
  } catch (error) {
    return { name: error.name, code: error.code, message: error.message, retryable: error.retryable };
  }
};

const scenarios = {
  async basics() {
    const client = wsClient({ url, reconnect: fast });
    const echoed = [];
    client.on("ECHO", (payload, frame) => echoed.push([payload.text, frame.type]));
    await client.connect();
    client.send("ECHO", { text: "hi" });
    const add = await client.request("ADD", { a: 1, b: 2 }, { correlationId: "mine" });
    const progress = [];
    const count = await client.request("COUNT", { to: 3, delay_ms: 1 }, { onProgress: (p) => progress.push(p.n) });
    await until(() => echoed.length === 1);
    const errors = [];
    client.onError((error, context) => errors.push([context.type, error.code]));
    client.send("NOPE", {});
    await until(() => errors.length === 1);
    const denied = await caught(client.request("FAIL"));
    const protocol = client.protocol;
    await client.close();
    return { add, progress, count: count.payload, echoed, errors, denied, protocol, state: client.state };
  },

  async deadline_and_abort() {
    const client = wsClient({ url, reconnect: fast });
    await client.connect();
    const late = await caught(client.request("SLOW", { seconds: 5 }, { timeoutMs: 100, correlationId: "late" }));
    const controller = new AbortController();
    const call = client.request("SLOW", { seconds: 5 }, { signal: controller.signal, correlationId: "gone" });
    await step("started");
    controller.abort();
    const aborted = await caught(call);
    await step("aborted"); // still connected: only $ws:abort can have stopped the handler
    const after = await client.request("ADD", { a: 2, b: 2 });
    await client.close();
    return { late, aborted, after: after.payload };
  },

  async heartbeat_and_token() {
    const states = [];
    const client = wsClient({
      url,
      reconnect: fast,
      protocols: ["chat"],
      auth: { attach: "protocol", getToken: async () => "secret" },
    });
    await client.connect();
    client.onState((s) => states.push(s));
    await sleep(500); // many heartbeats: unanswered, the server would close with 4002
    const add = await client.request("ADD", { a: 1, b: 1 });
    const protocol = client.protocol;
    await client.close();
    return { states, protocol, sum: add.payload.sum };
  },

  async queue_and_reconnect() {
    const states = [];
    const client = wsClient({ url, reconnect: fast });
    client.onState((s) => states.push(s));
    await client.connect();
    const lost = caught(client.request("SLOW", { seconds: 5 }));
    await step("stop-server");
    const lostError = await lost;
    await until(() => client.state === "reconnecting");
    const sentNow = client.send("NOTE", { text: "while down" });
    const queued = client.request("ADD", { a: 4, b: 4 });
    await step("start-server");
    const reply = await queued;
    await client.close();
    return { lostError, sentNow, sum: reply.payload.sum, states };
  },
};

const result = await scenarios[scenario]();
console.log(JSON.stringify(result));
process.exit(0);
