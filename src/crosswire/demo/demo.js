// The demo chat's page: crosswire's browser client against the demo's router
// (src/crosswire/demo/__init__.py has the messages; docs/demo.md the tour).
import { JoinRefused, wsClient } from "/crosswire/client.js";

const $ = (id) => document.getElementById(id);
const name = new URLSearchParams(location.search).get("name") ?? "";
const scheme = location.protocol === "https:" ? "wss" : "ws";
const client = wsClient({
  url: `${scheme}://${location.host}/ws?name=${encodeURIComponent(name)}`,
  reconnect: { initialDelayMs: 250, maxDelayMs: 2000 },
});

const STATES = {
  connecting: "connecting…",
  open: "online",
  reconnecting: "reconnecting…",
  closing: "closing…",
  closed: "offline",
};
// The rooms joined: room -> {messages: Map(key -> message), typing: Map(name -> timer)}.
const rooms = new Map();
let current = null;
let lastTyping = 0;

// -- what the server says ----------------------------------------------------------------

client.onState((state) => {
  $("state").textContent = STATES[state] ?? state;
  $("state").className = `state ${state}`;
});
client.on("WELCOME", ({ you }) => {
  $("me").textContent = you;
});
client.on("SAID", (said, frame) => {
  addMessages(said.room, [{ ...said, offset: frame.meta.offset, epoch: frame.meta.epoch }]);
});
client.on("USER_TYPING", ({ room, from }) => showTyping(room, from));
client.onPresence(({ topic }) => {
  if (topic === `room:${current}`) renderMembers();
});
// After a reconnect the missed messages come back by themselves; when they cannot (the
// server lost its history: one process restarted), the room's last messages are reloaded.
client.onResync(({ topic }) => {
  if (topic.startsWith("room:")) {
    const room = topic.slice("room:".length);
    say(`Reconnected to ${room}; some messages may be missing.`);
    loadHistory(room);
  }
});
client.onError((error, { type, details }) => {
  if (type === "rejoin") {
    forget(details.replace(/^(room|typing):/, ""));
    say(`Left ${details}: ${error.message}`);
  } else say(error?.message ?? String(error));
});

// -- rooms -----------------------------------------------------------------------------

async function joinRoom(room) {
  $("join-error").textContent = "";
  if (rooms.has(room)) return select(room);
  try {
    await client.join(`room:${room}`, undefined, { recover: true, presence: true });
    await client.join(`typing:${room}`);
  } catch (error) {
    const why = error instanceof JoinRefused ? `${error.reason} (${error.code})` : error.message;
    $("join-error").textContent = `${room}: ${why}`;
    return;
  }
  rooms.set(room, { messages: new Map(), typing: new Map() });
  select(room);
  await loadHistory(room);
}

async function leaveRoom(room) {
  forget(room);
  await Promise.all([client.leave(`room:${room}`), client.leave(`typing:${room}`)]);
}

function forget(room) {
  rooms.delete(room);
  if (current === room) current = null;
  select(current ?? rooms.keys().next().value ?? null);
}

function select(room) {
  current = room;
  $("room-title").textContent = room ? `# ${room}` : "Join a room";
  renderRooms();
  renderMessages();
  renderMembers();
  renderTyping();
}

async function loadHistory(room) {
  try {
    const reply = await client.request("HISTORY", { room, limit: 100 });
    addMessages(room, reply.payload.messages);
  } catch (error) {
    say(`History of ${room}: ${error.message}`);
  }
}

// -- messages --------------------------------------------------------------------------

function addMessages(room, messages) {
  const kept = rooms.get(room)?.messages;
  if (!kept) return;
  for (const m of messages) {
    const key = m.epoch ? `${m.epoch}:${m.offset}` : `${m.at}:${m.from}:${m.text}`;
    kept.set(key, m);
  }
  if (room === current) renderMessages();
}

function showTyping(room, from) {
  const typing = rooms.get(room)?.typing;
  if (!typing) return;
  clearTimeout(typing.get(from));
  typing.set(from, setTimeout(() => (typing.delete(from), renderTyping()), 3000));
  renderTyping();
}

// A line from the page itself (not a message of the room).
function say(text) {
  $("notice").textContent = text;
}

// -- rendering -------------------------------------------------------------------------

function renderRooms() {
  const list = $("rooms");
  list.replaceChildren();
  for (const room of rooms.keys()) {
    const item = document.createElement("li");
    item.dataset.room = room;
    item.className = room === current ? "current" : "";
    item.textContent = `# ${room}`;
    item.addEventListener("click", () => select(room));
    const leave = document.createElement("button");
    leave.textContent = "×";
    leave.title = `leave ${room}`;
    leave.addEventListener("click", (event) => {
      event.stopPropagation();
      leaveRoom(room);
    });
    item.append(leave);
    list.append(item);
  }
}

function renderMessages() {
  const list = $("messages");
  const messages = [...(rooms.get(current)?.messages.values() ?? [])];
  messages.sort((a, b) => a.at - b.at || (a.offset ?? 0) - (b.offset ?? 0));
  list.replaceChildren(
    ...messages.map((m) => {
      const item = document.createElement("li");
      const from = Object.assign(document.createElement("span"), { className: "from", textContent: m.from });
      const at = Object.assign(document.createElement("span"), {
        className: "at",
        textContent: new Date(m.at).toLocaleTimeString(),
      });
      const text = Object.assign(document.createElement("span"), { className: "text", textContent: m.text });
      item.append(from, text, at);
      return item;
    }),
  );
  list.scrollTop = list.scrollHeight;
}

function renderMembers() {
  const members = current ? client.members(`room:${current}`) ?? [] : [];
  const names = members.map((m) => m.data?.name ?? m.clientId).sort();
  $("members").replaceChildren(...names.map((n) => Object.assign(document.createElement("li"), { textContent: n })));
  $("online-count").textContent = current ? `(${names.length})` : "";
}

function renderTyping() {
  const names = [...(rooms.get(current)?.typing.keys() ?? [])];
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

// -- the forms -------------------------------------------------------------------------

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const room = $("join-name").value.trim().toLowerCase();
  $("join-name").value = "";
  if (room) joinRoom(room);
});

$("say-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!current || !text.trim()) return;
  $("text").value = "";
  const sent = client.send("SAY", { room: current, text });
  say(sent ? "" : "Offline: the message goes out once the connection is back.");
});

$("text").addEventListener("input", () => {
  if (!current || Date.now() - lastTyping < 1500 || !client.isConnected) return;
  lastTyping = Date.now();
  client.send("TYPING", { room: current });
});

$("export-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!current) return;
  const bar = $("export-progress");
  const link = $("export-link");
  bar.hidden = false;
  bar.value = 0;
  link.hidden = true;
  $("export-status").textContent = "exporting…";
  try {
    const last = Number($("export-last").value);
    const reply = await client.request("EXPORT", { room: current, last }, {
      onProgress: ({ done, total }) => {
        bar.max = Math.max(total, 1);
        bar.value = done;
        $("export-status").textContent = `exporting… ${done} / ${total}`;
      },
    });
    URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([reply.payload.text], { type: "text/plain" }));
    link.hidden = false;
    $("export-status").textContent = `exported ${reply.payload.count} messages`;
  } catch (error) {
    $("export-status").textContent = `export failed: ${error.message}`;
  }
});

client.connect();
joinRoom("lobby");
