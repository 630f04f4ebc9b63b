#!/usr/bin/env node
/**
 * The `botwarden` command. `daemon` runs the supervisor; the other commands
 * talk to a running daemon over its HTTP API. Exit codes: 0 success,
 * 1 refused by the daemon (message on stderr), 2 usage error, 3 daemon unreachable.
 */
import v8 from 'node:v8';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import * as cmd from './cli/commands.js';
import { Client, RefusedError, resolveTarget, UnreachableError, UsageError, type GlobalOptions } from './cli/client.js';
import { ConfigError } from './config/load.js';
import { DataDirBusyError } from './db/daemon-lock.js';
import { VERSION } from './version.js';

const EXIT = { ok: 0, refused: 1, usage: 2, unreachable: 3 } as const;

const program = new Command();
program
  .name('botwarden')
  .description('Process supervisor for trading bots: at most one running bot per account.')
  .version(VERSION)
  .option('--listen <host:port>', 'daemon address (env BOTWARDEN_LISTEN; else <data-dir>/daemon.json, the config, 127.0.0.1:7070)')
  .option('--data-dir <dir>', 'data dir, for the token and the address (env BOTWARDEN_DATA_DIR, default data)')
  .option('--config <file>', 'config file (env BOTWARDEN_CONFIG, default config/botwarden.yaml)')
  .option('--json', 'print the API JSON, for scripts')
  .exitOverride()
  .showSuggestionAfterError()
  .configureOutput({ outputError: (s, write) => write(`botwarden: ${s.replace(/^error: /, '')}`) });

const int = (name: string, min = 0) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be a whole number >= ${min}`);
  return n;
};

/**
 * The daemon's young generation stays at V8's initial semi-space (1 MB) however it is started
 * (npm start, the botwarden bin, node dist/cli.js, systemd, the image): left alone it doubles up
 * to 16 MB per semi-space as the daemon allocates, some 40 MB of RSS with 1,000 bots for no gain
 * (docs/benchmarks.md). --max-semi-space-size works only on Node's command line, but the growth
 * factor is read at every growth, so it can be set here.
 */
function youngGeneration(): void {
  if (process.env.BOTWARDEN_SEMI_SPACE_GROWTH === 'default') return;
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

/** Wraps a client command: builds the client from the global options and maps errors to exit codes. */
function client(fn: (c: Client, out: cmd.Out, ...args: any[]) => Promise<unknown>) {
  return async (...args: unknown[]) => {
    const g = program.opts<GlobalOptions & { json?: boolean }>();
    const out: cmd.Out = { ...cmd.stdout, json: g.json === true };
    try {
      const c = new Client(resolveTarget(g), () => resolveTarget(g));
      // commander passes (...positionals, options, command): keep all but the command.
      const ok = await fn(c, out, ...args.slice(0, -1));
      process.exitCode = ok === false ? EXIT.refused : EXIT.ok;
    } catch (err) {
      if (err instanceof RefusedError) {
        process.stderr.write(`botwarden: ${err.message}\n`);
        if (out.json) process.stdout.write(`${JSON.stringify(err.body)}\n`);
        process.exitCode = EXIT.refused;
      } else if (err instanceof UnreachableError) {
        process.stderr.write(`botwarden: ${err.message}\n  Is the daemon running? Start it with: botwarden daemon\n`);
        process.exitCode = EXIT.unreachable;
      } else if (err instanceof UsageError) {
        process.stderr.write(`botwarden: ${err.message}\n`);
        process.exitCode = EXIT.usage;
      } else throw err;
    }
  };
}

program
  .command('daemon')
  .description('run the supervisor daemon in the foreground')
  .option('--dotenv <file>', 'the .env file of secrets (env BOTWARDEN_ENV_FILE, default .env)')
  // Node 20 reads a --env-file from a script's own arguments too, and exits 9 when the file is
  // missing before this code runs: kept for Node versions that leave it alone, but not shown.
  .addOption(new Option('--env-file <file>', 'the same as --dotenv (Node 20 takes it for itself: use --dotenv)').hideHelp())
  .addOption(new Option('--leave-running', 'on SIGTERM leave bots running for the next daemon to adopt'))
  .action(async (opts: { dotenv?: string; envFile?: string; leaveRunning?: boolean }) => {
    const g = program.opts<GlobalOptions>();
    youngGeneration();
    try {
      // Loaded only here: client commands need neither fastify nor SQLite, and start faster without them.
      const { startDaemon } = await import('./daemon.js');
      await startDaemon({
        flags: { config: g.config, dataDir: g.dataDir, listen: g.listen, envFile: opts.dotenv ?? opts.envFile, leaveRunning: opts.leaveRunning },
        handleSignals: true,
      });
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`botwarden: ${err.message}\n`);
        process.exit(EXIT.usage);
      }
      if (err instanceof DataDirBusyError || (err instanceof Error && err.name === 'UnsupportedPlatformError')) {
        process.stderr.write(`botwarden: ${err.message}\n`);
        process.exit(1);
      }
      process.stderr.write(`botwarden: cannot start: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    }
  });

