// Type declarations for crosswire's browser client (client.js next to this file): one
// zero-dependency ES module for the canonical dialect. docs/client.md, "In the browser".
//
// The declarations need no DOM library: the WebSocket and the AbortSignal the client takes
// are described by the little it uses of them (WebSocketLike, AbortSignalLike), which the
// browser's (and Node's) WebSocket and AbortSignal satisfy.
//
//   import { wsClient, type Frame } from "crosswire-client";
//   const client = wsClient({ url: "ws://127.0.0.1:8000/" });
//   client.on<{ text: string }>("ECHO", (payload) => console.log(payload.text));
//   await client.connect();
//   const reply = await client.request<{ sum: number }>("ADD", { a: 1, b: 2 });
//   reply.payload.sum; // number

/** crosswire's 13 error codes (gRPC's); another server (WS-Kit) may send others. */
export type ErrorCode =
  | "UNAUTHENTICATED"
  | "PERMISSION_DENIED"
  | "INVALID_ARGUMENT"
  | "FAILED_PRECONDITION"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "CANCELLED"
  | "ABORTED"
  | "DEADLINE_EXCEEDED"
  | "RESOURCE_EXHAUSTED"
  | "UNAVAILABLE"
  | "UNIMPLEMENTED"
  | "INTERNAL";

/** The options of a WsClientError beyond its code and message. */
export interface WsClientErrorOptions {
  /** The server's details (any JSON value it sent; usually an object). */
  details?: unknown;
  /** Whether trying again may help; inferred from the code when not given. */
  retryable?: boolean;
  /** The server's hint of how long to wait before trying again. */
  retryAfterMs?: number;
}

/** An error the server sent (ERROR / RPC_ERROR), or one the client raised for a request. */
export declare class WsClientError extends Error {
  constructor(code: string, message?: string, options?: WsClientErrorOptions);
  /** The error's code: one of ErrorCode from a crosswire server, the server's otherwise. */
  code: ErrorCode | (string & {});
  details: unknown;
  /**
   * The server's, or inferred from the code when it sent none (ABORTED, DEADLINE_EXCEEDED,
   * RESOURCE_EXHAUSTED and UNAVAILABLE are).
   */
  retryable: boolean;
  retryAfterMs: number | undefined;
  /** The error an ERROR / RPC_ERROR payload ({code, message, details, ...}) describes. */
  static fromPayload(payload: unknown): WsClientError;
}

/** The server refused to join `topic`: `code` and `reason` (= `message`) are the server's. */
export declare class JoinRefused extends WsClientError {
  constructor(topic: string, code: string, reason?: string, options?: WsClientErrorOptions);
  /** The topic the server refused. */
  topic: string;
  /** The server's reason: the same as `message`. */
  readonly reason: string;
  static fromPayload(topic: string, payload?: unknown): JoinRefused;
}

/** The client's connection: `closed` at first, and once closed or given up. */
export type ConnectionState = "closed" | "connecting" | "open" | "closing" | "reconnecting";

/** The frame's meta, as the server sent it (the keys below are those crosswire sets). */
export interface Meta {
  /** The request this frame answers. */
  correlationId?: string;
  /** The server's id of this connection. */
  clientId?: string;
  /** When the server received the frame (ms since the epoch). */
  receivedAt?: number;
  /** The topic an event was published to. */
  topic?: string;
  /** The event's position in its topic's history (topics joined with `recover`). */
  offset?: number;
  epoch?: string;
  [key: string]: unknown;
}

/**
 * A message as handlers and requests get it. `T` is what you know the payload to be: the
 * client does not check it (schemas stay on the server).
 */
export interface Frame<T = unknown> {
  type: string;
  meta: Meta;
  payload: T;
}

/** A parsed message no handler or request took, as it came (onUnhandled). */
export interface RawFrame {
  type: string;
  meta?: unknown;
  payload?: unknown;
  [key: string]: unknown;
}

