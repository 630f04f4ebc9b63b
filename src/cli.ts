#!/usr/bin/env node
/**
 * The `botwarden` command. `daemon` runs the supervisor; the client commands
 * talk to a running daemon over its HTTP API.
 */
import { Command, Option } from 'commander';
import { ConfigError } from './config/load.js';
import { DataDirBusyError } from './db/daemon-lock.js';
import { startDaemon } from './daemon.js';
import { VERSION } from './version.js';

const program = new Command();
program.name('botwarden').description('Process supervisor for trading bots: one bot per account.').version(VERSION);

program
  .command('daemon')
  .description('run the supervisor daemon (foreground)')
  .option('--config <file>', 'config file (env BOTWARDEN_CONFIG, default config/botwarden.yaml)')
  .option('--data-dir <dir>', 'data dir (env BOTWARDEN_DATA_DIR, default data)')
  .option('--listen <host:port>', 'listen address (env BOTWARDEN_LISTEN, default 127.0.0.1:7070)')
  .option('--env-file <file>', 'API key secrets file (env BOTWARDEN_ENV_FILE, default .env)')
  .addOption(new Option('--leave-running', 'on SIGTERM leave bots running for the next daemon to adopt'))
  .action(async (opts: { config?: string; dataDir?: string; listen?: string; envFile?: string; leaveRunning?: boolean }) => {
    try {
      await startDaemon({
        flags: { config: opts.config, dataDir: opts.dataDir, listen: opts.listen, envFile: opts.envFile, leaveRunning: opts.leaveRunning },
        handleSignals: true,
      });
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`botwarden: ${err.message}\n`);
        process.exit(2);
      }
      if (err instanceof DataDirBusyError) {
        process.stderr.write(`botwarden: ${err.message}\n`);
        process.exit(1);
      }
      process.stderr.write(`botwarden: cannot start: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    }
  });

await program.parseAsync(process.argv);
