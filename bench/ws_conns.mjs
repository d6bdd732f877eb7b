// Opens N authenticated WebSockets (courier.json) to URL with TOKEN, 100 at
// a time (the comet caps handshakes in progress per address), and holds
// them; prints "ready OK FAILED" once every one has its answer
// (bench/ws_rss.sh). Ends after 60 s at most.
const [url, token, n] = [process.env.URL, process.env.TOKEN, Number(process.env.N)];
const BATCH = 100;
const sockets = [];
let failed = 0;

function open() {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, "courier.json");
    ws.onopen = () => ws.send(JSON.stringify({ id: "1", auth: { token, rooms: ["lobby"] } }));
    ws.onmessage = (e) => {
      if (e.data.includes("authReply")) resolve(true);
    };
    ws.onerror = () => resolve(false);
    sockets.push(ws);
  });
}

setTimeout(() => process.exit(1), 60_000);
for (let i = 0; i < n; i += BATCH) {
  const answers = await Promise.all(Array.from({ length: Math.min(BATCH, n - i) }, open));
  failed += answers.filter((ok) => !ok).length;
}
console.log(`ready ${n - failed} ${failed}`);
setTimeout(() => process.exit(0), 5_000);
