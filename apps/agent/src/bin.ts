#!/usr/bin/env node
/** `burrow` command: parse, load the key, run the agent until Ctrl-C. Usage errors exit 2. */
import { randomBytes } from 'node:crypto';
import { shareSecretDigest } from '@burrow/protocol';
import { Agent } from './agent';
import { parseAgentArgs, USAGE, UsageError } from './cli';
import type { Connector } from './connector';
import { defaultKeyPath, KeyFileError, loadOrCreateKey } from './keyStore';
import { attachConnectOutput, attachHumanOutput, attachJsonOutput, attachShareOutput } from './output';
import { AGENT_VERSION } from './version';

/**
 * Lines written in one turn of the event loop go out in one write: under load that is one
 * syscall per turn instead of one per request (stdout to a file or pipe is synchronous).
 */
function batchedWriter(write: (text: string) => void): (line: string) => void {
  let pending = '';
  const flush = (): void => {
    const text = pending;
    pending = '';
    write(text);
  };
  process.on('exit', () => {
    if (pending !== '') flush();
  });
  return (line) => {
    if (pending === '') setImmediate(flush);
    pending += line;
  };
}

function main(): void {
  let command: ReturnType<typeof parseAgentArgs>;
  try {
    command = parseAgentArgs(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`burrow: ${err.message}\n\n${USAGE}`);
      process.exit(2);
    }
    throw err;
  }
  if (command.kind === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  if (command.kind === 'version') {
    process.stdout.write(`burrow ${AGENT_VERSION}\n`);
    return;
  }
  if (command.kind === 'start') {
    const out = batchedWriter((text) => process.stdout.write(text));
    const exit = (code: number): void => {
      process.exitCode = code;
      setImmediate(() => process.exit(code)); // after the batched lines are written
    };
    // Loaded only here: the config file parser (yaml) costs start-up time every other command would pay.
    const { runStart } = require('./supervisor') as typeof import('./supervisor');
    const supervisor = runStart(command, { env: process.env, out, log: (line) => process.stderr.write(line), color: process.stdout.isTTY === true, exit });
    const stop = (): void => void supervisor?.stop();
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    return;
  }
  const keyPath = command.keyFile ?? defaultKeyPath();
  let key: ReturnType<typeof loadOrCreateKey>;
  try {
    key = loadOrCreateKey(keyPath);
  } catch (err) {
    process.stderr.write(`burrow: ${(err as Error).message}\n`);
    process.exit(err instanceof KeyFileError ? 2 : 1);
  }
  const log = (line: string): void => {
    process.stderr.write(line);
  };
  if (key.created) log(`burrow: created a new key at ${key.path}\n`);
  if (key.looseMode !== undefined) log(`burrow: warning: ${key.path} is readable by others (mode ${key.looseMode.toString(8)}); run chmod 600 on it\n`);
  const out = batchedWriter((text) => process.stdout.write(text));
  const color = process.stdout.isTTY === true;
  if (command.kind === 'share' || command.kind === 'connect') {
    let worker: Agent | Connector;
    if (command.kind === 'share') {
      // A secret nobody chose is made here and printed once, in the connect command to use.
      const generated = command.secret === undefined;
      const secret = command.secret ?? randomBytes(24).toString('base64url');
      worker = new Agent({
        relay: command.relay,
        target: command.target,
        keyPair: key.keyPair,
        deadAfterMs: command.deadAfterMs,
        share: { name: command.name, secretSha256: shareSecretDigest(secret), allow: command.allow },
        ...(command.token !== undefined ? { token: command.token } : {}),
      });
      attachShareOutput(worker, { command, secret: generated ? secret : undefined }, out, color);
    } else {
      const { Connector: ConnectorClass } = require('./connector') as typeof import('./connector');
      worker = new ConnectorClass({
        relay: command.relay,
        keyPair: key.keyPair,
        share: command.share,
        listen: command.listen,
        deadAfterMs: command.deadAfterMs,
        ...(command.secret !== undefined ? { secret: command.secret } : {}),
        ...(command.target !== undefined ? { target: command.target } : {}),
        ...(command.token !== undefined ? { token: command.token } : {}),
      });
      attachConnectOutput(worker, command, out, color);
    }
    const w = worker;
    w.on('fatal', () => {
      process.exitCode = 1;
      void w.close();
    });
    let stopping = false;
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      w.close().then(() => process.exit(0));
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    w.start();
    return;
  }
  const agent = new Agent({
    relay: command.relay,
    target: command.target,
    keyPair: key.keyPair,
    hostHeader: command.hostHeader,
    insecureLocalTls: command.insecureLocalTls,
    deadAfterMs: command.deadAfterMs,
    ...(command.subdomain !== undefined ? { subdomain: command.subdomain } : {}),
    ...(command.session !== undefined ? { session: command.session } : {}),
    ...(command.access !== undefined ? { access: command.access } : {}),
    ...(command.token !== undefined ? { token: command.token } : {}),
    ...(command.kind === 'tcp' ? { tcp: true } : {}),
  });
  if (command.json) attachJsonOutput(agent, out);
  else attachHumanOutput(agent, command.target, out, color);
  agent.on('fatal', () => {
    process.exitCode = 1;
  });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    agent.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  agent.start();
}

main();
