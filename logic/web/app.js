// Courier's web chat: plain JavaScript, no dependencies, no build step.
//
// It logs in over logic's HTTP API, then talks to a comet over WebSocket in
// the `courier.json` subprotocol: one Frame per text message, in proto3's
// canonical JSON mapping (bytes as base64, 64-bit integers as strings).
// It keeps, for the inbox and each room, the last seq and epoch it showed,
// so after a reconnect (with backoff, to any comet) Auth and Join resume
// from there and nothing sent meanwhile is missed. Scrolled to the top, a
// conversation reads older messages back from the store, a page at a time.
"use strict";

const API = "/api/v1";
const SUBPROTOCOL = "courier.json";
const OP_CHAT = 1;
const SYNC_PAGE = 100;
// Older messages asked for per page when scrolling back.
const HISTORY_PAGE = 50;
// Pages read back on their own while the view still shows its top (a
// short conversation, or an inbox page with nothing for this one), before
// the reader scrolls up or asks again.
const AUTO_PAGES = 4;
// Lines a conversation holds before it stops reading further back.
const MAX_LINES = 5000;
// How close to the top (px) counts as scrolled to the top.
const TOP_PX = 48;

const state = {
  uid: "",
  token: "",
  comets: [],
  socket: null,
  cometId: "",
  heartbeat: null,
  nextId: 1,
  backoffMs: 0,
  stopped: false,
  // Stream positions: "" is the inbox, else a room name.
  positions: new Map(),
  rooms: new Set(),
  people: new Set(),
  seen: new Set(),
  // The newest shown messages per stream (seq -> msgId, at most
  // REMEMBERED), to tell a seq the server handed out again from a repeat.
  shownIds: new Map(),
  // Where we stood when we last asked for a stream's page (seq): a page
  // read after that with a head behind it means the server lost messages.
  asked: new Map(),
  conversations: new Map(), // key -> [{from, text, at, notice}]
  current: "pushes",
  unread: new Set(),
  away: 0,
  // Reading back, per stream: {oldest: {seq, epoch} | null, loading: frame
  // id | "", end: "" | "start" | "gap" | "limit" | "failed"}.
  history: new Map(),
  historyIds: new Map(), // frame id of a Sync paging back -> its stream
  autoPages: 0,
  lastScrollTop: 0,
};

const $ = (id) => document.getElementById(id);

const REMEMBERED = 64;
const LOST_NOTICE = "The server lost its newest messages; showing what it has now";

function setStatus(text) {
  $("status").textContent = text;
}

// Sending needs a live connection: the button says so while there is none.
function setConnected(connected) {
  $("send").disabled = !connected;
}

// ---- HTTP ----

