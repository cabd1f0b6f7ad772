#!/usr/bin/env node
// validate.mjs — validate WS-Kit wire frames with WS-Kit's own code (@ws-kit/zod 0.10.2).
// Used by tests/conformance/test_wskit.py; written from a reading of WS-Kit's published
// packages (docs/protocol.md, "What WS-Kit 0.10 does").
//
// Usage:
//   node validate.mjs < cases.jsonl          (one JSON object per input line)
//   node validate.mjs --via=router < cases.jsonl
//   node validate.mjs --self-test
//
// Input line:  {"schema": <spec>, "frame": <frame JSON or raw string>, "via"?: "client"|"router"}
// Output line: {"ok": true}  |  {"ok": false, "error": "..."}
//
// Validation paths ("via"):
//   client (default) — Schema.safeParse(frame) on the whole parsed frame. This is what
//            @ws-kit/client does for inbound frames and replies (handlers.validate /
//            RequestTracker.handleReply call schema.safeParse(msg)), and what the
//            @ws-kit/zod README shows. It is the strict view: unknown root keys fail.
//   router — the frame goes through a real router: createRouter().plugin(withZod()),
//            router.on()/router.rpc(), router.websocket.message(ws, JSON). The result
//            is ok when the handler runs, and an error when anything is reported to
//            onError (validation, reserved type, bad envelope...). This is the exact
//            server path (core/dist/engine/dispatch.js + zod/dist/plugin.js:47-118).
//            Only for client->server frames (event messages and RPC requests).
//
// Schema spec (see PROTOCOL-NOTES.md §8 for the full description):
//   {"type":"ADD_RESULT","payload":{"sum":"number"}}           -> message()
//   {"type":"PING"}  or  {"type":"PING","payload":null}         -> message() without payload
//   {"type":"M","payload":{...},"meta":{"roomId":"string","timeoutMs?":"number"}}
//   {"type":"ADD","payload":{...},"response":{"type":"ADD_RESULT","payload":{...}},
//    "part":"request"|"response"|"progress"}                   -> rpc(); default part "request"
//   {"builtin":"ERROR"|"RPC_ERROR"|"RPC_PROGRESS"|"HEARTBEAT"|"HEARTBEAT_ACK"|"ABORT", ...}
// Field kinds: "string" "number" "integer" "boolean" "any" "unknown" "null",
//   suffix "[]" = array of, suffix "|null" = nullable; a trailing "?" on the field NAME
//   marks it optional; a nested {...} is a plain z.object (NOT strict: unknown nested
//   keys are stripped, exactly what a user writing z.object gets); {"enum":[...]};
//   {"literal":v}.

import { createInterface } from "node:readline";
import { z, message, rpc, withZod, createRouter } from "@ws-kit/zod";

// ---------------------------------------------------------------- field kinds
function kindToZod(kind, where) {
  if (kind !== null && typeof kind === "object" && !Array.isArray(kind)) {
    if (Array.isArray(kind.enum)) {
      const vals = kind.enum;
      if (vals.length === 0) throw new Error(`${where}: empty enum`);
      return vals.every((v) => typeof v === "string")
        ? z.enum(vals)
        : z.union(vals.map((v) => z.literal(v)));
    }
    if ("literal" in kind) return z.literal(kind.literal);
    return z.object(shapeToZod(kind, where)); // nested: plain (non-strict) object
  }
  if (typeof kind !== "string") throw new Error(`${where}: bad field kind ${JSON.stringify(kind)}`);
  if (kind.endsWith("|null")) return kindToZod(kind.slice(0, -5), where).nullable();
  if (kind.endsWith("[]")) return z.array(kindToZod(kind.slice(0, -2), where));
  switch (kind) {
    case "string": return z.string();
    case "number": return z.number();
    case "integer": return z.number().int();
    case "boolean": return z.boolean();
    case "any": return z.any();
    case "unknown": return z.unknown();
    case "null": return z.null();
    default: throw new Error(`${where}: unknown field kind "${kind}"`);
  }
}

function shapeToZod(fields, where) {
  const shape = {};
  for (const [rawName, kind] of Object.entries(fields)) {
    const optional = rawName.endsWith("?");
    const name = optional ? rawName.slice(0, -1) : rawName;
    const t = kindToZod(kind, `${where}.${name}`);
    shape[name] = optional ? t.optional() : t;
  }
  return shape;
}

