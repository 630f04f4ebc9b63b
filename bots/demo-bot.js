#!/usr/bin/env node
// A demo trading bot: logs heartbeats with a fake price, shuts down cleanly on
// SIGTERM/SIGINT, and with DEMO_NONCE_ERROR_EVERY=N prints a Kraken nonce
// error every N heartbeats (for trying botwarden's nonce-error handling).
const account = process.env.BOTWARDEN_ACCOUNT ?? 'manual';
const pair = process.env.PAIR ?? 'XBTUSD';
const every = Number(process.env.DEMO_NONCE_ERROR_EVERY ?? 0);
const intervalMs = Number(process.env.DEMO_INTERVAL_MS ?? 1000);
const key = process.env.KRAKEN_API_KEY ? `${process.env.KRAKEN_API_KEY.slice(0, 4)}…` : 'none';
let price = 60000 + Math.random() * 1000;
let tick = 0;

const log = (msg) => console.log(`${new Date().toISOString()} [${account}] ${msg}`);
log(`demo bot up: pid ${process.pid}, pair ${pair}, api key ${key}`);

const timer = setInterval(() => {
  tick++;
  price *= 1 + (Math.random() - 0.5) / 500;
  log(`heartbeat ${tick} ${pair} ${price.toFixed(1)}`);
  if (every > 0 && tick % every === 0) console.error(`${new Date().toISOString()} [${account}] EAPI:Invalid nonce`);
}, intervalMs);

const shutdown = (sig) => {
  log(`${sig}: cancelling open orders and shutting down`);
  clearInterval(timer);
  setTimeout(() => {
    log('bye');
    process.exit(0);
  }, 200);
};
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
