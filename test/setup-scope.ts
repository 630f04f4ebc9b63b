/**
 * Every test file runs in its own BOTWARDEN_SCOPE: its daemons (in-process or not) hunt only
 * processes that carry it, and give it to their bots; copies a test starts by hand inherit it from
 * process.env. Two test files, or two runs on one machine, never take each other's bots for copies,
 * so the files can run in parallel.
 */
import { randomUUID } from 'node:crypto';

process.env.BOTWARDEN_SCOPE = `test-${randomUUID()}`;