// payload spec -> argument for message()/rpc(): undefined (no payload), raw shape, or z.object
function payloadArg(spec, where) {
  if (spec.payload === undefined || spec.payload === null) return undefined;
  if (typeof spec.payload !== "object" || Array.isArray(spec.payload))
    throw new Error(`${where}.payload must be an object of fields or null`);
  const shape = shapeToZod(spec.payload, `${where}.payload`);
  // message() applies .strict() to raw shapes unconditionally; options.strict=false is only
  // honoured for a zod schema (zod/dist/runtime.js:75-81), so pass z.object in that case.
  return spec.strict === false ? z.object(shape) : shape;
}

// ---------------------------------------------------------------- builtins
// WS-Kit 0.10.x defines NO runtime schema for ERROR / RPC_ERROR / $ws:rpc-progress /
// heartbeat / $ws:abort (core/dist/error.d.ts:155-164 says the ErrorMessage schema is a
// "placeholder" for validator adapters; @ws-kit/zod defines none). These are the strictest
// schemas consistent with the code that emits/reads them; see PROTOCOL-NOTES.md §8.3.
const strictMeta = (extra = {}) =>
  z.object({ timestamp: z.number().optional(), correlationId: z.string().optional(), ...extra }).strict();

const errorPayload = z
  .object({
    code: z.string().min(1),
    message: z.string(), // always present: message || ERROR_CODE_META description || code
    details: z
      .record(z.string(), z.unknown())
      .refine((d) => Object.keys(d).length > 0, "details is omitted when empty (toPayload)")
      .optional(),
    retryable: z.boolean().optional(), // only present when ctx.error(..., {retryable}) given
    retryAfterMs: z.number().int().nonnegative().nullable().optional(),
  })
  .strict();

function builtinSchema(spec) {
  const corrRequired = spec.correlationId !== "optional";
  const corr = corrRequired ? z.string() : z.string().optional();
  switch (spec.builtin) {
    case "ERROR":
      return z.object({ type: z.literal("ERROR"), meta: strictMeta(), payload: errorPayload }).strict();
    case "RPC_ERROR":
      return z
        .object({ type: z.literal("RPC_ERROR"), meta: strictMeta({ correlationId: corr }), payload: errorPayload })
        .strict();
    case "RPC_PROGRESS": {
      // Server 0.10.x: {type:"$ws:rpc-progress", meta:{correlationId}, payload?} (plugins/dist/rpc/index.js:230-236);
      // with withZod the payload must satisfy the RPC *response* payload schema (zod/dist/plugin.js:189-227).
      // field:"data" validates the legacy/client shape instead (client requests.ts reads msg.data).
      // field:"both" is crosswire's form: the value under payload (what WS-Kit's server sends)
      // and under data (what its client reads), equal, and nothing else.
      const fields = spec.field === "both" ? ["payload", "data"] : [spec.field === "data" ? "data" : "payload"];
      const p = payloadArg(spec, "schema");
      const shape = { type: z.literal("$ws:rpc-progress"), meta: strictMeta({ correlationId: corr }) };
      const value = p === undefined ? z.unknown() : p instanceof z.ZodType ? p : z.object(p).strict();
      for (const f of fields) shape[f] = value;
      const schema = z.object(shape).strict();
      return spec.field === "both"
        ? schema.refine((m) => JSON.stringify(m.payload) === JSON.stringify(m.data), "payload and data differ")
        : schema;
    }
    case "HEARTBEAT": // client -> server; core only looks at type (core/dist/engine/dispatch.js:63)
      return z.object({ type: z.literal("__heartbeat"), meta: strictMeta().optional() }).strict();
    case "HEARTBEAT_ACK": // server -> client (core/dist/engine/dispatch.js:67-70)
      return z.object({ type: z.literal("__heartbeat_ack"), meta: z.object({ ts: z.number() }).strict() }).strict();
    case "ABORT": // documented client -> server control frame; 0.10.x server ignores it
      return z.object({ type: z.literal("$ws:abort"), meta: strictMeta({ correlationId: z.string() }) }).strict();
    default:
      throw new Error(`unknown builtin "${spec.builtin}"`);
  }
}

// ---------------------------------------------------------------- spec -> schema
function metaArg(spec, where) {
  if (!spec.meta) return undefined;
  return shapeToZod(spec.meta, `${where}.meta`);
}

function msgSpec(spec, where) {
  if (typeof spec.type !== "string") throw new Error(`${where}.type must be a string`);
  const m = { type: spec.type };
  const p = payloadArg(spec, where);
  if (p !== undefined) m.payload = p;
  const meta = metaArg(spec, where);
  if (meta) m.meta = meta;
  if (spec.strict === false) m.options = { strict: false };
  return m;
}

