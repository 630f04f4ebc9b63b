// npm run bench: every benchmark in one run, figures as ratios against a raw child_process.spawn.
import { benchAdopt } from './adopt.mjs';
import { benchCore } from './core.mjs';
import { benchHunter } from './hunter.mjs';
import { benchKeyScan } from './keyscan.mjs';
import { benchScan } from './scan.mjs';
import { benchLivenessCost, benchScale } from './scale.mjs';
import { benchPg } from './pg.mjs';
import { benchObserve } from './observe.mjs';
import { benchDashboard } from './dashboard.mjs';
import { benchPeers } from './peers.mjs';

const suites = [
  ['core: start, stop, racing starts', benchCore],
  ['adoption: restart with 50 live bots, crash cycles', benchAdopt],
  ['hunter: duplicate detection and scan cost', benchHunter],
  ['hunter: the shared-key rule at 1,000 processes', benchKeyScan],
  ['scan: nonce patterns on bot output', benchScan],
  ['scale: 1,000 bots, 50 heartbeat bots', benchScale],
  ['liveness and limits: their idle cost at 1,000 bots', benchLivenessCost],
  ['postgres: leases, fence and failover', benchPg],
  ['observability: metrics scrape, alert delivery', benchObserve],
  ['dashboard: 1,000 accounts in Chromium', benchDashboard],
];
const only = process.argv[2];
// Run by hand only: `npm run bench -- peers` (installs PM2 into a temp dir, uses Debian's supervisor).
if (only === 'peers') suites.push(['peers: supervisord and PM2, 50 bots', benchPeers]);
console.log(`botwarden bench — node ${process.version}, ${new Date().toISOString()}`);
for (const [name, fn] of suites) {
  if (only && !name.startsWith(only)) continue;
  const t0 = Date.now();
  const { rows } = await fn();
  console.log(`\n## ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  for (const r of rows) console.log(`- ${r.join(' — ')}`);
}
