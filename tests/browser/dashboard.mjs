// Dashboard end to end: a real velox (demo mode) with traffic flowing, the dashboard opened in
// headless Chromium; checks that the numbers on the page change as requests arrive, that the
// page logs no console errors, that it fits a phone screen, and saves screenshots.
//
// Run through run.sh (installs Chromium and playwright-core if missing). Env: VELOX_BIN,
// SCREENSHOT, CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const veloxBin = process.env.VELOX_BIN || path.join(root, "target/debug/velox");
const screenshot = process.env.SCREENSHOT || path.join(root, "target/test-artifacts/dashboard.png");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

// A port free right now, chosen below the kernel's ephemeral range (32768 and up on Linux): a port
// the kernel handed out for listening can be taken by an outgoing connection (the demo's own
// requests to its origin) before Velox binds it.
function portIsFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}
const taken = new Set();
async function freePort() {
  for (let i = 0; i < 1000; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (!taken.has(port) && (await portIsFree(port))) {
      taken.add(port);
      return port;
    }
  }
  throw new Error("no free port below the ephemeral range");
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(url, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try { const r = await fetch(url); if (r.ok) return; } catch { /* not yet */ }
    await sleep(100);
  }
  throw new Error(`${url} did not come up within ${ms} ms`);
}

function check(cond, message) {
  if (!cond) throw new Error("FAILED: " + message);
  console.log("ok -", message);
}

const cleanup = [];
async function main() {
  const [edgePort, originPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const tmp = mkdtempSync(path.join(tmpdir(), "velox-dashboard-"));
  cleanup.push(() => rmSync(tmp, { recursive: true, force: true }));
  const velox = spawn(veloxBin, ["demo",
    "--listen", `127.0.0.1:${edgePort}`, "--origin-listen", `127.0.0.1:${originPort}`,
    "--admin", `127.0.0.1:${adminPort}`], {
    // The demo keeps its cache under the temp dir: give it a fresh one.
    env: { ...process.env, TMPDIR: tmp, RUST_LOG: "warn" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  cleanup.push(() => velox.kill("SIGKILL"));
  const edge = `http://127.0.0.1:${edgePort}`;
  const admin = `http://127.0.0.1:${adminPort}`;
  await waitFor(`${admin}/healthz`, 15000);
  await waitFor(`${edge}/`, 15000);

  // Background traffic: a few concurrent loops over a small site, some misses and odd URLs.
  let traffic = true;
  let sent = 0;
  const paths = ["/", "/articles/1", "/articles/2", "/articles/3", "/static/site.css",
    "/static/app.js", "/images/photo-1.jpg", "/api/recommendations", "/echo", "/status/404"];
  const loop = async (i) => {
    let n = i;
    while (traffic) {
      const p = n % 17 === 0 ? `/cache/odd-${n}` : paths[n % paths.length];
      try { const r = await fetch(edge + p); await r.arrayBuffer(); sent++; } catch { /* shutting down */ }
      n += 3;
      await sleep(15);
    }
  };
  const loops = [0, 1, 2].map(loop);

  const userDataDir = mkdtempSync(path.join(tmpdir(), "velox-chromium-"));
  cleanup.push(() => rmSync(userDataDir, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 900 },
  });
  cleanup.unshift(() => context.close());
  const page = context.pages()[0] || await context.newPage();
  const problems = [];
  page.on("console", (msg) => { if (msg.type() === "error") problems.push("console: " + msg.text()); });
  page.on("pageerror", (err) => problems.push("page error: " + err.message));
  page.on("requestfailed", (req) => {
    // The event stream is cut when the page closes; anything else failing is a bug.
    if (!req.url().includes("/api/stats/stream")) problems.push("request failed: " + req.url());
  });

  const response = await page.goto(admin + "/", { waitUntil: "load" });
  check(response.status() === 200, "dashboard answers 200");
  await page.waitForFunction(() => document.getElementById("live").textContent === "live", null, { timeout: 10000 });
  check(true, "event stream connected");

  const read = () => page.evaluate(() => ({
    total: document.getElementById("total-requests").textContent,
    rps: document.getElementById("rps").textContent,
    hit: document.getElementById("hit-ratio").textContent,
    out: document.getElementById("bytes-out").textContent,
    p50: document.getElementById("p50").textContent,
    topRows: document.querySelectorAll("#top-requests tr").length,
    upstreamRows: document.querySelectorAll("#upstreams tr").length,
    tierRows: document.querySelectorAll("#cache-tiers tr").length,
    purges: document.getElementById("purges").textContent,
  }));
  const parse = (s) => {
    const m = /^([\d.,]+)\s*([kMG]?)/.exec(s.replace(/,/g, ""));
    if (!m) return NaN;
    return parseFloat(m[1]) * ({ k: 1e3, M: 1e6, G: 1e9 }[m[2]] || 1);
  };
  await page.waitForFunction(() => document.getElementById("rps").textContent !== "–", null, { timeout: 10000 });
  const first = await read();
  console.log("first reading:", JSON.stringify(first));
  // The numbers move as requests arrive.
  let later = first;
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    await sleep(1000);
    later = await read();
    if (parse(later.total) > parse(first.total) && parse(later.rps) > 0 && later.p50 !== "–") break;
  }
  console.log("later reading:", JSON.stringify(later));
  check(parse(later.total) > parse(first.total), `total requests grew (${first.total} -> ${later.total})`);
  check(parse(later.rps) > 0, `requests per second shown (${later.rps})`);
  check(/%$/.test(later.hit), `hit ratio shown (${later.hit})`);
  check(later.p50 !== "–", `p50 latency shown (${later.p50})`);
  check(later.out !== "0 B", `bytes to clients shown (${later.out})`);
  check(later.topRows > 1, "top URLs table has rows");
  check(later.upstreamRows > 1, "upstream health table has rows");
  check(later.tierRows > 1, "cache tier table has rows");
  check(later.purges.length > 0, "purges panel says something");
  const pageText = await page.textContent("body");
  check(pageText.includes("/articles/1"), "a hot URL is listed");

  // Let the charts gather some history before the picture.
  await page.waitForFunction(() => series.rps.length >= 8, null, { timeout: 20000 });
  mkdirSync(path.dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log("screenshot:", screenshot);

  // Phone: no horizontal scrolling of the page itself.
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(1200);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `fits a phone screen (overflow ${overflow}px)`);
  const phoneShot = screenshot.replace(/\.png$/, "-phone.png");
  await page.screenshot({ path: phoneShot, fullPage: true });
  console.log("screenshot:", phoneShot);

  traffic = false;
  await Promise.all(loops);
  check(sent > 0, `traffic generator sent ${sent} requests`);
  check(problems.length === 0, "no console errors: " + (problems.join("; ") || "none"));
}

let code = 0;
try {
  await main();
  console.log("dashboard test passed");
} catch (e) {
  console.error(e);
  code = 1;
} finally {
  for (const f of cleanup) { try { await f(); } catch { /* best effort */ } }
}
process.exit(code);