/** Returns {schema, kind:"event"|"rpc"|"builtin", part} */
export function buildSchema(spec) {
  if (!spec || typeof spec !== "object") throw new Error("schema spec must be an object");
  if (spec.builtin) return { schema: builtinSchema(spec), kind: "builtin", part: spec.builtin };
  if (spec.response) {
    const req = msgSpec(spec, "schema");
    const res = msgSpec(spec.response, "schema.response");
    if (spec.meta) throw new Error("rpc(): WS-Kit's rpc() does not accept extended meta for the request");
    // rpc() object form: {req:{type,payload,options}, res:{type,payload,options}} (zod/dist/runtime.js:409-465)
    const Rpc = rpc({ req, res });
    const part = spec.part ?? "request";
    if (part === "request") return { schema: Rpc, kind: "rpc", part };
    if (part === "response") return { schema: Rpc.response, kind: "event", part };
    if (part === "progress") {
      return {
        schema: builtinSchema({ builtin: "RPC_PROGRESS", payload: spec.response.payload, strict: spec.response.strict }),
        kind: "builtin",
        part,
      };
    }
    throw new Error(`unknown part "${part}"`);
  }
  const m = msgSpec(spec, "schema");
  return { schema: message(m), kind: "event", part: "message" };
}

// ---------------------------------------------------------------- error formatting
// Same formatting as @ws-kit/zod's router (zod/dist/plugin.js:12-22).
function formatZodError(error) {
  if (error?.flatten) {
    const flat = error.flatten();
    const issues = [
      ...(flat.formErrors || []),
      ...Object.entries(flat.fieldErrors || {}).flatMap(([f, msgs]) => (msgs || []).map((m) => `${f}: ${m}`)),
    ];
    return issues.length > 0 ? issues.join("; ") : JSON.stringify(error);
  }
  return JSON.stringify(error);
}

// ---------------------------------------------------------------- validation paths
function viaClient(schema, frame) {
  if (typeof frame === "string") {
    try { frame = JSON.parse(frame); } catch (e) { return { ok: false, error: `Invalid JSON: ${e.message}` }; }
  }
  const r = schema.safeParse(frame);
  return r.success ? { ok: true } : { ok: false, error: formatZodError(r.error) };
}

async function viaRouter(built, frame) {
  if (built.kind !== "event" && built.kind !== "rpc")
    throw new Error(`via=router only validates client->server frames (event message or rpc request), not "${built.part}"`);
  const router = createRouter({ warnIncompleteRpc: false }).plugin(withZod());
  const errors = [];
  let handled = false;
  router.onError((err) => { errors.push(err instanceof Error ? err.message : String(err)); });
  const handler = () => { handled = true; };
  if (built.kind === "rpc") router.rpc(built.schema, handler);
  else router.on(built.schema, handler);
  const ws = { send() {}, close() {} };
  await router.websocket.open(ws);
  await router.websocket.message(ws, typeof frame === "string" ? frame : JSON.stringify(frame));
  await router.websocket.close(ws, 1000, "");
  if (errors.length > 0) return { ok: false, error: errors.join("; ") };
  if (!handled) return { ok: false, error: "handler not invoked (frame consumed by the router, e.g. __heartbeat)" };
  return { ok: true };
}

export async function validateLine(obj, defaultVia = "client") {
  const via = obj.via ?? defaultVia;
  const built = buildSchema(obj.schema);
  if (via === "client") return viaClient(built.schema, obj.frame);
  if (via === "router") return viaRouter(built, obj.frame);
  throw new Error(`unknown via "${via}"`);
}

