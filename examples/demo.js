#!/usr/bin/env node
/**
 * `npm run demo`: the whole thing on one machine, as three real processes — a relay with the
 * embedded defaults, the example app, and an agent — then prints the public URL and a curl
 * line to try it. Ctrl-C stops all three.
 * Env: BURROW_PORT (relay, default 8080), DEMO_APP_PORT (default 3000), BURROW_HOME (agent key).
 */

const { spawn } = require('node:child_process');
const path = require('node:path');
const http = require('node:http');
const { defaultKeyPath, loadOrCreateKey } = require('../apps/agent/dist/index.js');
const { labelFor } = require('../packages/protocol/dist/index.js');

const root = path.join(__dirname, '..');
const relayPort = Number(process.env.BURROW_PORT ?? 8080);
const appPort = Number(process.env.DEMO_APP_PORT ?? 3000);
const children = [];

function start(name, args, env = {}) {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  child.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`demo: ${name} exited (${signal ?? code}); stopping\n`);
      stop(1);
    }
  });
  return child;
}

function prefix(child, name, stream) {
  let buf = '';
  child[stream].on('data', (d) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      process.stdout.write(`${name} | ${buf.slice(0, i)}\n`);
      buf = buf.slice(i + 1);
    }
  });
}

function waitHttp(port, host, pathName, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const req = http.get({ host: '127.0.0.1', port, path: pathName, headers: { host } }, (res) => {
        res.resume();
        if (res.statusCode === 200) resolve();
        else retry();
      });
      req.on('error', retry);
    };
    const retry = () => (Date.now() > deadline ? reject(new Error(`nothing answered on port ${port} within ${timeoutMs} ms`)) : setTimeout(attempt, 100));
    attempt();
  });
}

let stopping = false;
function stop(code) {
  if (stopping) return;
  stopping = true;
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 500).unref();
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

async function main() {
  const key = loadOrCreateKey(defaultKeyPath());
  const label = labelFor(key.keyPair.publicKey);
  const relay = start('relay', ['apps/relay/dist/main.js', '--port', String(relayPort), '--log-level', 'warn']);
  prefix(relay, 'relay', 'stdout');
  prefix(relay, 'relay', 'stderr');
  const app = start('app', ['examples/hello-app.js', String(appPort)]);
  prefix(app, 'app  ', 'stderr');
  await waitHttp(relayPort, `localhost:${relayPort}`, '/healthz', 10_000);
  await waitHttp(appPort, `127.0.0.1:${appPort}`, '/', 10_000);
  const agent = start('agent', ['apps/agent/dist/bin.js', 'http', `127.0.0.1:${appPort}`, '--relay', `http://localhost:${relayPort}`]);
  prefix(agent, 'agent', 'stderr');
  const host = `${label}.localhost:${relayPort}`;
  await waitHttp(relayPort, host, '/', 10_000);
  process.stdout.write(`
burrow demo is running
  relay      http://localhost:${relayPort}        (burrow-relay, single node)
  local app  http://127.0.0.1:${appPort}           (examples/hello-app.js)
  tunnel     http://${host}  →  http://127.0.0.1:${appPort}

Try it:
  curl -H 'Host: ${host}' http://127.0.0.1:${relayPort}/
  curl -N -H 'Host: ${host}' http://127.0.0.1:${relayPort}/events
  (browsers resolve *.localhost themselves: open http://${host}/)

Requests through the tunnel:
`);
  prefix(agent, 'agent', 'stdout');
}

main().catch((err) => {
  process.stderr.write(`demo: ${err.message}\n`);
  stop(1);
});
