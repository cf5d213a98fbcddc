// Drives headless Chromium for packager's browser runtimes (tfjs, onnxruntime-web).
// Usage: node browser_driver.mjs URL CHROMIUM [PROFILE]   then JSON lines on stdin (PROFILE: the
// Chromium profile folder, which the caller removes; without it, a new one in the temp folder):
//   {"inputs": {name: {"shape": [...], "dtype": "float32", "data": [...]}}}
// and one JSON line per request on stdout: {"outputs": {...}} or {"error": "..."}.
// The first line written is {"ready": {...}} once the page says its model has loaded.
// {"goto": URL} opens another page in the same profile (caches kept) and answers {"ready": ...}.
// {"screenshot": PATH} saves the whole page as a PNG and answers {"saved": PATH}.
import { createInterface } from "node:readline";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [url, executablePath, given] = process.argv.slice(2);
const profile = given || mkdtempSync(join(tmpdir(), "packager-chromium-"));
// Closing the browser, then its profile (the caller removes it too, should this process be killed).
const shut = async () => { await browser.close(); rmSync(profile, { recursive: true, force: true }); };
const browser = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage();
const consoleLines = [];
page.on("console", (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
page.on("pageerror", (err) => consoleLines.push(`pageerror: ${err.message}`));
const write = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
try {
  await page.goto(url);
  const ready = await page.evaluate(() => window.packagerReady);
  write({ ready: { ...ready, userAgent: await page.evaluate(() => navigator.userAgent) } });
} catch (err) {
  write({ error: `the page did not load its model: ${err.message}`, console: consoleLines.slice(-5) });
  await shut();
  process.exit(1);
}
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  try {
    const request = JSON.parse(line);
    if (request.screenshot) {
      await page.screenshot({ path: request.screenshot, fullPage: true });
      write({ saved: request.screenshot });
      continue;
    }
    if (request.goto) {
      consoleLines.length = 0; // a new page: its own console only
      await page.goto(request.goto);
      write({ ready: await page.evaluate(() => window.packagerReady) });
      continue;
    }
    write({ outputs: await page.evaluate((inputs) => window.packagerPredict(inputs), request.inputs) });
  } catch (err) {
    write({ error: err.message, console: consoleLines.slice(-5) });
  }
}
await shut();