program.command('start').argument('<account>').description("start an account's bot").action(client((c, o, a: string) => cmd.start(c, o, a)));

program
  .command('stop')
  .argument('<account>')
  .description("stop an account's bot: its stop signal, grace, then SIGKILL of the whole tree")
  .option('--grace <ms>', 'grace period in ms (default: the account stop.graceMs)', int('--grace'))
  .option('--force', 'SIGKILL now (grace 0), cutting short a stop already under way')
  .action(client((c, o, a: string, opts: { grace?: number; force?: boolean }) => cmd.stop(c, o, a, opts.grace, opts.force === true)));

program
  .command('restart')
  .argument('<account>')
  .description("restart an account's bot")
  .option('--grace <ms>', 'grace period in ms for the stop', int('--grace'))
  .action(client((c, o, a: string, opts: { grace?: number }) => cmd.restart(c, o, a, opts.grace)));

program.command('status').argument('[account]').description('every bot, or one in detail').action(client((c, o, a?: string) => cmd.status(c, o, a)));

program
  .command('logs')
  .argument('<account>')
  .description("a bot's output")
  .option('-n, --lines <n>', 'how many last lines', int('--lines'), 50)
  .option('-f, --follow', 'keep printing new lines until interrupted')
  .action(client((c, o, a: string, opts: { lines: number; follow?: boolean }) => cmd.logs(c, o, a, opts.lines, opts.follow === true)));

program
  .command('events')
  .description('follow the event stream until interrupted (resumes after a dropped connection)')
  .option('--types <prefixes>', 'comma-separated type prefixes, e.g. bot.,nonce.error')
  .option('--account <id>', 'only this account')
  .option('--since <id>', 'first replay the stored events after this id', int('--since'))
  .action(client((c, o, opts: cmd.EventOpts) => cmd.events(c, o, opts)));

program
  .command('audit')
  .description('who did what: every change and every refused request (SPEC 18), newest last')
  .option('--account <id>', 'only this account')
  .option('--since <id>', 'the audit events after this event id (default: the newest --limit)', int('--since'))
  .option('-n, --limit <n>', 'how many', int('--limit', 1), 50)
  .action(client((c, o, opts: cmd.AuditOpts) => cmd.audit(c, o, opts)));

program.command('health').description('daemon health (exit 1 when failing)').action(client((c, o) => cmd.health(c, o)));
const keysCmd = program.command('keys').description('API keys: free, leased, cooling, rejected or missing').action(client((c, o) => cmd.keys(c, o)));
keysCmd
  .command('enable')
  .argument('<id>')
  .description('a key the exchange rejected may be leased again (admin)')
  .action(client((c, o, id: string) => cmd.enableKey(c, o, id)));
program.command('leases').description('every account lease on the shared database (PostgreSQL mode)').action(client((c, o) => cmd.leases(c, o)));
program.command('dashboard').description('print the dashboard URL, with the token in its fragment').action(client(async (c, o) => cmd.dashboardUrl(c, o)));

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? EXIT.ok : EXIT.usage;
  } else throw err;
}
