// Two people chat through Courier's web page in Chromium, a backend push
// reaches both, and one page survives a restart of its comet and shows
// what it missed. Driven by tests/browser.rs, which runs the cluster:
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

async function push(path, body) {
  const response = await fetch(`${LOGIC_URL}/api/v1${path}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (response.status !== 202) throw new Error(`push ${path}: HTTP ${response.status}`);
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