// ---------------------------------------------------------------- self-test
const ADD = { type: "ADD", payload: { a: "number", b: "number" }, response: { type: "ADD_RESULT", payload: { sum: "number" } } };
const SELF_TESTS = [
  // [label, line, expectOk]
  ["good reply frame", { schema: { type: "ADD_RESULT", payload: { sum: "number" } }, frame: { type: "ADD_RESULT", meta: { correlationId: "c1" }, payload: { sum: 3 } } }, true],
  ["missing meta accepted (meta defaults to {})", { schema: { type: "ADD_RESULT", payload: { sum: "number" } }, frame: { type: "ADD_RESULT", payload: { sum: 3 } } }, true],
  ["extra root key rejected (client path)", { schema: { type: "ADD_RESULT", payload: { sum: "number" } }, frame: { type: "ADD_RESULT", meta: {}, payload: { sum: 3 }, topic: "x" } }, false],
  ["unknown meta key rejected", { schema: { type: "ADD_RESULT", payload: { sum: "number" } }, frame: { type: "ADD_RESULT", meta: { foo: 1 }, payload: { sum: 3 } } }, false],
  ["meta.timeoutMs rejected unless schema extends meta", { schema: { ...ADD }, frame: { type: "ADD", meta: { correlationId: "c", timeoutMs: 1000 }, payload: { a: 1, b: 2 } } }, false],
  ["meta.timeoutMs accepted with meta extension", { schema: { type: "ADD", payload: { a: "number", b: "number" }, meta: { "timeoutMs?": "number" } }, frame: { type: "ADD", meta: { timeoutMs: 1000 }, payload: { a: 1, b: 2 } } }, true],
  ["wrong payload type rejected", { schema: { type: "ADD_RESULT", payload: { sum: "number" } }, frame: { type: "ADD_RESULT", meta: {}, payload: { sum: "3" } } }, false],
  ["unknown payload key rejected", { schema: { type: "ADD_RESULT", payload: { sum: "number" } }, frame: { type: "ADD_RESULT", payload: { sum: 3, x: 1 } } }, false],
  ["integer kind rejects 1.5", { schema: { type: "N", payload: { n: "integer" } }, frame: { type: "N", payload: { n: 1.5 } } }, false],
  ["optional field may be omitted", { schema: { type: "N", payload: { "n?": "integer" } }, frame: { type: "N", payload: {} } }, true],
  ["no-payload schema rejects payload key", { schema: { type: "PING", payload: null }, frame: { type: "PING", payload: {} } }, false],
  ["no-payload schema accepts bare frame", { schema: { type: "PING" }, frame: { type: "PING" } }, true],
  ["wrong type literal rejected", { schema: { type: "PING" }, frame: { type: "PONG" } }, false],
  ["meta:null rejected by client path", { schema: { type: "PING" }, frame: { type: "PING", meta: null } }, false],
  ["clientId in meta rejected (not stripped)", { schema: { type: "PING" }, frame: { type: "PING", meta: { clientId: "x" } } }, false],
  ["rpc request ok", { schema: { ...ADD }, frame: { type: "ADD", meta: { correlationId: "c" }, payload: { a: 1, b: 2 } } }, true],
  ["rpc response part ok", { schema: { ...ADD, part: "response" }, frame: { type: "ADD_RESULT", meta: { correlationId: "c" }, payload: { sum: 3 } } }, true],
  ["progress (payload form) ok", { schema: { ...ADD, part: "progress" }, frame: { type: "$ws:rpc-progress", meta: { correlationId: "c" }, payload: { sum: 1 } } }, true],
  ["progress with data key rejected", { schema: { ...ADD, part: "progress" }, frame: { type: "$ws:rpc-progress", meta: { correlationId: "c" }, data: { sum: 1 } } }, false],
  ["progress legacy data form ok (field:data)", { schema: { builtin: "RPC_PROGRESS", field: "data", payload: { sum: "number" } }, frame: { type: "$ws:rpc-progress", meta: { correlationId: "c" }, data: { sum: 1 } } }, true],
  ["progress in crosswire's form (payload and data) ok", { schema: { builtin: "RPC_PROGRESS", field: "both", payload: { n: "integer" } }, frame: { type: "$ws:rpc-progress", meta: { correlationId: "c" }, payload: { n: 1 }, data: { n: 1 } } }, true],
  ["progress with payload and data that differ rejected", { schema: { builtin: "RPC_PROGRESS", field: "both" }, frame: { type: "$ws:rpc-progress", meta: { correlationId: "c" }, payload: { n: 1 }, data: { n: 2 } } }, false],
  ["progress without correlationId rejected", { schema: { ...ADD, part: "progress" }, frame: { type: "$ws:rpc-progress", meta: {}, payload: { sum: 1 } } }, false],
  ["RPC_ERROR ok", { schema: { builtin: "RPC_ERROR" }, frame: { type: "RPC_ERROR", meta: { correlationId: "c" }, payload: { code: "RESOURCE_EXHAUSTED", message: "Rate limit, quota, or buffer overflow", retryAfterMs: 100 } } }, true],
  ["RPC_ERROR retryAfterMs null ok", { schema: { builtin: "RPC_ERROR" }, frame: { type: "RPC_ERROR", meta: { correlationId: "c" }, payload: { code: "UNAVAILABLE", message: "down", retryAfterMs: null, retryable: false } } }, true],
  ["RPC_ERROR without correlationId rejected", { schema: { builtin: "RPC_ERROR" }, frame: { type: "RPC_ERROR", meta: {}, payload: { code: "X", message: "X" } } }, false],
  ["ERROR with correlationId inside payload rejected", { schema: { builtin: "ERROR" }, frame: { type: "ERROR", meta: {}, payload: { code: "X", message: "X", correlationId: "c" } } }, false],
  ["ERROR with empty details rejected", { schema: { builtin: "ERROR" }, frame: { type: "ERROR", meta: {}, payload: { code: "X", message: "X", details: {} } } }, false],
  ["ERROR ok", { schema: { builtin: "ERROR" }, frame: { type: "ERROR", meta: {}, payload: { code: "NOT_FOUND", message: "nf", details: { id: 1 } } } }, true],
  ["heartbeat ack ok", { schema: { builtin: "HEARTBEAT_ACK" }, frame: { type: "__heartbeat_ack", meta: { ts: 1 } } }, true],
  ["abort ok", { schema: { builtin: "ABORT" }, frame: { type: "$ws:abort", meta: { correlationId: "c" } } }, true],
  // real router path (server view of client->server frames)
  ["router: rpc request ok", { via: "router", schema: { ...ADD }, frame: { type: "ADD", meta: { correlationId: "c" }, payload: { a: 1, b: 2 } } }, true],
  ["router: extra root key IGNORED (accepted)", { via: "router", schema: { ...ADD }, frame: { type: "ADD", payload: { a: 1, b: 2 }, topic: "x" } }, true],
  ["router: meta:null accepted (normalized to {})", { via: "router", schema: { type: "PING" }, frame: { type: "PING", meta: null } }, true],
  ["router: unknown meta key rejected", { via: "router", schema: { type: "PING" }, frame: { type: "PING", meta: { foo: 1 } } }, false],
  ["router: meta.timeoutMs rejected", { via: "router", schema: { ...ADD }, frame: { type: "ADD", meta: { timeoutMs: 5 }, payload: { a: 1, b: 2 } } }, false],
  ["router: wrong payload type rejected", { via: "router", schema: { ...ADD }, frame: { type: "ADD", payload: { a: "1", b: 2 } } }, false],
  ["router: payload on no-payload schema rejected", { via: "router", schema: { type: "PING" }, frame: { type: "PING", payload: null } }, false],
  ["router: invalid JSON rejected", { via: "router", schema: { type: "PING" }, frame: "{nope" }, false],
];

