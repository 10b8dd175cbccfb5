/**
 * Many idle tunnels from one process, for the relay-memory figure (bench/run.js, scenario
 * "idle"). One JSON spec in argv[2]: { port, count, concurrency, audience, timeoutS }.
 * Each tunnel is one WebSocket to ws://127.0.0.1:<port>/_burrow/connect speaking just enough of
 * the agent protocol (packages/protocol) to stay registered: HELLO -> signed REGISTER ->
 * REGISTERED, then PONG for every PING. No local app behind them.
 *
 * stdout, one JSON line each:
 *   {"event":"ready","open":N,"failed":F,"ms":..,"errors":{..}}   once all attempts are done
 *   {"event":"closed","code":..,"reason":"..","afterReadyMs":..}   a registered tunnel closed after "ready"
 * On SIGTERM, or when stdin closes (the harness died), it exits; the kernel closes the sockets.
 * Keys come from node:crypto (native Ed25519): tweetnacl's key derivation costs ~13 ms a key,
 * minutes for 10,000 tunnels. The signature is the protocol package's own signRegistration.
 */
const crypto = require('node:crypto');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const WebSocket = require('ws');
const P = require(path.join(__dirname, '../../packages/protocol/dist/index.js'));

const spec = JSON.parse(process.argv[2]);
const concurrency = spec.concurrency ?? 50;
const timeoutMs = (spec.timeoutS ?? 20) * 1000;
const url = `ws://127.0.0.1:${spec.port}/_burrow/connect`;

/** tweetnacl-form secret key (seed ‖ public key) from a native Ed25519 key pair. */
function newSecretKey() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
  const pub = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  return Buffer.concat([seed, pub]);
}

// Once: the native pair is the same key tweetnacl derives from that seed.
{
  const sk = newSecretKey();
  const kp = P.keyPairFromSeed(sk.subarray(0, 32));
  if (!Buffer.from(kp.publicKey).equals(sk.subarray(32))) {
    process.stderr.write('light-agents: native Ed25519 key does not match tweetnacl\n');
    process.exit(1);
  }
}

const sockets = new Set();
const errors = {};
let ready = false;
let readyAt = 0;
let closedAfterReady = 0;

function countError(key) {
  errors[key] = (errors[key] ?? 0) + 1;
}

function openOne() {
  return new Promise((resolve) => {
    const secretKey = newSecretKey();
    const ws = new WebSocket(url, { perMessageDeflate: false, headers: { host: `localhost:${spec.port}` }, handshakeTimeout: timeoutMs });
    let registered = false;
    let settled = false;
    const done = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err !== undefined) {
        countError(err);
        ws.terminate();
      }
      resolve(err === undefined);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    ws.on('message', (data) => {
      try {
        P.decodeFrames(data, 'relayToAgent', (f) => {
          switch (f.type) {
            case P.FrameType.HELLO: {
              const hello = P.decodeHello(f.payload);
              const reg = P.signRegistration({ secretKey, nonce: hello.nonce, audience: spec.audience, nowMs: Date.now() });
              ws.send(P.encodeFrame(P.FrameType.REGISTER, 0, 0, P.encodeJson(reg)));
              break;
            }
            case P.FrameType.REGISTERED:
              registered = true;
              sockets.add(ws);
              done();
              break;
            case P.FrameType.PING:
              ws.send(P.encodeFrame(P.FrameType.PONG, 0, 0, Buffer.from(f.payload)));
              break;
            case P.FrameType.ERROR:
            case P.FrameType.GOAWAY: {
              const r = P.decodeReason(f.payload);
              if (!registered) done(r.code);
              else countError(`after registration: ${r.code}`);
              break;
            }
            default:
              // OPEN etc.: nobody sends requests to these tunnels.
              break;
          }
        });
      } catch (err) {
        done(err.code ?? err.message);
      }
    });
    ws.on('error', (err) => done(err.code ?? err.message));
    ws.on('close', (code, reason) => {
      sockets.delete(ws);
      if (!registered) {
        done(`closed ${code}`);
        return;
      }
      if (ready) {
        closedAfterReady++;
        process.stdout.write(
          `${JSON.stringify({ event: 'closed', code, reason: reason.toString(), afterReadyMs: Math.round(performance.now() - readyAt), closedAfterReady })}\n`,
        );
      }
    });
  });
}

(async () => {
  const t0 = performance.now();
  let next = 0;
  let failed = 0;
  const lane = async () => {
    while (next < spec.count) {
      next++;
      if (!(await openOne())) failed++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, spec.count) }, lane));
  ready = true;
  readyAt = performance.now();
  process.stdout.write(`${JSON.stringify({ event: 'ready', open: sockets.size, failed, ms: Math.round(readyAt - t0), errors })}\n`);
})().catch((err) => {
  process.stderr.write(`light-agents: ${err?.stack ?? err}\n`);
  process.exit(1);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
