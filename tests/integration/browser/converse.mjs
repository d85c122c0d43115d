// Drives converse.js in headless Chromium (puppeteer-core, Debian's
// /usr/bin/chromium) for test_browser_converse.py. Environment: PAGE (test
// page URL with jid and password), WSS_PORT (c2s's websocket-tls port; the
// browser's https://DOMAIN:443 is mapped to it, so converse's XEP-0156
// discovery at https://DOMAIN/.well-known/host-meta reaches weft), PEER (the
// TCP user's bare JID), SEND (body to send), EXPECT (body the peer sends
// back), SHOT (screenshot path), UPLOAD (an image file to send through
// XEP-0363 with converse's paperclip), PAGE_FRESH (the test page for a second
// login from a fresh browser context, whose history can only come from MAM).
// Prints one JSON line of what it saw.
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

  const left = () => Math.max(1000, deadline - Date.now());
  const login = async (p) => {
    await p.waitForFunction(() => window.weft && window.weft.events.includes('connected'), { timeout: left() });
  };
  const hasText = (p, t) => p.waitForFunction(
    (t) => document.body.innerText.includes(t), { timeout: left() }, t);
  // an <img> showing the uploaded file: loaded, with the picture's width
  const shownImage = async (p, name) => {
    const h = await p.waitForFunction((name) => [...document.querySelectorAll('converse-chats img')]
      .find((i) => i.src.includes(name) && i.complete && i.naturalWidth > 0), { timeout: left() }, name);
    return h.evaluate((i) => ({ src: i.src, width: i.naturalWidth, height: i.naturalHeight }));
  };
  const openChat = (p, peer) => p.evaluate(async (peer) => { await window.weft.api.chats.open(peer, {}, true); },
                                            peer);

  await page.goto(env.PAGE, { waitUntil: 'load' });
  await login(page);
  out.websocket_url = await page.evaluate(() => window.weft.api.settings.get('websocket_url'));
  out.jid = await page.evaluate(() => window.weft.api.connection.get().jid);
  step('connected');
  await page.evaluate(async (peer, body) => {
    const chat = await window.weft.api.chats.open(peer, {}, true);
    await chat.sendMessage({ body });
  }, env.PEER, env.SEND);
  step('sent');
  await hasText(page, env.EXPECT);
  step('received');
  if (env.UPLOAD) {
    // the paperclip's file input exists only once converse found an upload
    // service in the domain's disco#items
    const input = await page.waitForSelector('converse-chat-toolbar input.fileupload', { timeout: left() });
    step('upload-offered');
    await input.uploadFile(env.UPLOAD);
    out.image = await shownImage(page, env.UPLOAD.split('/').pop());
    step('image-shown');
  }
  await page.screenshot({ path: env.SHOT });
  step('screenshot');
  // a reload: a new WebSocket connection, a new login, the conversation shown again
  await page.reload({ waitUntil: 'load' });
  await login(page);
  step('reconnected');
  await openChat(page, env.PEER);
  try {
    await hasText(page, env.EXPECT);
    await hasText(page, env.SEND);
    out.history_after_reload = true;
  } catch (e) {
    out.history_after_reload = false;
  }
  await page.screenshot({ path: env.SHOT.replace(/\.png$/, '-reload.png') });
  if (env.PAGE_FRESH) {
    // a fresh browser context has empty IndexedDB and localStorage: whatever
    // converse shows there came from the server's archive
    await page.close();
    const ctx = await browser.createBrowserContext();
    const fresh = await ctx.newPage();
    await fresh.setViewport({ width: 1200, height: 800 });
    fresh.on('console', (m) => { if (out.console.length < 400) out.console.push(m.text().slice(0, 300)); });
    await fresh.goto(env.PAGE_FRESH, { waitUntil: 'load' });
    await login(fresh);
    step('fresh-login');
    await openChat(fresh, env.PEER);
    const seen = { send: false, expect: false, image: null };
    try { await hasText(fresh, env.SEND); seen.send = true; } catch (e) { /* reported below */ }
    try { await hasText(fresh, env.EXPECT); seen.expect = true; } catch (e) { /* reported below */ }
    if (env.UPLOAD) {
      try { seen.image = await shownImage(fresh, env.UPLOAD.split('/').pop()); } catch (e) { /* reported */ }
    }
    out.history_from_mam = seen;
    await fresh.screenshot({ path: env.SHOT.replace(/\.png$/, '-mam.png') });
    step('fresh-screenshot');
  }
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