/** A topic's last position seen ({offset, epoch}): client.position(topic). */
export interface Position {
  offset: number;
  epoch: string;
}

/** What onResync listeners get: `data` is the rejoin's ack data (undefined when none). */
export interface Resync<T = unknown> {
  topic: string;
  data: T | undefined;
}

/** What the server's $ws:authenticated said: `expiresAt` in ms since the epoch, or null. */
export interface Session {
  userId: string | null;
  expiresAt: number | null;
}

/**
 * The second argument of onError listeners: what went wrong, by `type`, with its `details`.
 * - `parse`: a text frame that is not a canonical message (`details`: what came);
 * - `server`: an ERROR frame (the error: a WsClientError; `details`: the frame);
 * - `overflow`: a frame dropped by the offline queue (`details`: its text);
 * - `rejoin`: a topic refused after a reconnect (the error: a JoinRefused; `details`: the
 *   topic, which the client forgot);
 * - `handler`: a handler, listener or onProgress threw or rejected (the error: what it threw);
 * - `presence`: the members of a topic joined with presence could not be listed (`details`:
 *   the topic);
 * - `auth`: an in-band token refused, or a refresh that failed;
 * - `unknown`: a getToken that threw (the error: what it threw).
 */
export type ErrorContext =
  | { type: "parse"; details: unknown }
  | { type: "server"; details: RawFrame }
  | { type: "overflow"; details: string }
  | { type: "rejoin" | "presence"; details: string }
  | { type: "handler" | "auth" | "unknown"; details: undefined };

/** The context types of onError. */
export type ErrorType = ErrorContext["type"];

/** A member of a topic that keeps presence: its connection, its user, what it said of itself. */
export interface Member<T = unknown> {
  clientId: string;
  userId: string | null;
  data: T | null;
}

/** What onPresence listeners get: every member of `topic` now. */
export interface PresenceChange<T = unknown> {
  topic: string;
  members: Member<T>[];
}

/** Call it to unregister the handler or listener. */
export type Unsubscribe = () => void;

/** Reconnection with backoff: the wait doubles from initialDelayMs up to maxDelayMs. */
export interface ReconnectOptions {
  /** Default true. */
  enabled?: boolean;
  /** How many times in a row to try again after a failure (default Infinity; 0: never). */
  maxAttempts?: number;
  /** Default 300. */
  initialDelayMs?: number;
  /** Default 10000. */
  maxDelayMs?: number;
  /** "full" (the default): a random part of the wait; "none": all of it. */
  jitter?: "full" | "none";
}

/** A token on every connection attempt (and, attached "message", on the connection). */
export interface AuthOptions {
  /** Called before every attempt (and each in-band refresh); null or "" sends none. */
  getToken: () => string | null | undefined | PromiseLike<string | null | undefined>;
  /**
   * "query" (the default): `?access_token=<token>` (queryParam); "protocol": the subprotocol
   * `bearer.<token>` (protocolPrefix); "message": `$ws:authenticate` with `{token}` once
   * open, for a server with router.authenticate, refreshed before the session expires.
   */
  attach?: "query" | "protocol" | "message";
  /** Default "access_token". */
  queryParam?: string;
  /** Default "bearer.". */
  protocolPrefix?: string;
  /** After the client's own subprotocols ("append", the default) or before them. */
  protocolPosition?: "append" | "prepend";
  /** How long before an in-band session expires it is refreshed (default 30000). */
  refreshBeforeMs?: number;
}

