// The browser client's whole API, used as a user would, with the declarations next to it
// (src/crosswire/static/client.d.ts). tsc --noEmit --strict compiles it (tsconfig.json;
// tests/integration/test_typescript.py): a declaration that is missing or wrong fails the test.
// Each `@ts-expect-error` line must be an error: if the declarations let it through, tsc
// fails with "Unused '@ts-expect-error' directive". It is compiled, never run.
import {
  type AuthOptions,
  type ConnectionState,
  type ErrorCode,
  type Frame,
  JoinRefused,
  type Member,
  type Position,
  type RawFrame,
  type Session,
  type WebSocketLike,
  type WsClient,
  WsClientError,
  type WsClientOptions,
  wsClient,
} from "../../src/crosswire/static/client.js";

interface Echo {
  text: string;
}
interface Sum {
  sum: number;
}
interface Step {
  n: number;
}
interface Welcome {
  members: string[];
}

const auth: AuthOptions = {
  getToken: async () => localStorage.getItem("token"),
  attach: "message",
  queryParam: "token",
  protocolPrefix: "bearer.",
  protocolPosition: "prepend",
  refreshBeforeMs: 30_000,
};

const options: WsClientOptions = {
  url: new URL("ws://127.0.0.1:8000/"),
  protocols: ["chat.v1"],
  reconnect: { enabled: true, maxAttempts: 10, initialDelayMs: 300, maxDelayMs: 10_000, jitter: "full" },
  queue: "drop-oldest",
  queueSize: 100,
  pendingRequestsLimit: 50,
  auth,
  connectTimeoutMs: 10_000,
  closeTimeoutMs: 5_000,
  sendDeadline: false,
  wsFactory: (url, protocols) => new WebSocket(url, protocols), // the DOM's WebSocket fits
};

const client: WsClient = wsClient(options);
// Only the URL is required; a string URL and a plain token getter will do.
wsClient({ url: "/ws", auth: { getToken: () => "t0k3n", attach: "query" } });
wsClient({ url: "ws://x/", protocols: "one", auth: null });

const off = client.on<Echo>("ECHO", (payload, frame: Frame<Echo>) => {
  const text: string = payload.text;
  const meta: string | undefined = frame.meta.correlationId;
  const offset: number | undefined = frame.meta.offset;
  console.log(text, meta, offset, frame.type, frame.payload.text);
});
off();
client.on("ANYTHING", async (payload) => {
  // @ts-expect-error: without a type argument the payload is unknown
  console.log(payload.text);
});
client.onState((state: ConnectionState) => {
  if (state === "reconnecting") console.log("back soon");
});
client.onError((error, context) => {
  if (context.type === "rejoin") {
    const topic: string = context.details;
    if (error instanceof JoinRefused) console.warn(`no longer in ${topic}: ${error.reason}`);
  } else if (context.type === "server") {
    if (error instanceof WsClientError) {
      const code: ErrorCode | (string & {}) = error.code;
      console.warn(context.details.type, code === "UNIMPLEMENTED");
    }
  } else if (context.type === "overflow") {
    console.warn(context.details.length);
  }
  // @ts-expect-error: a handler may throw anything, so the error must be narrowed first
  console.warn(error.message);
});
client.onUnhandled((frame: RawFrame) => console.log(frame.type, frame.payload));
client.onResync<Welcome>(({ topic, data }) => {
  console.log(topic, data?.members.length);
});

async function main(): Promise<void> {
  await client.connect();
  await client.onceOpen();
  const sent: boolean = client.send("ECHO", { text: "hello" }, { meta: { traceId: "t1" } });
  client.send("PING");

  const reply = await client.request<Sum>("ADD", { a: 1, b: 2 }, { timeoutMs: 5_000 });
  const sum: number = reply.payload.sum;
  // @ts-expect-error: the reply's payload is a Sum
  reply.payload.total;

  const controller = new AbortController();
  const counted = client.request<{ total: number }, { to: number }, Step>(
    "COUNT",
    { to: 5 },
    {
      signal: controller.signal, // the DOM's AbortSignal fits
      onProgress: (step) => console.log(step.n),
      correlationId: "mine",
      meta: { traceId: "t2" },
      timeoutMs: 60_000,
    },
  );
  controller.abort();
  try {
    await counted;
  } catch (error) {
    if (error instanceof WsClientError) {
      const retry: boolean = error.retryable;
      console.log(error.code, error.message, error.details, retry, error.retryAfterMs);
    }
  }

  const welcome = await client.join<Welcome>("room:7", { username: "ann" });
  console.log(welcome?.members);
  // @ts-expect-error: the ack's data may be undefined (an ack without data)
  console.log(welcome.members);
  try {
    await client.join("room:secret", { username: "ann" }, { timeoutMs: 1_000 });
  } catch (error) {
    if (error instanceof JoinRefused) console.log(error.topic, error.code, error.reason);
  }
  await client.join("news:1", undefined, { recover: true });
  const position: Position | null = client.position("news:1");
  console.log(position?.offset, position?.epoch);

  interface Seen {
    name: string;
  }
  await client.join("room:8", { name: "ann" }, { presence: true, recover: true });
  const everyone: Member<Seen>[] = await client.presence<Seen>("room:8", { timeoutMs: 1_000 });
  console.log(everyone.map((m) => [m.clientId, m.userId, m.data?.name]));
  const known: Member<Seen>[] | null = client.members<Seen>("room:8");
  // @ts-expect-error: the members are not known while they are being listed (null)
  console.log(known.length);
  client.onPresence<Seen>(({ topic, members }) => console.log(topic, members[0]?.data?.name));
  await client.leave("room:7", { timeoutMs: 1_000 });

  const session: Session = await client.authenticate({ token: "fresh" }, { timeoutMs: 5_000 });
  console.log(session.userId, session.expiresAt);

  const topics: Record<string, unknown> = client.topics;
  const queued: number = client.queued;
  const open: boolean = client.isConnected;
  const protocol: string = client.protocol;
  console.log(sent, sum, topics, queued, open, protocol, client.state);
  // @ts-expect-error: the state is read-only
  client.state = "open";

  await client.close({ code: 4000, reason: "bye" });
  await client.close();
}

// The errors can be made (and thrown) by the application too.
const refused = JoinRefused.fromPayload("room:1", { code: "PERMISSION_DENIED", message: "no" });
const made = new WsClientError("UNAVAILABLE", "down", { retryable: true, retryAfterMs: 100 });
const parsed: WsClientError = WsClientError.fromPayload({ code: "INTERNAL" });
console.log(refused instanceof WsClientError, made.retryable, parsed.code);

// A fake socket for tests (wsFactory) needs only what the client uses.
const fake: WebSocketLike = {
  readyState: 1,
  protocol: "",
  send: (data) => console.log(data.length),
  close: () => undefined,
  addEventListener: (type, listener) => listener({ data: type }),
};
wsClient({ url: "ws://x/", wsFactory: () => fake });

// @ts-expect-error: the queue policy is one of three
wsClient({ url: "ws://x/", queue: "drop-all" });
// @ts-expect-error: a URL is required
wsClient({});
// @ts-expect-error: attach is query, protocol or message
wsClient({ url: "ws://x/", auth: { getToken: () => "t", attach: "header" } });
// @ts-expect-error: request options are checked too
client.request("ADD", {}, { timeout: 5 });

void main();
