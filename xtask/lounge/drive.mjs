// Drives The Lounge in headless Chromium against chat-server's IRC listener, with a native
// client in the same room, and checks that messages go both ways. Run by `cargo xtask lounge`,
// which starts the server and The Lounge and sets CHAT_ADDR, LOUNGE_URL, CHROMIUM and SHOT.
import net from "node:net";
import { chromium } from "playwright-core";

const [host, port] = process.env.CHAT_ADDR.split(":");
const deadline = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms));

// A native client: JSON Lines over TCP.
const native = net.connect(Number(port), host);
const seen = [];
let waiters = [];
let buffered = "";
native.on("data", (chunk) => {
  buffered += chunk.toString("utf8");
  let nl;
  while ((nl = buffered.indexOf("\n")) >= 0) {
    const msg = JSON.parse(buffered.slice(0, nl));
    buffered = buffered.slice(nl + 1);
    seen.push(msg);
    waiters = waiters.filter(([test, resolve]) => !(test(msg) && (resolve(msg), true)));
  }
});
const send = (msg) => native.write(JSON.stringify(msg) + "\n");
const expect = (test, what) =>
  Promise.race([
    new Promise((resolve) => {
      const hit = seen.find(test);
      if (hit) resolve(hit);
      else waiters.push([test, resolve]);
    }),
    deadline(20000, what),
  ]);

send({ type: "hello", version: 1, name: "sam" });
await expect((m) => m.type === "welcome", "the native client's welcome");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ["--no-sandbox"],
});
const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
try {
  await page.goto(process.env.LOUNGE_URL);
  // Public mode: the connect form, with the network locked to our server.
  const nick = page.locator('input[name="nick"]');
  await nick.waitFor({ timeout: 20000 });
  await nick.fill("lounger");
  await page.locator('button[type="submit"]').click();
  await page.getByRole("tab", { name: "#lobby" }).or(page.locator('.channel-list-item[data-name="#lobby"]')).first().waitFor({ timeout: 20000 });
  await expect((m) => m.type === "join" && m.name === "lounger", "lounger joining #lobby");
  console.log("lounge: lounger joined #lobby; the native client saw it");

  const input = page.locator("#input");
  await input.fill("hello from the browser ☕");
  await input.press("Enter");
  const got = await expect(
    (m) => m.type === "message" && m.from === "lounger",
    "the browser's message at the native client",
  );
  console.log(`lounge: the native client got ${JSON.stringify(got.text)} from lounger`);

  send({ type: "say", room: "#lobby", text: "hello lounge, from the native side 日本語" });
  await page.getByText("hello lounge, from the native side 日本語").waitFor({ timeout: 20000 });
  console.log("lounge: the browser shows the native client's message");

  send({ type: "me", room: "#lobby", text: "waves at the browser" });
  await page.getByText("waves at the browser").waitFor({ timeout: 20000 });
  console.log("lounge: the browser shows the native client's action");

  await page.screenshot({ path: process.env.SHOT });
  console.log(`lounge: screenshot at ${process.env.SHOT}`);
} catch (err) {
  await page.screenshot({ path: process.env.SHOT }).catch(() => {});
  console.error(`lounge: FAILED: ${err.message} (screenshot at ${process.env.SHOT})`);
  process.exitCode = 1;
} finally {
  await browser.close();
  native.end();
}
