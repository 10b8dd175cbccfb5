/**
 * `npm run soak`: many tunnels with mixed HTTP, streaming and WebSocket traffic for a set time
 * (10 minutes by default), faults injected into half of them, and a report of the operations, the
 * failures outside the injected faults (must be none) and the relay memory over time (must level
 * off). Exit code 0 when it passed, 1 when not, 2 on bad options. See bench/README.md ("Soak").
 * The parts live in bench/soak/; this file reads argv and env, prints, and handles signals.
 */
import { cleanup } from '../test/kit';
import { parseSoakOptions, SoakUsageError, soakHelp } from './soak/options';
import { formatReport, writeJson } from './soak/report';
import { runSoak } from './soak/runSoak';

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseSoakOptions>;
  try {
    parsed = parseSoakOptions(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof SoakUsageError) {
      process.stderr.write(`soak: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(soakHelp());
    return 0;
  }
  const { options } = parsed;
  const log = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  // Ctrl-C or a kill: stop everything started (relays, redis-server, proxies, agents), then go.
  let interrupted = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (interrupted) process.exit(130);
      interrupted = true;
      process.stderr.write(`\nsoak: ${signal}, stopping everything\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  const report = await runSoak(options, log);
  log(formatReport(report));
  if (options.jsonPath !== undefined) {
    writeJson(options.jsonPath, report);
    log(`report written to ${options.jsonPath}`);
  }
  return report.passed ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    await cleanup();
    process.exit(1);
  },
);
