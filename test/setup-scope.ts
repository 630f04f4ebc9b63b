/**
 * Every test file runs in its own BOTWARDEN_SCOPE: its daemons (in-process or not) hunt only
 * processes that carry it, and give it to their bots; copies a test starts by hand inherit it from
 * process.env. Two test files, or two runs on one machine, never take each other's bots for copies,
 * so the files can run in parallel.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect } from 'vitest';

process.env.BOTWARDEN_SCOPE = `test-${randomUUID()}`;

// A worker runs file after file (vitest.config.ts: isolate off): a file must not leave a server
// listening in it (a daemon whose close failed half-way did, once).
const servers = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap').length;
let serversBefore = 0;
beforeAll(() => {
  serversBefore = servers();
});
afterAll(async () => {
  // A closed server's handle goes in libuv's next close phase, a moment after close() resolves.
  for (let i = 0; i < 20 && servers() > serversBefore; i++) await new Promise((r) => setTimeout(r, 50));
  expect(servers(), 'servers left listening by this file').toBeLessThanOrEqual(serversBefore);
});
