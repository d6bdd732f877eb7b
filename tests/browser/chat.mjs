// Two people chat through Courier's web page in Chromium, a backend push
// reaches both, and one page survives a restart of its comet and shows
// what it missed. Then a room with more history than a page is read back
// by scrolling up, to its first message, and a page told a room's head
// unasked (as a comet does after reporting its connections to logic again)
// reads what never reached it. Driven by tests/browser.rs, which runs the
// cluster:
//
//   env: LOGIC_URL, API_KEY, CHROMIUM, SCREENSHOTS (optional directory)
//   stdout "restart <comet id>" -> the driver restarts that comet, then
//   writes "restarted" on stdin; stdout "ok" at the end.
//
// Every wait is bounded (WAIT_MS); the first failure exits non-zero.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const WAIT_MS = 20_000;
const { LOGIC_URL, API_KEY, CHROMIUM, SCREENSHOTS } = process.env;
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();

async function nextLine() {
  const { value, done } = await lines.next();
  if (done) throw new Error("the driver closed stdin");
  return value.trim();
}

// Pushes over HTTP; returns the reply ({msg_id, seq, epoch}).
async function push(path, body) {
  const response = await fetch(`${LOGIC_URL}/api/v1${path}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (response.status !== 202) throw new Error(`push ${path}: HTTP ${response.status}`);
  return response.json();
}

async function signIn(page, user) {
  await page.goto(`${LOGIC_URL}/`);
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Register and log in" }).click();
  await page.locator("#status", { hasText: `as ${user}` }).waitFor({ timeout: WAIT_MS });
}

async function join(page, room) {
  await page.getByLabel("Join a room").fill(room);
  await page.getByRole("button", { name: "Join", exact: true }).click();
  await page.locator("#rooms button", { hasText: `#${room}` }).waitFor({ timeout: WAIT_MS });
}

async function say(page, text) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByRole("button", { name: "Send" }).click();
}

async function sees(page, text) {
  await page.locator("#messages li", { hasText: text }).first().waitFor({ timeout: WAIT_MS });
}

async function open(page, key) {
  await page.locator(`nav button[data-key="${key}"]`).click();
}

async function shot(page, name) {
  if (SCREENSHOTS) await page.screenshot({ path: `${SCREENSHOTS}/${name}.png` });
}

// The texts of the messages the open conversation shows, top to bottom.
async function shown(page) {
  return page.locator("#messages .text").allTextContents();
}

