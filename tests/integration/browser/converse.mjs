// Drives converse.js in headless Chromium (puppeteer-core, Debian's
// /usr/bin/chromium) for test_browser_converse.py. Environment: PAGE (test
// page URL with jid and password), WSS_PORT (c2s's websocket-tls port; the
// browser's https://DOMAIN:443 is mapped to it, so converse's XEP-0156
// discovery at https://DOMAIN/.well-known/host-meta reaches weft), PEER (the
// TCP user's bare JID), SEND (body to send), EXPECT (body the peer sends
// back), SHOT (screenshot path). Prints one JSON line of what it saw.
import puppeteer from 'puppeteer-core';

const env = process.env;
const out = { console: [], steps: [] };
const step = (s) => { out.steps.push(s); };
const browser = await puppeteer.launch({
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--ignore-certificate-errors', '--disable-gpu', '--disable-dev-shm-usage',
         `--host-resolver-rules=MAP ${env.DOMAIN}:443 127.0.0.1:${env.WSS_PORT}`],
});
const deadline = Date.now() + Number(env.TIMEOUT_MS || 90000);
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 800 });
  page.on('console', (m) => { if (out.console.length < 400) out.console.push(m.text().slice(0, 300)); });
  page.on('pageerror', (e) => out.console.push('pageerror: ' + String(e).slice(0, 300)));

  const login = async () => {
    await page.waitForFunction(() => window.weft && window.weft.events.includes('connected'),
                               { timeout: Math.max(1000, deadline - Date.now()) });
  };
  const hasText = (t) => page.waitForFunction(
    (t) => document.body.innerText.includes(t), { timeout: Math.max(1000, deadline - Date.now()) }, t);

  await page.goto(env.PAGE, { waitUntil: 'load' });
  await login();
  out.websocket_url = await page.evaluate(() => window.weft.api.settings.get('websocket_url'));
  out.jid = await page.evaluate(() => window.weft.api.connection.get().jid);
  step('connected');
  await page.evaluate(async (peer, body) => {
    const chat = await window.weft.api.chats.open(peer, {}, true);
    await chat.sendMessage({ body });
  }, env.PEER, env.SEND);
  step('sent');
  await hasText(env.EXPECT);
  step('received');
  await page.screenshot({ path: env.SHOT });
  step('screenshot');
  // a reload: a new WebSocket connection, a new login, the conversation shown again
  await page.reload({ waitUntil: 'load' });
  await login();
  step('reconnected');
  await page.evaluate(async (peer) => { await window.weft.api.chats.open(peer, {}, true); }, env.PEER);
  try {
    await hasText(env.EXPECT);
    await hasText(env.SEND);
    out.history_after_reload = true;
  } catch (e) {
    out.history_after_reload = false;
  }
  await page.screenshot({ path: env.SHOT.replace(/\.png$/, '-reload.png') });
  out.ok = true;
} catch (e) {
  out.ok = false;
  out.error = String(e).slice(0, 500);
  try {
    const pages = await browser.pages();
    if (pages.length) await pages[pages.length - 1].screenshot({ path: env.SHOT.replace(/\.png$/, '-failed.png') });
  } catch (e2) { /* nothing more to show */ }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
