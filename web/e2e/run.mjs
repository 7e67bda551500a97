// End-to-end tests of the web UI in a real browser: Debian's Chromium driven
// by playwright-core, against a real `parledger serve --demo` on a loopback
// port (the debug binary, which serves web/dist from disk). Screenshots of
// every page go to web/e2e/artifacts/. Exits non-zero on the first failure.
//
//   node e2e/run.mjs [path/to/parledger]

import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { scenarios, signIn } from "./scenarios.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..", "..");
const bin = process.argv[2] ?? join(process.env.CARGO_TARGET_DIR ?? join(root, "target"), "debug", "parledger");
const artifacts = join(here, "artifacts");
rmSync(artifacts, { recursive: true, force: true });
mkdirSync(artifacts, { recursive: true });

function freePort() {
  return new Promise((ok, fail) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on("error", fail);
  });
}

function chromiumPath() {
  try {
    return execFileSync("which", ["chromium"]).toString().trim();
  } catch {
    throw new Error("chromium is not installed (./scripts/e2e installs it)");
  }
}

async function waitReady(base, child) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the node exited with ${child.exitCode}`);
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the node did not become ready");
}

const dataDir = mkdtempSync(join(tmpdir(), "parledger-e2e-"));
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const node = spawn(bin, ["serve", "--demo", "--data-dir", dataDir, "--listen", `127.0.0.1:${port}`], {
  stdio: ["ignore", "ignore", "pipe"],
});
let log = "";
node.stderr.on("data", (d) => (log += d));
let browser;
let failed = 0;
try {
  await waitReady(base, node);
  browser = await chromium.launch({
    executablePath: chromiumPath(),
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  for (const [name, run] of scenarios) {
    const contexts = [];
    const errors = [];
    // A new browser context (its own session) with one page.
    const open = async () => {
      const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
      context.setDefaultTimeout(15_000);
      contexts.push(context);
      const p = await context.newPage();
      p.on("pageerror", (e) => errors.push(String(e)));
      // The node's Content-Security-Policy must not block anything the UI does.
      p.on("console", (m) => {
        if (m.type() === "error" && /Content Security Policy|Refused to/.test(m.text())) errors.push(m.text());
      });
      return p;
    };
    const page = await open();
    let shots = 0;
    const shot = async (label, p = page) =>
      p.screenshot({
        path: join(artifacts, `${name}-${String(++shots).padStart(2, "0")}-${label}.png`),
        fullPage: true,
      });
    // Another user signed in, in a context of its own.
    const login = async (user) => {
      const p = await open();
      await signIn(p, base, user);
      return p;
    };
    const started = Date.now();
    try {
      await run({ page, base, shot, login });
      if (errors.length) throw new Error(`uncaught errors in the page: ${errors.join("; ")}`);
      console.log(`ok   ${name} (${Date.now() - started} ms)`);
    } catch (e) {
      failed++;
      // Every open page as it was when the scenario failed.
      let i = 0;
      for (const c of contexts) {
        for (const p of c.pages()) await shot(`failure-${++i}`, p).catch(() => undefined);
      }
      console.log(`FAIL ${name}: ${e?.stack ?? e}`);
    } finally {
      for (const c of contexts) await c.close();
    }
  }
} catch (e) {
  failed++;
  console.log(`FAIL setup: ${e?.stack ?? e}\n--- node log ---\n${log}`);
} finally {
  await browser?.close();
  node.kill("SIGTERM");
  rmSync(dataDir, { recursive: true, force: true });
}
console.log(`e2e: ${scenarios.length - failed} of ${scenarios.length} scenarios passed; screenshots in web/e2e/artifacts/`);
process.exit(failed ? 1 : 0);
