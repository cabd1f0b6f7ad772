// A typed client over the types `crosswire types tests.apps.typed:app` writes (as types.ts,
// next to this file): tests/integration/test_typescript_types.py compiles it with
// `tsc --noEmit --strict`. It declares its own minimal wrapper (it does not use client.d.ts).
// Each `@ts-expect-error` line must be an error, or tsc fails; the test also removes the
// marker of the line tagged WRONG-FIELD-TYPE and checks that tsc then fails there.

import type { Address, Color, Messages, Move, Pos, Rpcs, Topics } from "./types";

interface TypedClient {
  send<K extends keyof Messages>(type: K, payload: Messages[K]): void;
  on<K extends keyof Messages>(type: K, handler: (payload: Messages[K]) => void): void;
  request<K extends keyof Rpcs>(type: K, payload: Rpcs[K]["request"]): Promise<Rpcs[K]["response"]>;
  join<K extends keyof Topics>(topic: K, data: Topics[K]): Promise<void>;
}

declare const client: TypedClient;

// Messages: a {"field": type} mapping, a msgspec Struct, no payload.
client.send("chat", { text: "hi" });
client.send("chat", { text: "hi", room: null });
client.send("chat", { text: "hi", room: "lobby" });
const pos: Pos = { x: 1, y: 2.5 };
const move: Move = {
  name: "ada",
  pos,
  path: [pos, { x: 0, y: 0 }],
  mode: "run",
  color: "red",
  scores: { a: 1 },
  pair: [1, "one"],
};
client.send("MOVE", move);
client.send("PING", undefined);
client.on("MOVE", (payload) => {
  const mode: "walk" | "run" = payload.mode;
  const note: string | null | undefined = payload.note;
  const x: number = payload.path[0]!.x;
  const color: Color = payload.color;
  void [mode, note, x, color];
});

// RPCs: requests and responses (a mapping, a Struct, pydantic models).
async function rpcs(): Promise<number> {
  const added = await client.request("ADD", { a: 1, b: 2 });
  const where = await client.request("LOCATE", { name: "ada" });
  const saved = await client.request("SAVE", {
    userName: "ada",
    address: { city: "Paris" },
    id: "u1",
  });
  const kind: Rpcs["SAVE"]["responseType"] = "SAVED";
  void kind;
  return added.sum + where.x + saved.version + (saved.ok ? 1 : 0);
}
void rpcs;

// Topics: join data from a mapping, a pydantic model, or none.
const home: Address = { city: "Lyon", zip: null };
void client.join("room:{id}", { name: "ada", seat: 3 });
void client.join("team:{team}", home);
void client.join("lobby", undefined);

// What the types refuse.
// @ts-expect-error WRONG-FIELD-TYPE: a = a string where the schema says an integer
void client.request("ADD", { a: "1", b: 2 });
// @ts-expect-error a required field missing (text)
client.send("chat", { room: "lobby" });
// @ts-expect-error a message type no router handles
client.send("NOPE", {});
// @ts-expect-error a value outside a Literal
client.send("MOVE", { ...move, mode: "fly" });
// @ts-expect-error a value outside an enum
client.send("MOVE", { ...move, color: "green" });
// @ts-expect-error a nested Struct's field of the wrong type
client.send("MOVE", { ...move, pos: { x: "1", y: 2 } });
// @ts-expect-error a tuple of the wrong shape
client.send("MOVE", { ...move, pair: ["one", 1] });
// @ts-expect-error a pydantic field by its Python name, not its alias
void client.request("SAVE", { user_name: "ada", address: { city: "Paris" }, id: 1 });
// @ts-expect-error a union's member it does not have
void client.request("SAVE", { userName: "ada", address: { city: "Paris" }, id: true });
// @ts-expect-error a payload where there is none
client.send("PING", { now: 1 });
// @ts-expect-error a response field that is not there
void client.request("ADD", { a: 1, b: 2 }).then((r) => r.total);
// @ts-expect-error join data of the wrong type
void client.join("room:{id}", { name: 1 });