/** The little of an AbortSignal the client uses (the DOM's and Node's fit). */
export interface AbortSignalLike {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/** The little of a WebSocket the client uses (the DOM's and Node's fit): for wsFactory. */
export interface WebSocketLike {
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number;
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(
    type: "open" | "error" | "message" | "close",
    listener: (event: { data?: unknown; code?: number; reason?: string }) => void,
    options?: { once?: boolean },
  ): void;
}

/** What wsClient takes: only `url` is required. */
export interface WsClientOptions {
  /** ws:// or wss:// (or relative to the page, in a browser); a URL will do. */
  url: string | { readonly href: string; toString(): string };
  /** Subprotocols to offer (default none). */
  protocols?: string | Iterable<string>;
  /** Default: enabled, forever, from 300 ms to 10 s, full jitter. */
  reconnect?: ReconnectOptions;
  /** When the offline queue is full: drop the new frame (the default), the oldest, or never queue. */
  queue?: "drop-newest" | "drop-oldest" | "off";
  /** Frames the offline queue holds (default 1000; an integer >= 1). */
  queueSize?: number;
  /** Requests (and joins, leaves) that may wait at once (default 1000; an integer >= 1). */
  pendingRequestsLimit?: number;
  /** A token on every attempt (default none). */
  auth?: AuthOptions | null;
  /** Bounds each connection attempt (default 10000). */
  connectTimeoutMs?: number;
  /** Bounds close() (default 5000). */
  closeTimeoutMs?: number;
  /** Send meta.timeoutMs with requests (default true; WS-Kit 0.10 servers refuse the key). */
  sendDeadline?: boolean;
  /** Makes the socket of each attempt (default `new WebSocket(url, protocols)`): for tests. */
  wsFactory?: (url: string, protocols: string[] | undefined) => WebSocketLike;
}

/** The options of close(): `code` must be 1000 or 3000-4999 (what browsers allow). */
export interface CloseOptions {
  code?: number;
  reason?: string;
}

/** The options of send(). */
export interface SendOptions {
  /** Extra meta (clientId and receivedAt are dropped: the server stamps those). */
  meta?: Record<string, unknown>;
}

/** The options of request(). */
export interface RequestOptions<Progress = unknown> {
  /** The deadline, in ms (default 30000, at most a day); sent to the server as meta.timeoutMs. */
  timeoutMs?: number;
  /** Aborting it rejects with CANCELLED and sends $ws:abort when the request went out. */
  signal?: AbortSignalLike;
  /** Called with the value of each progress frame ($ws:rpc-progress). */
  onProgress?: (value: Progress) => void | PromiseLike<void>;
  /** Default `c1`, `c2`, ...; one already pending is refused. */
  correlationId?: string;
  /** Extra meta (clientId and receivedAt are dropped: the server stamps those). */
  meta?: Record<string, unknown>;
}

/** The options of join(). */
export interface JoinOptions {
  /** Default 30000. */
  timeoutMs?: number;
  /** Keep the topic's position and recover the events missed across reconnects. */
  recover?: boolean;
  /** Keep the list of the topic's members, live (members(), onPresence). */
  presence?: boolean;
}

/** The options of leave() and authenticate(). */
export interface TimeoutOptions {
  /** Default 30000. */
  timeoutMs?: number;
}

/** A client: wsClient(options). One connection, kept open (reconnecting) until close(). */
export interface WsClient {
  /** closed (initially), connecting, open, closing or reconnecting. */
  readonly state: ConnectionState;
  /** The subprotocol the server chose ("" when none). */
  readonly protocol: string;
  /** state === "open". */
  readonly isConnected: boolean;
  /** How many frames wait for a connection. */
  readonly queued: number;
  /** The topics joined (and not left), each with the data it was joined with (a copy). */
  readonly topics: Record<string, unknown>;

  /** Connect and stay connected (reconnecting) until close(). Resolves once open. */
  connect(): Promise<void>;
  /** Resolves on the next open (at once if open); rejects if the client gives up first. */
  onceOpen(): Promise<void>;
  /**
   * Close and stop reconnecting; resolves once closed (at most closeTimeoutMs). Pending
   * requests, joins and leaves fail with CANCELLED, and the joined topics are forgotten.
   * Throws a RangeError for a code other than 1000 or 3000-4999.
   */
  close(options?: CloseOptions): Promise<void>;

