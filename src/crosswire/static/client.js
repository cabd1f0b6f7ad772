// crosswire's browser client: one zero-dependency ES module for the canonical dialect
// (docs/protocol.md), with the API of WS-Kit's wsClient and of crosswire.client.Client:
// requests with progress, deadlines and AbortSignal, handlers per type, topics joined and
// left (and joined again after a reconnect, recovering the events missed meanwhile when
// asked), a bounded offline queue, reconnection with backoff, and a token on every attempt.
// docs/client.md.
//
//   import { wsClient } from "/static/client.js";
//   const client = wsClient({ url: "ws://127.0.0.1:8000/" });
//   client.on("ECHO", (payload, frame) => console.log(payload.text));
//   await client.connect();
//   const reply = await client.request("ADD", { a: 1, b: 2 });  // reply.payload.sum === 3
//   const welcome = await client.join("room:7", { username: "ann" });  // the ack's data
//   await client.join("news:1", undefined, { recover: true });  // missed events come back
//   await client.join("room:8", { name: "ann" }, { presence: true });  // who is in, live:
//   client.onPresence(({ topic, members }) => console.log(topic, members.length));

const RETRYABLE = new Set(["ABORTED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "UNAVAILABLE"]);
// Close codes after which reconnecting cannot help (the server refused this client), but a
// 1008 "Session expired": the next attempt brings a fresh token.
const NO_RECONNECT = new Set([1002, 1003, 1007, 1008, 1009]);
const SESSION_EXPIRED = "Session expired";
// Milliseconds a connection must last for the next loss to start the backoff again.
const STABLE_AFTER_MS = 1000;
// The longest request timeout: a day, the server's cap (and well within setTimeout's range).
const MAX_TIMEOUT_MS = 86400000;

/** An error the server sent (ERROR / RPC_ERROR), or one the client raised for a request. */
export class WsClientError extends Error {
  constructor(code, message = "", { details, retryable, retryAfterMs } = {}) {
    super(message || code);
    this.name = "WsClientError";
    this.code = code;
    this.details = details;
    this.retryable = typeof retryable === "boolean" ? retryable : RETRYABLE.has(code);
    this.retryAfterMs = retryAfterMs;
  }

  static fromPayload(payload) {
    const body = payload && typeof payload === "object" ? payload : {};
    return new WsClientError(String(body.code ?? "INTERNAL"), String(body.message ?? ""), {
      details: body.details,
      retryable: body.retryable,
      retryAfterMs: body.retryAfterMs,
    });
  }
}

/** The server refused to join `topic`: `code` and `reason` (= `message`) are the server's. */
export class JoinRefused extends WsClientError {
  constructor(topic, code, reason = "", options = {}) {
    super(code, reason, options);
    this.name = "JoinRefused";
    this.topic = topic;
  }

  get reason() {
    return this.message;
  }

  static fromPayload(topic, payload) {
    const error = WsClientError.fromPayload(payload);
    return new JoinRefused(topic, error.code, error.message, error);
  }
}

const JOIN_REFUSALS = new Set(["$ws:join-error", "RPC_ERROR", "ERROR"]);

/** Create a client; nothing happens until connect() (or send/request/join, which queue). */
export function wsClient(options) {
  return new Client(options);
}

class Client {
  constructor({
    url,
    protocols = [],
    reconnect = {},
    queue = "drop-newest",
    queueSize = 1000,
    pendingRequestsLimit = 1000,
    auth = null,
    connectTimeoutMs = 10000,
    closeTimeoutMs = 5000,
    sendDeadline = true, // meta.timeoutMs on requests; WS-Kit 0.10 servers refuse the key
    wsFactory = (u, p) => new WebSocket(u, p),
  }) {
    if (!["drop-newest", "drop-oldest", "off"].includes(queue)) {
      throw new TypeError(`queue must be drop-newest, drop-oldest or off: ${queue}`);
    }
    for (const [name, value] of [["queueSize", queueSize], ["pendingRequestsLimit", pendingRequestsLimit]]) {
      if (!Number.isInteger(value) || value < 1) throw new TypeError(`${name} must be an integer >= 1`);
    }
    this.url = String(url);
    this.protocols = typeof protocols === "string" ? [protocols] : [...protocols];
    this.reconnect = {
      enabled: true,
      maxAttempts: Infinity,
      initialDelayMs: 300,
      maxDelayMs: 10000,
      jitter: "full",
      ...reconnect,
    };
    this.queuePolicy = queue;
    this.queueSize = queueSize;
    this.pendingRequestsLimit = pendingRequestsLimit;
    this.auth = auth;
    this.connectTimeoutMs = connectTimeoutMs;
    this.closeTimeoutMs = closeTimeoutMs;
    this.sendDeadline = sendDeadline;
    this.wsFactory = wsFactory;

    this.state = "closed";
    this.protocol = "";
    this._ws = null;
    this._running = false; // between connect() and close() (or giving up)
    this._accepting = true; // false once closed or given up: sends then fail at once
    this._failures = 0;
    this._generation = 0; // each attempt's number: events of older sockets are ignored
    this._lastError = null;
    this._timer = null;
    this._queue = []; // [text, correlationId | null]
    this._calls = new Map(); // correlationId -> {resolve, reject, onProgress, sent}
    this._nextId = 0;
    this._handlers = new Map();
    this._stateListeners = new Set();
    this._errorListeners = new Set();
    this._unhandledListeners = new Set();
    this._resyncListeners = new Set();
    this._openWaiters = [];
    this._topics = new Map(); // joined topic -> the data it was joined with
    this._joining = new Map(); // topic -> its latest join waiting for an answer: {data, recover, presence}
    this._rejoins = new Map(); // correlationId -> topic, the rejoins of the current socket
    // Topics joined with recover -> the last position seen {offset, epoch} (null: none given).
    this._positions = new Map();
    // Topics joined with presence -> their members by clientId (null: being listed), and the
    // presence events that came while they were being listed.
    this._members = new Map();
    this._presenceEvents = new Map();
    this._presenceListeners = new Set();
    this._refreshTimer = null; // the next in-band refresh of a session that expires
  }

  /** The topics joined (and not left), each with the data it was joined with. */
  get topics() {
    return Object.fromEntries(this._topics);
  }

  /**
   * The last position seen of `topic` ({offset, epoch}: the ack's, then each event's) if it
   * was joined with `recover: true`; null otherwise, or when the server gave none.
   */
  position(topic) {
    const position = this._positions.get(topic);
    return position ? { ...position } : null;
  }

  get isConnected() {
    return this.state === "open";
  }

  /** How many frames wait for a connection. */
  get queued() {
    return this._queue.length;
  }

  // -- connecting ------------------------------------------------------------------------

  /** Connect and stay connected (reconnecting) until close(). Resolves once open. */
  connect() {
    if (!this._running) {
      this._running = true;
      this._accepting = true;
      this._failures = 0;
      this._lastError = null;
      this._attempt();
    }
    return this.onceOpen();
  }

  /** Resolves on the next open (at once if open); rejects if the client gives up first. */
  onceOpen() {
    if (this.state === "open") return Promise.resolve();
    if (!this._running) return Promise.reject(this._connectError("not connecting: call connect()"));
    return new Promise((resolve, reject) => this._openWaiters.push({ resolve, reject }));
  }

  /**
   * Close and stop reconnecting; resolves once closed (at most closeTimeoutMs). Pending
   * requests, joins and leaves fail with CANCELLED, and the joined topics are forgotten.
   * `code` must be 1000 or 3000-4999 (what browsers allow).
   */
  close({ code = 1000, reason = "" } = {}) {
    if (code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw new RangeError(`close code ${code}: browsers allow 1000 or 3000-4999`);
    }
    this._running = false;
    this._accepting = false;
    this._generation += 1; // the current socket's events no longer concern the client
    clearTimeout(this._timer);
    clearTimeout(this._refreshTimer);
    this._queue = [];
    this._topics.clear();
    this._joining.clear();
    this._rejoins.clear();
    this._positions.clear();
    this._members.clear();
    this._presenceEvents.clear();
    this._failCalls(new WsClientError("CANCELLED", "the client closed"));
    this._settleOpenWaiters(new Error("the client closed"));
    const ws = this._ws;
    this._ws = null;
    if (!ws || ws.readyState >= 2) {
      this._setState("closed");
      return Promise.resolve();
    }
    this._setState("closing");
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.state === "closing") this._setState("closed");
        resolve();
      };
      const timer = setTimeout(done, this.closeTimeoutMs);
      ws.addEventListener("close", done, { once: true });
      ws.addEventListener("error", done, { once: true });
      try {
        ws.close(code, reason);
      } catch {
        done();
      }
    });
  }

  async _attempt() {
    const gen = ++this._generation;
    const current = () => gen === this._generation && this._running;
    this._setState(this._failures === 0 ? "connecting" : "reconnecting");
    let url;
    try {
      url = new URL(this.url, globalThis.location?.href);
    } catch (error) {
      this._lastError = error;
      return this._giveUp(`bad URL ${this.url}`);
    }
    const protocols = [...this.protocols];
    let inBand = null; // a token sent in band once the socket is open (auth.attach "message")
    try {
      const token = this.auth?.getToken ? await this.auth.getToken() : null;
      if (token != null && token !== "") {
        const attach = this.auth.attach ?? "query";
        if (attach === "message") inBand = token;
        else if (attach === "query") {
          url.searchParams.set(this.auth.queryParam ?? "access_token", token);
        } else {
          const offered = (this.auth.protocolPrefix ?? "bearer.") + token;
          if ((this.auth.protocolPosition ?? "append") === "append") protocols.push(offered);
          else protocols.unshift(offered);
        }
      }
    } catch (error) {
      if (!current()) return;
      this._lastError = error;
      this._report(error, "unknown");
      return this._retry(true, null);
    }
    if (!current()) return;
    let ws;
    try {
      ws = this.wsFactory(url.toString(), protocols.length ? protocols : undefined);
    } catch (error) {
      this._lastError = error;
      return this._giveUp(`cannot open ${url}: ${error.message}`);
    }
    this._ws = ws;
    let openedAt = null;
    let ended = false;
    // The attempt, or the connection, is over: once, whichever event says so first.
    const end = (code, error, reason = "") => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      clearTimeout(this._refreshTimer);
      if (this._ws === ws) this._ws = null;
      if (!current()) return;
      this._rejoins.clear();
      if (error) this._lastError = error;
      if (openedAt !== null) {
        this._failCalls(new WsClientError("UNAVAILABLE", `the connection was lost (${code})`));
        const expired = code === 1008 && reason === SESSION_EXPIRED;
        if (NO_RECONNECT.has(code) && !expired) return this._giveUp(`the server closed the connection with ${code}`);
      }
      const lasted = openedAt !== null && Date.now() - openedAt >= STABLE_AFTER_MS;
      this._retry(!lasted, code);
    };
    const timer = setTimeout(() => {
      end(null, new Error(`no connection within ${this.connectTimeoutMs} ms`));
      try {
        ws.close();
      } catch {}
    }, this.connectTimeoutMs);
    ws.addEventListener("open", () => {
      if (ended || !current()) return;
      clearTimeout(timer);
      openedAt = Date.now();
      this.protocol = ws.protocol;
      const ready = () => {
        this._setState("open");
        this._settleOpenWaiters(null);
        this._rejoin(); // the topics first, then what waited in the queue
        this._flush();
      };
      if (inBand === null) return ready();
      // In band: open (sends go out, not to the queue) once the server accepted the token.
      this._authenticate({ token: inBand }, this.connectTimeoutMs, ws).then(
        () => !ended && current() && ready(),
        (error) => {
          if (ended || !current()) return;
          this._report(error, "auth");
          try {
            ws.close(); // (a refusal: the server closes with 4003 itself)
          } catch {}
        },
      );
    });
    ws.addEventListener("message", (event) => {
      if (!ended && current()) this._receive(ws, event.data);
    });
    // Some WebSocket implementations (Node 20's) fire only "error" when the connection is
    // refused: that ends the attempt too.
    ws.addEventListener("error", () => {
      if (openedAt === null) end(null, new Error(`could not connect to ${url}`));
    });
    ws.addEventListener("close", (event) => end(event.code, null, event.reason));
  }

  _retry(failed, code) {
    if (!this._running) return;
    this._failures = failed ? this._failures + 1 : 1;
    const r = this.reconnect;
    if (!r.enabled || this._failures > r.maxAttempts) {
      return this._giveUp(code === null ? "could not connect" : `the connection was lost (${code})`);
    }
    const ceiling = Math.min(r.maxDelayMs, r.initialDelayMs * 2 ** Math.min(this._failures - 1, 30));
    const delay = r.jitter === "none" ? ceiling : ceiling * Math.random();
    this._setState("reconnecting");
    const gen = this._generation;
    this._timer = setTimeout(() => this._running && gen === this._generation && this._attempt(), delay);
  }

  _giveUp(why) {
    this._running = false;
    this._accepting = false;
    this._queue = [];
    this._failCalls(new WsClientError("UNAVAILABLE", why));
    this._settleOpenWaiters(this._connectError(why));
    this._setState("closed");
  }

  _connectError(why) {
    const error = new Error(`${this.url}: ${why}`);
    if (this._lastError) error.cause = this._lastError;
    return error;
  }

  // -- sending ---------------------------------------------------------------------------

  /** Send an event. True if written now, false if queued or dropped. */
  send(type, payload, { meta } = {}) {
    return this._writeOrQueue(encode(type, payload, meta, null), null) === "sent";
  }

  /** Call an RPC; resolves with the reply frame {type, meta, payload}. */
  request(type, payload, { timeoutMs = 30000, meta, correlationId, signal, onProgress } = {}) {
    return new Promise((resolve, reject) => {
      if (this._calls.size >= this.pendingRequestsLimit) {
        throw new WsClientError("RESOURCE_EXHAUSTED", "too many requests pending");
      }
      const cid = correlationId || `c${++this._nextId}`;
      if (this._calls.has(cid)) throw new Error(`a request with correlationId ${cid} is pending`);
      // A whole number of ms that setTimeout can hold; the server caps deadlines at a day.
      const ms = Math.min(Math.max(1, Math.round(Number(timeoutMs) || 0)), MAX_TIMEOUT_MS);
      const standard = this.sendDeadline ? { correlationId: cid, timeoutMs: ms } : { correlationId: cid };
      const text = encode(type, payload, meta, standard);
      const call = { onProgress, sent: false };
      const finish = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (this._calls.get(cid) === call) this._calls.delete(cid);
        this._queue = this._queue.filter(([, id]) => id !== cid);
      };
      call.resolve = (frame) => (finish(), resolve(frame));
      call.reject = (error) => (finish(), reject(error));
      const cancel = (error) => {
        if (call.sent && this._ws?.readyState === 1) {
          this._ws.send(JSON.stringify({ type: "$ws:abort", meta: { correlationId: cid } }));
        }
        call.reject(error);
      };
      const onAbort = () => cancel(new WsClientError("CANCELLED", "aborted by the caller"));
      const timer = setTimeout(
        () => cancel(new WsClientError("DEADLINE_EXCEEDED", `no reply to ${type} within ${ms} ms`)),
        ms,
      );
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this._calls.set(cid, call);
      let how;
      try {
        how = this._writeOrQueue(text, cid);
      } catch (error) {
        return call.reject(error);
      }
      if (how === "dropped") {
        call.reject(new WsClientError("UNAVAILABLE", "not connected, and the queue is full"));
      }
    });
  }

  /**
   * Send `credentials` in band ($ws:authenticate) on the open connection, for a server with
   * router.authenticate: to refresh a session that expires without reconnecting (auth with
   * attach "message" does it by itself). Resolves {userId, expiresAt} (expiresAt in ms since
   * the epoch, null: never); rejects with the server's UNAUTHENTICATED "Refresh refused" (the
   * session keeps its old expiry), DEADLINE_EXCEEDED, or UNAVAILABLE when not open
   * (credentials are never queued).
   */
  authenticate(credentials, { timeoutMs = 30000 } = {}) {
    if (this.state !== "open") {
      return Promise.reject(new WsClientError("UNAVAILABLE", "not connected: credentials are not queued"));
    }
    return this._authenticate(credentials, timeoutMs, this._ws);
  }

  _authenticate(credentials, timeoutMs, ws) {
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== 1) {
        return reject(new WsClientError("UNAVAILABLE", "not connected: credentials are not queued"));
      }
      const cid = `c${++this._nextId}`;
      const ms = Math.min(Math.max(1, Math.round(Number(timeoutMs) || 0)), MAX_TIMEOUT_MS);
      const call = { sent: true };
      const finish = () => {
        clearTimeout(timer);
        if (this._calls.get(cid) === call) this._calls.delete(cid);
      };
      call.resolve = (value) => (finish(), resolve(value));
      call.reject = (error) => (finish(), reject(error));
      call.answer = (frame) => {
        if (frame.type === "$ws:authenticated") call.resolve(this._authenticated(frame.payload));
        else if (frame.type === "ERROR" || frame.type === "RPC_ERROR") call.reject(WsClientError.fromPayload(frame.payload));
        else return false;
        return true;
      };
      const timer = setTimeout(
        () => call.reject(new WsClientError("DEADLINE_EXCEEDED", `no answer to the credentials within ${ms} ms`)),
        ms,
      );
      this._calls.set(cid, call);
      ws.send(encode("$ws:authenticate", credentials, null, { correlationId: cid }));
    });
  }

  // The server's $ws:authenticated: with auth.attach "message" and an expiry, the next
  // refresh is scheduled (refreshBeforeMs ahead, or at three quarters of a shorter session).
  _authenticated(payload) {
    const body = payload && typeof payload === "object" ? payload : {};
    const session = {
      userId: typeof body.userId === "string" ? body.userId : null,
      expiresAt: typeof body.expiresAt === "number" ? body.expiresAt : null,
    };
    clearTimeout(this._refreshTimer);
    if (session.expiresAt !== null && this.auth?.attach === "message") {
      const left = session.expiresAt - Date.now();
      const delay = Math.max(0, left - Math.min(this.auth.refreshBeforeMs ?? 30000, left / 4));
      const ws = this._ws;
      this._refreshTimer = setTimeout(() => this._refreshSession(ws), delay);
    }
    return session;
  }

  async _refreshSession(ws) {
    if (ws !== this._ws) return; // another connection by now
    try {
      const token = await this.auth.getToken();
      if (token != null && token !== "") await this._authenticate({ token }, this.connectTimeoutMs, ws);
    } catch (error) {
      this._report(error, "auth"); // the session ends at its expiry; then a new connection
    }
  }

  /**
   * Join `topic` ($ws:join) with `data` (the join handler's ctx.payload); resolves with the
   * data of the server's ack (undefined when none), rejects with a JoinRefused (code,
   * reason) when the server refuses, or a WsClientError as request does. Once acknowledged,
   * the topic is joined again, with the same data, after each reconnect. While offline the
   * join waits in the queue. With `recover: true` the client keeps the topic's position
   * (position(topic); the topic needs a History on the server) and joins it again from
   * there: the events missed meanwhile come to the handlers, in order, none twice; when the
   * server could not recover them, the onResync listeners are told. With `presence: true`
   * (a topic that keeps presence on the server) the client keeps the list of its members,
   * live: members(topic), and onPresence listeners on every change, listed again after
   * each rejoin.
   */
  async join(topic, data, { timeoutMs = 30000, recover = false, presence = false } = {}) {
    if (typeof topic !== "string" || !topic) throw new TypeError("a topic is a non-empty string");
    const marker = { data, recover: Boolean(recover), presence: Boolean(presence) };
    this._joining.set(topic, marker);
    try {
      return (await this._topicCall(topic, timeoutMs, marker)).data;
    } finally {
      if (this._joining.get(topic) === marker) this._joining.delete(topic); // not acknowledged
    }
  }

  /**
   * Leave `topic` ($ws:leave): forgotten at once (not joined again after a reconnect);
   * resolves once the server acknowledged it. While offline there is nothing to leave on the
   * server: it resolves at once, and a queued join of the topic fails with CANCELLED.
   */
  async leave(topic, { timeoutMs = 30000 } = {}) {
    this._topics.delete(topic);
    this._joining.delete(topic);
    this._positions.delete(topic);
    this._forgetMembers(topic);
    if (this.state !== "open") {
      for (const [, cid] of this._queue) {
        const call = this._calls.get(cid);
        if (call?.joining && call.topic === topic) {
          call.reject(new WsClientError("CANCELLED", `${topic} was left before the join was sent`));
        }
      }
      return;
    }
    await this._topicCall(topic, timeoutMs, null);
  }

  // A join (`joining`: its {data, recover}) or a leave (null), and its answer.
  _topicCall(topic, timeoutMs, joining) {
    return new Promise((resolve, reject) => {
      if (this._calls.size >= this.pendingRequestsLimit) {
        throw new WsClientError("RESOURCE_EXHAUSTED", "too many requests pending");
      }
      const cid = `c${++this._nextId}`;
      const ms = Math.min(Math.max(1, Math.round(Number(timeoutMs) || 0)), MAX_TIMEOUT_MS);
      const payload = joinPayload(topic, joining?.data, joining?.recover ? {} : undefined, joining?.presence);
      const text = encode(joining ? "$ws:join" : "$ws:leave", payload, null, { correlationId: cid });
      const call = { sent: false, topic, joining };
      const finish = () => {
        clearTimeout(timer);
        if (this._calls.get(cid) === call) this._calls.delete(cid);
        this._queue = this._queue.filter(([, id]) => id !== cid);
      };
      call.resolve = (value) => (finish(), resolve(value));
      call.reject = (error) => (finish(), reject(error));
      // Settles the call if `frame` (with its correlationId) answers it; whether it did.
      call.answer = (frame) => {
        if (joining && frame.type === "$ws:join-ack") {
          this._accepted(topic, joining, frame.payload); // before the next frame is read
          call.resolve({ data: frame.payload?.data });
        } else if (joining && JOIN_REFUSALS.has(frame.type)) call.reject(JoinRefused.fromPayload(topic, frame.payload));
        else if (!joining && frame.type === "$ws:leave-ack") call.resolve(undefined);
        else if (!joining && (frame.type === "ERROR" || frame.type === "RPC_ERROR")) {
          call.reject(WsClientError.fromPayload(frame.payload));
        } else return false;
        return true;
      };
      const what = joining ? "join" : "leave";
      const timer = setTimeout(
        () => call.reject(new WsClientError("DEADLINE_EXCEEDED", `no answer to the ${what} of ${topic} within ${ms} ms`)),
        ms,
      );
      this._calls.set(cid, call);
      let how;
      try {
        how = this._writeOrQueue(text, cid);
      } catch (error) {
        return call.reject(error);
      }
      if (how === "dropped") {
        call.reject(new WsClientError("UNAVAILABLE", "not connected, and the queue is full"));
      }
    });
  }

  // The join of `marker` was acknowledged: the topic is remembered (with its position, if it
  // asked for one), unless it was left, or joined again, since.
  _accepted(topic, marker, ack) {
    if (this._joining.get(topic) !== marker) return;
    this._joining.delete(topic);
    this._topics.set(topic, marker.data);
    if (marker.recover) this._positions.set(topic, positionOf(ack));
    else this._positions.delete(topic);
    if (marker.presence) this._listMembers(topic);
    else this._forgetMembers(topic);
  }

  _rejoin() {
    this._rejoins.clear();
    for (const [topic, data] of this._topics) {
      if (this._ws?.readyState !== 1) return;
      const cid = `c${++this._nextId}`;
      this._rejoins.set(cid, topic);
      // A topic joined with recover asks for what it missed since its last position.
      let recover;
      if (this._positions.has(topic)) {
        const since = this._positions.get(topic);
        recover = since ? { offset: since.offset, epoch: since.epoch } : {};
      }
      const payload = joinPayload(topic, data, recover, this._members.has(topic));
      this._ws.send(encode("$ws:join", payload, null, { correlationId: cid }));
    }
  }

  // A rejoin of `topic` was accepted: a topic that asked to recover and was not recovered
  // starts again from the ack's position, and the application is told to resync.
  _rejoined(topic, ack) {
    if (this._members.has(topic)) this._listMembers(topic);
    if (!this._positions.has(topic) || ack?.recovered === true) return; // (what it missed follows)
    this._positions.set(topic, positionOf(ack));
    this._tellResync(topic, ack?.data);
  }

  _tellResync(topic, data) {
    const resync = { topic, data };
    if (this._resyncListeners.size === 0) console.warn(`crosswire client: ${topic} was not recovered: resync`);
    for (const listener of this._resyncListeners) this._guard(() => listener(resync));
  }

  // Whether to hand an event to the application: not one of a positioned topic at or before
  // its last position in the same epoch (seen already). Others move the position.
  _admit(meta) {
    const position = positionOf(meta);
    if (typeof meta.topic !== "string" || !position || !this._positions.has(meta.topic)) return true;
    const last = this._positions.get(meta.topic);
    if (last && last.epoch === position.epoch && position.offset <= last.offset) return false;
    this._positions.set(meta.topic, position);
    // Another epoch: the history's past was lost while connected (skipped offsets are not
    // a gap: an event published with `exclude` never reaches the excluded).
    if (last && last.epoch && last.epoch !== position.epoch) this._tellResync(meta.topic, undefined);
    return true;
  }

  _writeOrQueue(text, cid) {
    if (!this._accepting) throw new WsClientError("UNAVAILABLE", "the client is closed: call connect()");
    if (this.state === "open" && this._ws?.readyState === 1 && this._queue.length === 0) {
      this._ws.send(text);
      if (cid !== null) this._calls.get(cid).sent = true;
      return "sent";
    }
    if (this.queuePolicy === "off" || (this._queue.length >= this.queueSize && this.queuePolicy === "drop-newest")) {
      this._report(new Error("not connected: frame dropped"), "overflow", text);
      return "dropped";
    }
    if (this._queue.length >= this.queueSize) {
      const [dropped, droppedCid] = this._queue.shift();
      this._report(new Error("queue full: oldest frame dropped"), "overflow", dropped);
      this._calls.get(droppedCid)?.reject(new WsClientError("UNAVAILABLE", "dropped from the full queue"));
    }
    this._queue.push([text, cid]);
    return "queued";
  }

  _flush() {
    while (this._queue.length && this._ws?.readyState === 1) {
      const [text, cid] = this._queue.shift();
      this._ws.send(text);
      const call = cid !== null ? this._calls.get(cid) : undefined;
      if (call) call.sent = true;
    }
  }

  // -- presence --------------------------------------------------------------------------

  /**
   * Who is in `topic` now, on every instance ($ws:presence): [{clientId, userId, data}].
   * For members only: rejects with PERMISSION_DENIED otherwise, FAILED_PRECONDITION for a
   * topic that keeps no presence.
   */
  async presence(topic, { timeoutMs = 30000 } = {}) {
    const reply = await this.request("$ws:presence", { topic }, { timeoutMs });
    return Array.isArray(reply.payload?.members) ? reply.payload.members : [];
  }

  /** The members of a topic joined with `presence: true` (a copy), or null while not known. */
  members(topic) {
    const members = this._members.get(topic);
    return members ? [...members.values()] : null;
  }

  /**
   * listener({topic, members}) whenever the members of a topic joined with `presence: true`
   * change: once listed after each (re)join, then on every join and leave.
   */
  onPresence(listener) {
    return listen(this._presenceListeners, listener);
  }

  // Lists `topic`'s members afresh (after its join or rejoin was acknowledged); the presence
  // events that come meanwhile are applied after the list, in order.
  _listMembers(topic) {
    this._members.set(topic, null);
    const waiting = [];
    this._presenceEvents.set(topic, waiting);
    this.presence(topic).then(
      (members) => {
        if (this._presenceEvents.get(topic) !== waiting) return; // left, or listed again
        this._presenceEvents.delete(topic);
        this._members.set(topic, new Map(members.map((member) => [member.clientId, member])));
        for (const [type, member] of waiting) this._applyPresence(topic, type, member, false);
        this._tellPresence(topic);
      },
      (error) => {
        if (this._presenceEvents.get(topic) !== waiting) return;
        this._presenceEvents.delete(topic);
        // Lost with the connection (or closed): the rejoin lists the members again.
        if (error?.code !== "UNAVAILABLE" && error?.code !== "CANCELLED") this._report(error, "presence", topic);
      },
    );
  }

  _forgetMembers(topic) {
    this._members.delete(topic);
    this._presenceEvents.delete(topic);
  }

  // A $ws:presence-join or -leave of a topic whose members the client keeps.
  _presenceEvent(type, member) {
    const topic = member?.topic;
    if (typeof topic !== "string" || !this._members.has(topic)) return;
    const waiting = this._presenceEvents.get(topic);
    if (waiting) waiting.push([type, member]);
    else this._applyPresence(topic, type, member, true);
  }

  _applyPresence(topic, type, { clientId, userId = null, data = null }, tell) {
    const members = this._members.get(topic);
    if (!members || typeof clientId !== "string") return;
    if (type === "$ws:presence-join") members.set(clientId, { clientId, userId, data });
    else members.delete(clientId);
    if (tell) this._tellPresence(topic);
  }

  _tellPresence(topic) {
    const members = this.members(topic);
    for (const listener of this._presenceListeners) this._guard(() => listener({ topic, members }));
  }

  // -- receiving -------------------------------------------------------------------------

  /** handler(payload, frame) for each message of `type`; returns an unregister function. */
  on(type, handler) {
    if (this._handlers.has(type)) throw new Error(`${type} already has a handler`);
    this._handlers.set(type, handler);
    return () => this._handlers.get(type) === handler && this._handlers.delete(type);
  }

  onState(listener) {
    return listen(this._stateListeners, listener);
  }

  onError(listener) {
    return listen(this._errorListeners, listener);
  }

  onUnhandled(listener) {
    return listen(this._unhandledListeners, listener);
  }

  /**
   * listener({topic, data}) when a topic joined with recover was joined again after a
   * reconnect without the events missed meanwhile: reload its state (`data`: the rejoin's
   * ack data). Called before the events that follow. Without listeners, it is logged.
   */
  onResync(listener) {
    return listen(this._resyncListeners, listener);
  }

  _receive(ws, data) {
    let frame;
    try {
      frame = typeof data === "string" ? JSON.parse(data) : null;
    } catch {
      frame = null;
    }
    if (!frame || typeof frame !== "object" || typeof frame.type !== "string") {
      return this._report(new Error("not a canonical frame"), "parse", data);
    }
    const meta = frame.meta && typeof frame.meta === "object" ? frame.meta : {};
    if (frame.type === "__heartbeat") {
      if (ws.readyState === 1) ws.send(JSON.stringify({ type: "__heartbeat_ack" }));
      return;
    }
    const cid = typeof meta.correlationId === "string" ? meta.correlationId : null;
    const call = cid !== null ? this._calls.get(cid) : undefined;
    if (call?.answer) {
      if (call.answer(frame)) return;
    } else if (call) {
      if (frame.type === "$ws:rpc-progress") {
        if (call.onProgress) this._guard(() => call.onProgress(frame.payload ?? frame.data));
      } else if (frame.type === "RPC_ERROR" || frame.type === "ERROR") {
        call.reject(WsClientError.fromPayload(frame.payload));
      } else {
        call.resolve({ type: frame.type, meta, payload: frame.payload });
      }
      return;
    }
    const rejoined = cid !== null ? this._rejoins.get(cid) : undefined;
    if (rejoined !== undefined && (frame.type === "$ws:join-ack" || JOIN_REFUSALS.has(frame.type))) {
      this._rejoins.delete(cid);
      if (frame.type === "$ws:join-ack") return this._rejoined(rejoined, frame.payload);
      this._topics.delete(rejoined); // refused now: forgotten, and the app told
      this._positions.delete(rejoined);
      this._forgetMembers(rejoined);
      return this._report(JoinRefused.fromPayload(rejoined, frame.payload), "rejoin", rejoined);
    }
    if (frame.type === "ERROR") return this._report(WsClientError.fromPayload(frame.payload), "server", frame);
    if (!this._admit(meta)) return;
    if (frame.type === "$ws:presence-join" || frame.type === "$ws:presence-leave") {
      this._presenceEvent(frame.type, frame.payload);
    }
    const handler = this._handlers.get(frame.type);
    if (handler) return this._guard(() => handler(frame.payload, { type: frame.type, meta, payload: frame.payload }));
    for (const listener of this._unhandledListeners) this._guard(() => listener(frame));
  }

  // -- small helpers ---------------------------------------------------------------------

  _guard(fn) {
    try {
      const result = fn();
      if (result && typeof result.catch === "function") result.catch((e) => this._report(e, "handler"));
    } catch (error) {
      this._report(error, "handler");
    }
  }

  _report(error, type, details) {
    if (this._errorListeners.size === 0) console.warn(`crosswire client: ${type}:`, error);
    for (const listener of this._errorListeners) {
      try {
        listener(error, { type, details });
      } catch (e) {
        console.error("crosswire client: an onError listener threw", e);
      }
    }
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    for (const listener of this._stateListeners) {
      try {
        listener(state);
      } catch (e) {
        console.error("crosswire client: an onState listener threw", e);
      }
    }
  }

  _failCalls(error) {
    for (const call of [...this._calls.values()]) call.reject(error);
  }

  _settleOpenWaiters(error) {
    const waiters = this._openWaiters;
    this._openWaiters = [];
    for (const { resolve, reject } of waiters) (error ? reject(error) : resolve());
  }
}

function encode(type, payload, meta, standard) {
  const frame = { type };
  const full = { ...(meta ?? {}) };
  delete full.clientId; // stamped by the server
  delete full.receivedAt;
  Object.assign(full, standard ?? {});
  if (Object.keys(full).length) frame.meta = full;
  if (payload !== undefined) frame.payload = payload;
  return JSON.stringify(frame);
}

function joinPayload(topic, data, recover, presence) {
  const payload = { topic };
  if (data !== undefined) payload.data = data;
  if (recover !== undefined) payload.recover = recover;
  if (presence) payload.presence = true;
  return payload;
}

// The {offset, epoch} an ack or an event's meta carries, or null.
function positionOf(body) {
  const offset = body?.offset;
  const epoch = body?.epoch;
  return Number.isInteger(offset) && offset >= 0 && typeof epoch === "string" ? { offset, epoch } : null;
}

function listen(listeners, listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