async function selfTest() {
  let failed = 0;
  for (const [label, line, expectOk] of SELF_TESTS) {
    let res;
    try { res = await validateLine(line); } catch (e) { res = { ok: false, error: `EXCEPTION ${e.message}` }; }
    const pass = res.ok === expectOk && !(res.error ?? "").startsWith("EXCEPTION");
    if (!pass) failed++;
    console.log(`${pass ? "PASS" : "FAIL"} ${label} -> ${JSON.stringify(res)}`);
  }
  // Builder guard rails that come from WS-Kit itself
  for (const [label, fn] of [
    ["message() rejects $ws: type", () => buildSchema({ type: "$ws:x" })],
    ["message() rejects reserved meta key clientId", () => buildSchema({ type: "X", meta: { clientId: "string" } })],
  ]) {
    let threw = false;
    try { fn(); } catch { threw = true; }
    if (!threw) failed++;
    console.log(`${threw ? "PASS" : "FAIL"} ${label}`);
  }
  console.log(failed === 0 ? `ALL ${SELF_TESTS.length + 2} PASSED` : `${failed} FAILED`);
  process.exitCode = failed === 0 ? 0 : 1;
}

// ---------------------------------------------------------------- main
async function main() {
  const args = process.argv.slice(2);
  if (args.includes("--self-test")) return selfTest();
  const viaArg = args.find((a) => a.startsWith("--via="));
  const defaultVia = viaArg ? viaArg.slice(6) : "client";
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const raw of rl) {
    const line = raw.trim();
    if (!line) continue;
    let out;
    try {
      out = await validateLine(JSON.parse(line), defaultVia);
    } catch (e) {
      out = { ok: false, error: `bad input line: ${e instanceof Error ? e.message : String(e)}` };
    }
    process.stdout.write(JSON.stringify(out) + "\n");
  }
}

main();