async function api(path, body, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(API + path, {
    method: body === undefined ? "GET" : "POST",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : {};
  if (!response.ok) {
    const message = json.error ? json.error.message : response.statusText;
    throw new Error(message);
  }
  return json;
}

async function signIn(register) {
  const username = $("username").value.trim();
  const password = $("password").value;
  $("signin-error").textContent = "";
  try {
    if (register) await api("/users", { username, password });
    const reply = await api("/login", { username, password });
    state.uid = reply.uid;
    state.token = reply.token;
    state.comets = reply.comets.filter((c) => c.ws);
    $("signin").hidden = true;
    $("chat").hidden = false;
    select("pushes");
    connect();
  } catch (e) {
    $("signin-error").textContent = e.message;
  }
}

// ---- Frames ----

function utf8ToBase64(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function base64ToUtf8(data) {
  if (!data) return "";
  const binary = atob(data);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

function send(body) {
  const id = state.nextId++;
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify({ id: String(id), ...body }));
  }
  return id;
}

function position(stream) {
  return state.positions.get(stream) || { seq: 0, epoch: 0 };
}

// ---- Connection ----

function connect() {
  if (state.stopped) return;
  if (state.comets.length === 0) {
    setStatus("No comet serves WebSocket");
    return;
  }
  const comet = state.comets[Math.floor(Math.random() * state.comets.length)];
  state.cometId = comet.id;
  setStatus(`Connecting to ${comet.id}…`);
  const socket = new WebSocket(comet.ws, SUBPROTOCOL);
  state.socket = socket;
  socket.onopen = () => {
    const inbox = position("");
    send({
      auth: {
        token: state.token,
        lastSeq: String(inbox.seq),
        epoch: String(inbox.epoch),
        rooms: [],
      },
    });
  };
  socket.onmessage = (event) => {
    try {
      onFrame(JSON.parse(event.data));
    } catch (e) {
      console.error("bad frame", e);
    }
  };
  socket.onclose = () => {
    clearInterval(state.heartbeat);
    setConnected(false);
    // Pages asked for on this connection will not come: ask again later.
    state.historyIds.clear();
    for (const h of state.history.values()) h.loading = "";
    renderEdge();
    if (state.socket !== socket || state.stopped) return;
    state.socket = null;
    reconnectLater();
  };
}

function reconnectLater(afterMs) {
  setConnected(false);
  state.backoffMs = Math.min(Math.max(state.backoffMs * 2, 500), 15000);
  const wait = afterMs !== undefined ? afterMs : state.backoffMs * (0.5 + Math.random() / 2);
  setStatus(`Disconnected; reconnecting in ${(wait / 1000).toFixed(1)} s`);
  setTimeout(async () => {
    try {
      // `/nodes` answers an array of comets, best first.
      const nodes = await api("/nodes", undefined, state.token);
      const comets = (Array.isArray(nodes) ? nodes : []).filter(
        (c) => c.ws && c.state !== "draining",
      );
      if (comets.length) state.comets = comets;
    } catch (e) {
      // Keep the comets we knew.
    }
    connect();
  }, wait);
}

function onFrame(frame) {
  if (frame.authReply) {
    const reply = frame.authReply;
    state.backoffMs = 0;
    setConnected(true);
    setStatus(`Connected to ${state.cometId} as ${reply.uid}`);
    const every = (reply.heartbeatSecs || 30) * 1000;
    clearInterval(state.heartbeat);
    state.heartbeat = setInterval(() => send({ heartbeat: {} }), every);
    for (const room of state.rooms) {
      const p = position(room);
      send({ join: { room, lastSeq: String(p.seq), epoch: String(p.epoch) } });
    }
    refreshOnline();
  } else if (frame.push) {
    for (const m of frame.push.messages || []) onMessage(m, true);
  } else if (frame.syncReply) {
    const id = String(frame.id || "0");
    if (state.historyIds.has(id)) onOlderPage(state.historyIds.get(id), id, frame.syncReply);
    else onPage(frame.syncReply);
  } else if (frame.joinReply) {
    const room = frame.joinReply.room;
    state.rooms.add(room);
    // A room new to us starts after its head: what is older is history,
    // read back by scrolling up.
    const head = frame.joinReply.head;
    if (head && !state.positions.has(room)) {
      state.positions.set(room, { seq: Number(head.lastSeq || 0), epoch: Number(head.epoch || 0) });
    }
    renderLists();
    if (state.current === `#${room}`) {
      refreshOnline();
      fillView();
    }
  } else if (frame.leaveReply) {
    const room = frame.leaveReply.room;
    state.rooms.delete(room);
    // Unasked (frame id 0): the server took us out (removed from the
    // room's members), so we do not join it again.
    if (!frame.id || String(frame.id) === "0") {
      state.positions.delete(room);
      addNotice(`#${room}`, `You were removed from #${room}`);
    }
    renderLists();
  } else if (frame.roomOnlineReply) {
    const r = frame.roomOnlineReply;
    if (state.current === `#${r.room}`) {
      $("online").textContent = `${r.connections || 0} online`;
    }
  } else if (frame.heartbeatReply) {
    // The reply to our heartbeat carries the inbox head; one the comet sends
    // unasked (after it reported its connections to logic again) carries
    // the inbox head or the heads of our rooms. Either way: read what lies
    // past what we showed.
    const reply = frame.heartbeatReply;
    if (reply.inbox) catchUp("", reply.inbox);
    for (const [room, head] of Object.entries(reply.rooms || {})) {
      if (state.rooms.has(room) && state.positions.has(room)) catchUp(room, head);
    }
  } else if (frame.error) {
    const e = frame.error;
    const id = String(frame.id || "0");
    if (state.historyIds.has(id)) {
      olderFailed(state.historyIds.get(id), id);
      return;
    }
    addNotice(state.current, `Error: ${e.message || e.code}`);
    if (e.code === "ERROR_CODE_UNAUTHENTICATED" || e.code === "ERROR_CODE_TOKEN_EXPIRED") {
      stop("Your session expired; reload to sign in");
    } else if (e.code === "ERROR_CODE_TOKEN_REVOKED") {
      stop("You were signed out; reload to sign in");
    }
  } else if (frame.kick) {
    stop(`Disconnected: ${frame.kick.reason}`);
  } else if (frame.reconnect) {
    const socket = state.socket;
    state.socket = null;
    if (socket) socket.close();
    reconnectLater(frame.reconnect.afterMs || 0);
  }
}

function stop(why) {
  state.stopped = true;
  clearInterval(state.heartbeat);
  if (state.socket) state.socket.close();
  setStatus(why);
}

// A page of a stream: the resume page after Auth or Join, or a Sync answer.
function onPage(page) {
  const stream = page.room || "";
  if (page.reset) {
    state.positions.delete(stream);
    // What we paged back through belongs to the lost epoch.
    state.history.delete(stream);
    addNotice(conversationOf(stream), "History was reset; some messages may be gone");
  } else if (page.gap) {
    addNotice(conversationOf(stream), "Some older messages are no longer stored");
  }
  const known = state.positions.has(stream);
  const messages = page.messages || [];
  let shown = 0;
  for (const m of messages) if (onMessage(m, false)) shown++;
  if (shown > 0) {
    state.away += shown;
    const away = $("away");
    away.textContent = `${state.away} message${state.away === 1 ? "" : "s"} while you were away`;
    away.hidden = false;
  }
  const head = page.head || {};
  const last = Number(head.lastSeq || 0);
  const asked = state.asked.get(stream);
  state.asked.delete(stream);
  const p = position(stream);
  if (!page.reset && asked !== undefined && Number(head.epoch || 0) === p.epoch && last < asked) {
    // Read after we asked, and behind what we had shown: the server lost
    // its newest messages and will hand their seqs out again.
    lost(stream, last);
  } else if (position(stream).seq === 0) {
    // Nothing shown of this stream yet: the page started where the server
    // keeps this user's place, so the head is where we are now (and what
    // is older is history, read back by scrolling up).
    state.positions.set(stream, { seq: last, epoch: Number(head.epoch || 0) });
  } else if (messages.length > 0) {
    catchUp(stream, head);
  }
  if (stream === "") ackInbox();
  // The stream's start is known now: a view of it can read back.
  if (!known && streamOf(state.current) === stream) fillView();
}

function ackInbox() {
  const p = position("");
  if (p.seq > 0) send({ ack: { seq: String(p.seq), epoch: String(p.epoch) } });
}

// The server lost what we showed of `stream` after `seq`: say so, and go
// on from there.
function lost(stream, seq) {
  addNotice(conversationOf(stream), LOST_NOTICE);
  state.positions.set(stream, { seq, epoch: position(stream).epoch });
  state.shownIds.delete(stream);
}

// Asks for what lies between our position and `head`, if anything. A head
// behind us is asked about too: the page's head tells whether the server
// lost what we showed (this head may have been read before it was stored).
function catchUp(stream, head) {
  const p = position(stream);
  const last = Number(head.lastSeq || 0);
  const epoch = Number(head.epoch || 0);
  if (last !== p.seq || (epoch && p.epoch && epoch !== p.epoch)) {
    state.asked.set(stream, p.seq);
    send({
      sync: {
        room: stream,
        afterSeq: String(p.seq),
        epoch: String(p.epoch),
        limit: SYNC_PAGE,
      },
    });
  }
}

// Shows one message once; keeps its stream's position. `live` messages
// that skip ahead of our position ask for the missing ones.
function onMessage(m, live) {
  if (m.msgId && state.seen.has(m.msgId)) return false;
  const to = m.to || {};
  const stream = to.room !== undefined ? to.room : to.user !== undefined ? "" : null;
  const seq = Number(m.seq || 0);
  const epoch = Number(m.epoch || 0);
  if (stream !== null && seq > 0) {
    const p = position(stream);
    if (live && p.seq > 0 && epoch === p.epoch && seq > p.seq + 1) {
      catchUp(stream, { lastSeq: seq, epoch });
      return false;
    }
    if (epoch === p.epoch && seq <= p.seq) {
      const before = (state.shownIds.get(stream) || new Map()).get(seq);
      // A repeat, or one we cannot tell: already shown.
      if (before === undefined || before === m.msgId) return false;
      // Our seq, handed out again to another message.
      lost(stream, seq - 1);
    }
    state.positions.set(stream, { seq, epoch });
    remember(stream, seq, m.msgId);
    keepOldest(stream, seq, epoch);
  }
  if (m.msgId) state.seen.add(m.msgId);
  const { key, line } = lineOf(m);
  addLine(key, line);
  if (stream === "" && seq > 0 && live) ackInbox();
  return true;
}

function remember(stream, seq, msgId) {
  if (!msgId) return;
  let ids = state.shownIds.get(stream);
  if (!ids) state.shownIds.set(stream, (ids = new Map()));
  ids.set(seq, msgId);
  if (ids.size > REMEMBERED) ids.delete(ids.keys().next().value);
}

// The conversation a message belongs to, and its line there.
function lineOf(m) {
  const to = m.to || {};
  const from = m.from || "";
  let key;
  if (to.room !== undefined) key = `#${to.room}`;
  else if (to.user !== undefined && from) key = `@${from === state.uid ? to.user : from}`;
  else key = "pushes";
  if (key.startsWith("@")) state.people.add(key.slice(1));
  const text = m.op === OP_CHAT || from ? base64ToUtf8(m.data) : pushText(m.data);
  return { key, line: { from: from || "backend", text, at: Number(m.sentAtMs || Date.now()) } };
}

// A backend push carries the JSON text it was sent with: show a string
// as itself, anything else as its JSON.
function pushText(data) {
  const text = base64ToUtf8(data);
  try {
    const value = JSON.parse(text);
    return typeof value === "string" ? value : text;
  } catch (e) {
    return text;
  }
}

function conversationOf(stream) {
  return stream === "" ? state.current : `#${stream}`;
}

// The stream a conversation reads from: its room, or the inbox (pushes
// and every private chat share it).
function streamOf(key) {
  return key.startsWith("#") ? key.slice(1) : "";
}

// ---- Older messages ----
//
// Each stream remembers the oldest message it showed and pages back below
// it with Sync{beforeSeq}, one request in flight per stream; the reply
// lists the page oldest first, and more is held while its first message
// is above the oldest seq the stream holds (head.firstSeq).

function historyOf(stream) {
  if (!state.history.has(stream)) {
    state.history.set(stream, { oldest: null, loading: "", end: "" });
  }
  return state.history.get(stream);
}

function keepOldest(stream, seq, epoch) {
  const h = historyOf(stream);
  if (!h.oldest || h.oldest.epoch !== epoch || seq < h.oldest.seq) h.oldest = { seq, epoch };
}

// Whether the server has told where the stream starts for us (the resume
// page for the inbox, JoinReply for a room): before that there is nothing
// to page back from.
function canPageBack(stream) {
  return state.positions.has(stream) && (stream === "" || state.rooms.has(stream));
}

// Asks for the page below the oldest message shown (none shown: below
// where the server started us).
function loadOlder(stream) {
  const h = historyOf(stream);
  const socket = state.socket;
  if (h.loading || (h.end && h.end !== "failed") || !canPageBack(stream)) return;
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  if (lines(state.current).length >= MAX_LINES) {
    h.end = "limit";
    renderEdge();
    return;
  }
  const p = position(stream);
  const below = h.oldest || { seq: p.seq + 1, epoch: p.epoch };
  const id = send({
    sync: {
      room: stream,
      epoch: String(below.epoch),
      limit: HISTORY_PAGE,
      beforeSeq: String(below.seq),
    },
  });
  h.loading = String(id);
  h.end = "";
  state.historyIds.set(h.loading, stream);
  renderEdge();
}

// A page read back: prepended to the conversations it concerns, the view
// kept where it was.
function onOlderPage(stream, id, page) {
  state.historyIds.delete(id);
  const h = historyOf(stream);
  if (h.loading !== id) return; // asked on a connection that is gone
  h.loading = "";
  const head = page.head || {};
  const messages = page.messages || [];
  const scroller = $("scroller");
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  let added = 0;
  if (page.reset) {
    // The epoch we paged back through is gone: nothing older is held. The
    // live stream learns of the new epoch from the head (below).
    h.end = "gap";
  } else {
    const first = messages[0];
    if (first) keepOldest(stream, Number(first.seq || 0), Number(first.epoch || 0));
    const firstHeld = Number(head.firstSeq || 0);
    const more = first !== undefined && Number(first.seq || 0) > Math.max(firstHeld, 1);
    if (!more) h.end = page.gap ? "gap" : "start";
    added = prependLines(messages);
  }
  // Its head may show the stream moved on past what we showed.
  if (canPageBack(stream)) catchUp(stream, head);
  renderLists();
  renderEdge(added);
  scroller.scrollTop = scroller.scrollHeight - fromBottom;
  state.lastScrollTop = scroller.scrollTop;
  // Still at the top (a short conversation, or nothing here in an inbox
  // page): read on, a few pages at most before the reader asks again.
  if (streamOf(state.current) === stream && state.autoPages > 0 && atTop()) {
    state.autoPages--;
    loadOlder(stream);
  }
}

function olderFailed(stream, id) {
  state.historyIds.delete(id);
  const h = historyOf(stream);
  if (h.loading !== id) return;
  h.loading = "";
  h.end = "failed";
  renderEdge();
}

// Puts older messages (oldest first) before the lines of their
// conversations; returns how many the current one got.
function prependLines(messages) {
  const older = new Map(); // key -> lines, oldest first
  for (const m of messages) {
    if (m.msgId && state.seen.has(m.msgId)) continue;
    if (m.msgId) state.seen.add(m.msgId);
    const { key, line } = lineOf(m);
    if (!older.has(key)) older.set(key, []);
    older.get(key).push(line);
  }
  let added = 0;
  for (const [key, page] of older) {
    state.conversations.set(key, page.concat(lines(key)));
    if (key === state.current) {
      $("messages").prepend(...page.map(lineElement));
      added = page.length;
    }
  }
  return added;
}

function atTop() {
  return $("scroller").scrollTop <= TOP_PX;
}

// Fills a view that shows its top with older messages.
function fillView() {
  state.autoPages = AUTO_PAGES;
  if (atTop()) loadOlder(streamOf(state.current));
}

// The top of the conversation: a button to read further back, or why not.
function renderEdge(added) {
  const stream = streamOf(state.current);
  const h = state.history.get(stream) || { loading: "", end: "" };
  const button = $("load-older");
  const note = $("history-note");
  button.hidden = !canPageBack(stream) || h.loading !== "" || (h.end !== "" && h.end !== "failed");
  if (h.loading) note.textContent = "Loading older messages…";
  else if (h.end === "start") note.textContent = "Start of history";
  else if (h.end === "gap") note.textContent = "Older messages are no longer stored";
  else if (h.end === "limit") note.textContent = "Older messages are not shown here";
  else if (h.end === "failed") note.textContent = "Could not load older messages";
  else if (added) note.textContent = `${added} older message${added === 1 ? "" : "s"} loaded`;
  else note.textContent = "";
}

// ---- Views ----

function lines(key) {
  if (!state.conversations.has(key)) state.conversations.set(key, []);
  return state.conversations.get(key);
}

function addLine(key, line) {
  lines(key).push(line);
  if (key === state.current) appendLine(line);
  else state.unread.add(key);
  renderLists();
}

function addNotice(key, text) {
  addLine(key, { notice: true, text, at: Date.now() });
}

function lineElement(line) {
  const li = document.createElement("li");
  if (line.notice) {
    li.className = "notice";
    li.textContent = line.text;
  } else {
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = `${line.from}: `;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = line.text;
    const time = document.createElement("time");
    time.className = "time";
    time.textContent = new Date(line.at).toLocaleTimeString();
    li.append(from, text, time);
  }
  return li;
}

// Adds a line at the bottom; follows it there unless the reader has
// scrolled up to read older ones.
function appendLine(line) {
  const scroller = $("scroller");
  const following = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight <= TOP_PX;
  $("messages").append(lineElement(line));
  if (following || line.from === state.uid) scroller.scrollTop = scroller.scrollHeight;
}

function select(key) {
  state.current = key;
  state.unread.delete(key);
  const title = key === "pushes" ? "Pushes" : key;
  $("conversation-title").textContent = title;
  $("leave").hidden = !key.startsWith("#");
  $("online").textContent = "";
  $("send-form").hidden = key === "pushes";
  $("messages").replaceChildren(...lines(key).map(lineElement));
  const scroller = $("scroller");
  scroller.scrollTop = scroller.scrollHeight;
  state.lastScrollTop = scroller.scrollTop;
  renderEdge();
  renderLists();
  refreshOnline();
  fillView();
}

function conversationButton(key, label) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "conversation";
  button.dataset.key = key;
  button.textContent = label;
  if (key === state.current) button.setAttribute("aria-current", "true");
  if (state.unread.has(key)) button.classList.add("unread");
  li.append(button);
  return li;
}

function renderLists() {
  const rooms = [...state.rooms].sort().map((r) => conversationButton(`#${r}`, `#${r}`));
  $("rooms").replaceChildren(...rooms);
  const people = [...state.people].sort().map((p) => {
    const li = conversationButton(`@${p}`, p);
    const presence = document.createElement("span");
    presence.className = "presence";
    presence.dataset.user = p;
    li.append(presence);
    return li;
  });
  $("people").replaceChildren(...people);
  const pushes = $("open-pushes");
  pushes.toggleAttribute("aria-current", state.current === "pushes");
  if (state.current === "pushes") pushes.setAttribute("aria-current", "true");
  pushes.classList.toggle("unread", state.unread.has("pushes"));
}

// The room's head count (RoomOnline) and the people's presence.
async function refreshOnline() {
  if (state.current.startsWith("#")) send({ roomOnline: { room: state.current.slice(1) } });
  if (state.people.size === 0 || !state.token) return;
  try {
    const uids = [...state.people].join(",");
    const reply = await api(`/presence?uids=${encodeURIComponent(uids)}`, undefined, state.token);
    const online = new Set(reply.online || []);
    for (const el of document.querySelectorAll(".presence")) {
      el.textContent = online.has(el.dataset.user) ? " (online)" : "";
    }
  } catch (e) {
    // Presence is a nicety; the chat works without it.
  }
}

// ---- Actions ----

function sendText(event) {
  event.preventDefault();
  const input = $("text");
  const text = input.value;
  if (!text || state.current === "pushes") return;
  const target = state.current.startsWith("#")
    ? { room: state.current.slice(1) }
    : { user: state.current.slice(1) };
  // 1-128 visible ASCII characters (the server refuses others): random
  // hex, not the uid, which may hold any character.
  const clientMsgId = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) =>
    b.toString(16).padStart(2, "0"),
  ).join("");
  send({ send: { to: target, op: OP_CHAT, data: utf8ToBase64(text), clientMsgId } });
  if (target.user !== undefined) {
    addLine(state.current, { from: state.uid, text, at: Date.now() });
  }
  input.value = "";
}