// Scrolls the open conversation to its top until the page says it reached
// the start of history; every step must load older messages.
async function scrollBackToTheStart(page) {
  for (let step = 0; step < 10; step++) {
    const note = page.locator("#history-note");
    if ((await note.textContent()) === "Start of history") return;
    const before = (await shown(page)).length;
    await page.locator("#scroller").evaluate((el) => {
      el.scrollTop = 0;
    });
    await page.waitForFunction(
      (n) =>
        document.querySelectorAll("#messages .text").length > n ||
        document.getElementById("history-note").textContent === "Start of history",
      before,
      { timeout: WAIT_MS },
    );
    const top = await page.locator("#scroller").evaluate((el) => el.scrollTop);
    const now = (await shown(page)).length;
    if (now > before && top === 0) throw new Error("the view jumped to the older messages");
  }
  throw new Error("no start of history after 10 pages");
}

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu"],
  });
  try {
    const aliceContext = await browser.newContext({ viewport: { width: 900, height: 600 } });
    const bobContext = await browser.newContext({ viewport: { width: 420, height: 700 } });
    const alice = await aliceContext.newPage();
    const bob = await bobContext.newPage();
    const stamp = Date.now().toString(36);
    const [a, b] = [`alice${stamp}`, `bob${stamp}`];
    await signIn(alice, a);
    await signIn(bob, b);

    // Room chat.
    await join(alice, "lobby");
    await join(bob, "lobby");
    await say(alice, "hello room");
    await sees(bob, "hello room");
    await sees(alice, "hello room");

    // Private chat.
    await alice.getByLabel("Message a user").fill(b);
    await alice.getByRole("button", { name: "Open" }).click();
    await say(alice, "hi bob, privately");
    await bob.locator(`nav button[data-key="@${a}"]`).waitFor({ timeout: WAIT_MS });
    await open(bob, `@${a}`);
    await sees(bob, "hi bob, privately");
    await say(bob, "hi alice");
    await sees(alice, "hi alice");

    // A backend push to the room reaches both pages.
    await open(alice, "#lobby");
    await open(bob, "#lobby");
    await push("/push/rooms/lobby", { op: 1001, data: "from the backend" });
    await sees(alice, "from the backend");
    await sees(bob, "from the backend");
    await shot(alice, "room");
    await shot(bob, "narrow");

    // Alice's comet restarts while she is cut off; what was sent meanwhile
    // is shown once she is back.
    const status = await alice.locator("#status").textContent();
    const comet = /Connected to (\S+) as/.exec(status)?.[1];
    if (!comet) throw new Error(`no comet in the status: ${status}`);
    await aliceContext.setOffline(true);
    console.log(`restart ${comet}`);
    if ((await nextLine()) !== "restarted") throw new Error("the driver did not restart the comet");
    await push("/push/rooms/lobby", { op: 1001, data: "missed in the room" });
    await push("/push/users", { uids: [a], op: 1001, data: "missed, just for alice" });
    await aliceContext.setOffline(false);
    await alice.locator("#status", { hasText: `as ${a}` }).waitFor({ timeout: WAIT_MS * 2 });
    await sees(alice, "missed in the room");
    await open(alice, "pushes");
    await sees(alice, "missed, just for alice");
    await alice.locator("#away", { hasText: "while you were away" }).waitFor({ timeout: WAIT_MS });
    await open(alice, "#lobby");
    await shot(alice, "after-restart");

    // Still chatting after the restart.
    await say(bob, "welcome back");
    await sees(alice, "welcome back");

    // Every comet the pages learned of at login goes away and a new one
    // starts elsewhere: the pages find it through /nodes.
    console.log("move");
    if ((await nextLine()) !== "moved") throw new Error("the driver did not move the comets");
    for (const [page, user] of [[alice, a], [bob, b]]) {
      await page.locator("#status", { hasText: `Connected to comet-moved as ${user}` })
        .waitFor({ timeout: WAIT_MS * 2 });
    }
    await say(bob, "on the new comet");
    await sees(alice, "on the new comet");

    // A room with more history than a page: opening it shows the newest
    // page; scrolling up reads the rest back, keeping the view where it
    // was, down to the first message (in bob's narrow window).
    const archive = `archive${stamp}`;
    const pushed = Array.from({ length: 120 }, (_, i) => `${archive} ${i + 1}`);
    for (const data of pushed) await push(`/push/rooms/${archive}`, { op: 1001, data });
    await join(bob, archive);
    await sees(bob, `${archive} 120`);
    const first = await shown(bob);
    if (first.length >= pushed.length || first.includes(`${archive} 1`)) {
      throw new Error(`opening the room showed more than its newest page: ${first.length}`);
    }
    await scrollBackToTheStart(bob);
    const all = await shown(bob);
    if (JSON.stringify(all) !== JSON.stringify(pushed)) {
      throw new Error(`the room read back is not its history in order: ${JSON.stringify(all)}`);
    }
    await bob.locator("#scroller").evaluate((el) => {
      el.scrollTop = 0;
    });
    await shot(bob, "history-start");

    // The comet sends the heads of a connection's rooms unasked once it
    // reported its connections to logic again (logic's session store lost
    // them). Carol's socket goes through a route that loses a room push on
    // its way and then tells her page the room's head: the page reads what
    // it missed.
    const quiet = `quiet${stamp}`;
    const carolContext = await browser.newContext({ viewport: { width: 900, height: 600 } });
    let toPage = null;
    let loseNext = null;
    await carolContext.routeWebSocket(/\/ws$/, (ws) => {
      toPage = ws;
      const server = ws.connectToServer();
      ws.onMessage((message) => server.send(message));
      server.onMessage((message) => {
        const frame = typeof message === "string" ? JSON.parse(message) : {};
        const toQuiet = (frame.push?.messages || []).some((m) => m.to?.room === quiet);
        if (toQuiet && loseNext) {
          loseNext();
          loseNext = null;
          return;
        }
        ws.send(message);
      });
    });
    const carol = await carolContext.newPage();
    await signIn(carol, `carol${stamp}`);
    await join(carol, quiet);
    await push(`/push/rooms/${quiet}`, { op: 1001, data: "arrives" });
    await sees(carol, "arrives");
    const lost = new Promise((resolve) => {
      loseNext = resolve;
    });
    const stored = await push(`/push/rooms/${quiet}`, { op: 1001, data: "lost on the way" });
    await lost;
    if ((await carol.locator("#messages li", { hasText: "lost on the way" }).count()) > 0) {
      throw new Error("the lost push reached the page another way");
    }
    const head = { epoch: String(stored.epoch), lastSeq: String(stored.seq), firstSeq: "1" };
    toPage.send(JSON.stringify({ heartbeatReply: { rooms: { [quiet]: head } } }));
    await sees(carol, "lost on the way");

    // A store that lost its newest writes hands their seqs out again: a
    // message under a seq the page showed, with another id, is shown with
    // a notice, never dropped as a repeat.
    const again = {
      msgId: `reused-${stamp}`,
      seq: String(stored.seq),
      epoch: String(stored.epoch),
      to: { room: quiet },
      op: 1001,
      data: Buffer.from(JSON.stringify("under a reused seq")).toString("base64"),
    };
    toPage.send(JSON.stringify({ push: { messages: [again] } }));
    await sees(carol, "under a reused seq");
    await sees(carol, "The server lost its newest messages");
    console.log("ok");
  } finally {
    await browser.close();
    stdin.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
