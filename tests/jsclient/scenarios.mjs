// The scenarios of the browser client (src/crosswire/static/client.js) against real crosswire
// servers (tests/integration/test_browser_client.py, tests/conformance/test_clients.py). Each is
// a function of its environment, {wsClient, url, more, step}, and returns what happened (made
// into JSON by the runner): the same bodies run in Node.js (node.mjs) and in a headless Chromium
// (browser.mjs). step(name) tells the Python side to act, and resolves once it has.
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fast = { initialDelayMs: 20, maxDelayMs: 100 };

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
    const { name, code, message, retryable, topic, reason } = error;
    return { name, code, message, retryable, topic, reason };
  }
};

// Every socket the client makes, to check that none is left open.
function tracked() {
  const sockets = [];
  const wsFactory = (u, p) => {
    const ws = new WebSocket(u, p);
    sockets.push(ws);
    return ws;
  };
  return { sockets, wsFactory };
}

const thrown = (fn) => {
  try {
    fn();
    return null;
  } catch (error) {
    return error.name;
  }
};

export const scenarios = {
  async basics({ wsClient, url }) {
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

  async deadline_and_abort({ wsClient, url, step }) {
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

  async heartbeat_and_token({ wsClient, url }) {
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

  async lifecycle({ wsClient, url }) {
    const { sockets, wsFactory } = tracked();
    const states = [];
    const client = wsClient({ url, reconnect: fast, wsFactory });
    client.onState((s) => states.push(s));
    await client.connect();
    const closing = client.close();
    await client.connect(); // before the old socket's close event: it must not disturb this one
    const slow = await client.request("SLOW", { seconds: 0.05 });
    const odd = await client.request("ADD", { a: 1, b: 1 }, { timeoutMs: 1500.5 });
    const first = client.request("SLOW", { seconds: 0.05 }, { correlationId: "same" });
    const duplicate = await caught(client.request("ADD", { a: 1, b: 1 }, { correlationId: "same" }));
    await first;
    client.on("ECHO", () => {});
    const twice = thrown(() => client.on("ECHO", () => {}));
    const badCode = await caught(Promise.resolve().then(() => client.close({ code: 1001 })));
    await closing;
    await client.close();
    await until(() => sockets.every((ws) => ws.readyState === 3));
    const afterClose = thrown(() => client.send("ECHO", { text: "late" }));
    return { slow: slow.type, odd: odd.payload, duplicate, twice, badCode, afterClose, sockets: sockets.length, states };
  },

  async refused_then_up({ wsClient, url, step }) {
    const client = wsClient({ url, reconnect: { initialDelayMs: 20, maxDelayMs: 50 }, connectTimeoutMs: 2000 });
    const opened = client.connect();
    await until(() => client.state === "reconnecting");
    await step("start-server"); // nothing listened until now
    await opened;
    const add = await client.request("ADD", { a: 5, b: 5 });
    await client.close();
    return { sum: add.payload.sum };
  },

  async gives_up({ wsClient, url, more }) {
    const client = wsClient({ url, reconnect: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 20 } });
    const failed = await caught(client.connect());
    const state = client.state;
    const request = await caught(client.request("ADD", { a: 1, b: 1 }));
    const policy = wsClient({ url: more[0], reconnect: fast });
    const states = [];
    policy.onState((s) => states.push(s));
    await policy.connect();
    policy.send("NOTE", { text: "not allowed" }); // on_auth refuses: UNAUTHENTICATED, then 1008
    await until(() => policy.state === "closed");
    return { failed, state, request, states };
  },

  async query_token({ wsClient, url }) {
    const client = wsClient({ url, reconnect: fast, auth: { getToken: () => "secret" } });
    await client.connect();
    const add = await client.request("ADD", { a: 2, b: 2 });
    await client.close();
    return { sum: add.payload.sum };
  },

  async in_band_token({ wsClient, url }) {
    // Sessions of 800 ms: authenticated in band before the queued request, refreshed on the
    // same connection; a refused refresh ends the session (1008), then a reconnect.
    let issued = 0;
    let failing = false;
    const getToken = () => (failing ? "bad" : `ann-${++issued}`);
    const errors = [];
    const states = [];
    const client = wsClient({ url, reconnect: fast, auth: { getToken, attach: "message" } });
    client.onError((error, context) => errors.push(context.type));
    client.onState((state) => {
      states.push(state);
      // At once, not at the next poll of until(): the reconnect may ask for a token within
      // a few milliseconds, and a "bad" one would be refused (another error).
      if (state === "reconnecting") failing = false;
    });
    client.send("NOTE", { text: "queued" }); // waits for the authentication
    await client.connect();
    const add = await client.request("ADD", { a: 2, b: 2 });
    const byHand = await client.authenticate({ token: "ann-by-hand" });
    const refused = await caught(client.authenticate({ token: "nobody" }));
    await until(() => issued >= 3); // two refreshes by themselves
    const refreshedStates = [...states];
    failing = true; // until the session ends and the client reconnects
    await until(() => states.includes("reconnecting"));
    await until(() => client.isConnected && states.filter((s) => s === "open").length >= 2);
    const again = await client.request("ADD", { a: 3, b: 3 });
    await client.close();
    return {
      sum: add.payload.sum,
      again: again.payload.sum,
      refreshedStates,
      byHand: { userId: byHand.userId, expires: typeof byHand.expiresAt },
      refused,
      errors: [...new Set(errors)],
    };
  },

  async wskit_frames({ wsClient, url }) {
    // Against a server that records frames and answers nothing (the requests time out).
    const client = wsClient({ url, reconnect: fast, sendDeadline: false });
    await client.connect();
    client.send("ECHO", { text: "hi" }, { meta: { timestamp: 1, clientId: "dropped" } });
    const late = await caught(client.request("ADD", { a: 1, b: 2 }, { timeoutMs: 100 }));
    await client.close();
    return { late: late.code };
  },

  async queue_and_reconnect({ wsClient, url, step }) {
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

Object.assign(scenarios, {
  async topics({ wsClient, url }) {
    const client = wsClient({ url, reconnect: fast });
    const heard = [];
    client.on("SAID", (payload) => heard.push(payload.text));
    await client.connect();
    const ack = await client.join("room:1", { username: "ann" });
    const lobby = await client.join("lobby");
    const refused = await caught(client.join("room:secret", { username: "ann" }));
    const unknown = await caught(client.join("nowhere"));
    const badTopic = await caught(client.join(""));
    client.send("SAY", { room: "room:1", text: "hello" }); // a member hears itself
    await until(() => heard.length === 1);
    const joined = Object.entries(client.topics); // (entries: JSON keeps an undefined as null)
    await client.leave("room:1");
    client.send("SAY", { room: "room:1", text: "gone?" });
    client.send("SAY", { room: "lobby", text: "after" }); // in order, from one sender
    await until(() => heard.length === 2);
    const left = Object.entries(client.topics);
    await client.leave("room:1"); // not in it: acknowledged all the same
    await client.close();
    return { ack, lobby: lobby === undefined, refused, unknown, badTopic, heard, joined, left, closed: Object.entries(client.topics) };
  },

  async rejoin({ wsClient, url, step }) {
    const client = wsClient({ url, reconnect: fast });
    const heard = [];
    const errors = [];
    client.on("SAID", (payload) => heard.push(payload.text));
    client.onError((error, context) => errors.push({ type: context.type, details: context.details, name: error.name, topic: error.topic, reason: error.reason }));
    await client.connect();
    await client.join("room:1", { username: "ann" });
    await client.join("room:2", { username: "ann" });
    await step("stop-server");
    await until(() => client.state === "reconnecting");
    client.send("SAY", { room: "room:1", text: "while down" }); // queued: sent after the rejoins
    await step("start-server");
    await until(() => heard.includes("while down") && errors.length === 1);
    await step("publish"); // the server publishes to room:1
    await until(() => heard.includes("from the server"));
    const topics = client.topics;
    await client.close();
    return { heard, errors, topics };
  },

  async presence({ wsClient, url, step }) {
    const names = (members) => (members ?? []).map((m) => m.data?.name).sort();
    const ann = wsClient({ url, reconnect: fast });
    const ben = wsClient({ url, reconnect: fast });
    const outsider = wsClient({ url, reconnect: fast });
    const seen = []; // what ann's onPresence listener got, in order
    ann.onPresence(({ topic, members }) => seen.push([topic, names(members)]));
    await Promise.all([ann.connect(), ben.connect(), outsider.connect()]);
    const before = ann.members("room:1"); // not joined: null
    await ann.join("room:1", { name: "ann" }, { presence: true });
    await until(() => names(ann.members("room:1")).join() === "ann");
    await ben.join("room:1", { name: "ben" });
    await until(() => names(ann.members("room:1")).join() === "ann,ben");
    const listed = names(await ben.presence("room:1"));
    const member = (await ben.presence("room:1")).find((m) => m.data.name === "ben");
    const denied = await caught(outsider.presence("room:1"));
    const noPresence = await caught(ann.presence("plain"));
    await ben.leave("room:1");
    await until(() => names(ann.members("room:1")).join() === "ann");
    await step("restart-server"); // ann rejoins the new server: its members are listed afresh
    const relisted = seen.length;
    await until(() => ann.state === "open" && seen.length > relisted);
    await ben.onceOpen();
    await ben.join("room:1", { name: "ben" });
    await until(() => names(ann.members("room:1")).join() === "ann,ben");
    await ann.leave("room:1");
    const afterLeave = ann.members("room:1");
    await Promise.all([ann.close(), ben.close(), outsider.close()]);
    return { before, listed, member, denied, noPresence, seen, relisted, afterLeave };
  },

  async join_offline({ wsClient, url }) {
    const client = wsClient({ url, reconnect: fast });
    const pending = client.join("room:1", { username: "ann" });
    const dropped = caught(client.join("room:9", { username: "ann" }));
    const queued = client.queued;
    await client.leave("room:9"); // offline: nothing to leave; its queued join is taken out
    const cancelled = await dropped;
    await client.connect();
    const ack = await pending;
    const topics = client.topics;
    await client.close();
    return { queued, cancelled, ack, topics };
  },
});

// Recovery: the Python side serves tests/integration/test_client_recovery.py's Newsroom.
function newsReader(client) {
  const seen = []; // ["news", n, offset] per event handed over, ["resync", topic, data] per resync
  client.on("NEWS", (payload, frame) => seen.push(["news", payload.n, frame.meta.offset]));
  client.onResync((resync) => seen.push(["resync", resync.topic, resync.data]));
  return seen;
}

Object.assign(scenarios, {
  async recover({ wsClient, url, step }) {
    const client = wsClient({ url, reconnect: fast });
    const seen = newsReader(client);
    await client.connect();
    const ack = await client.join("news:1", undefined, { recover: true });
    const first = client.position("news:1");
    await step("publish"); // 1, 2
    await until(() => seen.length === 2);
    await step("away"); // the server refuses handshakes from now on
    client.send("DROP"); // the server closes this connection
    await until(() => client.state === "reconnecting");
    await step("publish-missed"); // 3, 4, 5, and handshakes accepted again
    await until(() => seen.length === 5);
    await step("publish-live"); // 6
    await until(() => seen.length === 6);
    const position = client.position("news:1");
    await client.leave("news:1");
    const left = client.position("news:1");
    await client.close();
    return { ack, first, seen, position, left };
  },

  async resync({ wsClient, url, step }) {
    const client = wsClient({ url, reconnect: fast });
    const seen = newsReader(client);
    await client.connect();
    await client.join("news:2", undefined, { recover: true });
    await step("publish"); // 1, 2, 3
    await until(() => seen.length === 3);
    const before = client.position("news:2");
    await step("restart"); // another server process on the same port: another epoch
    await until(() => seen.length === 4);
    const after = client.position("news:2");
    await step("publish-live"); // 1, in the new epoch
    await until(() => seen.length === 5);
    await client.close();
    return { seen, before, after };
  },

  async duplicates({ wsClient, url }) {
    const client = wsClient({ url, reconnect: fast });
    const seen = newsReader(client);
    await client.connect();
    await client.join("t", undefined, { recover: true });
    await until(() => seen.length >= 4); // (the repeats, then the resync, before the last event)
    const position = client.position("t");
    await client.close();
    return { seen, position };
  },
});