function joinRoom(event) {
  event.preventDefault();
  const room = $("join-room").value.trim();
  if (!room) return;
  state.rooms.add(room);
  const p = position(room);
  send({ join: { room, lastSeq: String(p.seq), epoch: String(p.epoch) } });
  $("join-room").value = "";
  select(`#${room}`);
}

function openPerson(event) {
  event.preventDefault();
  const user = $("dm-user").value.trim();
  if (!user) return;
  state.people.add(user);
  $("dm-user").value = "";
  select(`@${user}`);
}

function leaveRoom() {
  if (!state.current.startsWith("#")) return;
  const room = state.current.slice(1);
  send({ leave: { room } });
  state.rooms.delete(room);
  select("pushes");
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn(false);
  });
  $("register").addEventListener("click", () => {
    if ($("signin-form").reportValidity()) signIn(true);
  });
  $("send-form").addEventListener("submit", sendText);
  $("join-form").addEventListener("submit", joinRoom);
  $("dm-form").addEventListener("submit", openPerson);
  $("leave").addEventListener("click", leaveRoom);
  $("load-older").addEventListener("click", () => {
    state.autoPages = AUTO_PAGES;
    loadOlder(streamOf(state.current));
  });
  // Scrolling up into the top reads further back. Only a move into the
  // top counts, so restoring the view after a page does not ask again.
  $("scroller").addEventListener(
    "scroll",
    () => {
      const top = $("scroller").scrollTop;
      const arrived = top <= TOP_PX && state.lastScrollTop > TOP_PX;
      state.lastScrollTop = top;
      if (arrived) fillView();
    },
    { passive: true },
  );
  document.querySelector("nav").addEventListener("click", (e) => {
    const button = e.target.closest("button.conversation");
    if (button) select(button.dataset.key);
  });
  setInterval(refreshOnline, 15000);
});