  /**
   * Send an event. True if written now, false if queued or dropped (onError gets an
   * `overflow`). Throws a WsClientError UNAVAILABLE once the client is closed or gave up.
   */
  send<Payload = unknown>(type: string, payload?: Payload, options?: SendOptions): boolean;
  /**
   * Call an RPC; resolves with the reply frame. `Res` is the reply's payload, `Progress`
   * the value of its progress frames. Rejects with a WsClientError: the server's
   * RPC_ERROR, DEADLINE_EXCEEDED, CANCELLED (aborted, or closed), UNAVAILABLE (lost, or
   * not queued), RESOURCE_EXHAUSTED (pendingRequestsLimit).
   */
  request<Res = unknown, Req = unknown, Progress = unknown>(
    type: string,
    payload?: Req,
    options?: RequestOptions<Progress>,
  ): Promise<Frame<Res>>;
  /**
   * Send `credentials` in band ($ws:authenticate) on the open connection, for a server
   * with router.authenticate. Rejects with the server's UNAUTHENTICATED, DEADLINE_EXCEEDED,
   * or UNAVAILABLE when not open (credentials are never queued).
   */
  authenticate(credentials: unknown, options?: TimeoutOptions): Promise<Session>;

  /**
   * Join `topic` with `data` (the join handler's ctx.payload); resolves with the data of
   * the server's ack (`Ack`; undefined when none), rejects with a JoinRefused, or a
   * WsClientError as request does. Joined again, with the same data, after each reconnect.
   */
  join<Ack = unknown, Data = unknown>(
    topic: string,
    data?: Data,
    options?: JoinOptions,
  ): Promise<Ack | undefined>;
  /** Leave `topic`: forgotten at once; resolves once the server acknowledged it. */
  leave(topic: string, options?: TimeoutOptions): Promise<void>;
  /** The last position seen of a topic joined with `recover: true`, or null. */
  position(topic: string): Position | null;
  /**
   * Who is in `topic` now, on every instance. Rejects with PERMISSION_DENIED for a
   * topic the client is not in, FAILED_PRECONDITION for one that keeps no presence.
   */
  presence<T = unknown>(topic: string, options?: TimeoutOptions): Promise<Member<T>[]>;
  /** The members of a topic joined with `presence: true` (a copy), or null while not known. */
  members<T = unknown>(topic: string): Member<T>[] | null;
  /**
   * listener({topic, members}) whenever the members of a topic joined with `presence: true`
   * change: once listed after each (re)join, then on every join and leave.
   */
  onPresence<T = unknown>(listener: (change: PresenceChange<T>) => void | PromiseLike<void>): Unsubscribe;

  /**
   * handler(payload, frame) for each message of `type` (one handler per type: a second
   * throws). `T` is what you know the payload to be. A handler that throws, or rejects,
   * is reported to onError (type `handler`).
   */
  on<T = unknown>(
    type: string,
    handler: (payload: T, frame: Frame<T>) => void | PromiseLike<void>,
  ): Unsubscribe;
  /** listener(state) on every change of `state`. */
  onState(listener: (state: ConnectionState) => void): Unsubscribe;
  /**
   * listener(error, {type, details}) for what cannot be raised to a caller (ErrorContext
   * says which error comes with which type: narrow it with instanceof, as what a handler
   * throws can be anything). Without listeners, these are logged (console.warn).
   */
  onError(listener: (error: unknown, context: ErrorContext) => void): Unsubscribe;
  /** listener(frame) for the messages no handler or request takes (late replies too). */
  onUnhandled(listener: (frame: RawFrame) => void | PromiseLike<void>): Unsubscribe;
  /**
   * listener({topic, data}) when a topic joined with recover was joined again without the
   * events missed meanwhile: reload its state. Without listeners, it is logged.
   */
  onResync<T = unknown>(listener: (resync: Resync<T>) => void | PromiseLike<void>): Unsubscribe;
}

/** Create a client; nothing happens until connect() (or send/request/join, which queue). */
export declare function wsClient(options: WsClientOptions): WsClient;
