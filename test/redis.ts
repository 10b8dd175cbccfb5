/**
 * Test harness: real redis-server processes on free loopback ports, in temp dirs.
 *
 * Each server runs under a tiny sh wrapper that holds a pipe from this process: when this process
 * dies in any way (even SIGKILL), the pipe closes and the wrapper kills its redis-server, so no
 * server outlives jest. stop()/kill() end servers explicitly; temp dirs are removed on stop and
 * at process exit.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RedisServer {
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** Graceful shutdown (SIGTERM); waits until the process is gone. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash; waits until the process is gone. */
  kill(): Promise<void>;
  /** Starts the server again on the same port. Empty data (persistence is off). */
  restart(): Promise<void>;
}

export interface RedisCluster {
  /** host:port of each master. */
  readonly seeds: string[];
  readonly ports: number[];
  stop(): Promise<void>;
}

export interface StartRedisOptions {
  /** Extra redis-server arguments, e.g. ['--cluster-enabled', 'yes']. */
  readonly args?: readonly string[];
  /** Use this port instead of a free one. */
  readonly port?: number;
}

// Background jobs of sh read /dev/null unless told otherwise, hence the explicit fd 3 for the watcher.
const WRAPPER = 'exec 3<&0; redis-server "$@" </dev/null & pid=$!; echo "$pid"; (cat <&3 >/dev/null; kill -9 "$pid" 2>/dev/null) & wait "$pid"';

interface Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<void>;
  /** What the wrapper and redis-server wrote to stderr (startup errors). */
  readonly stderr: () => string;
}

const live = new Set<Proc>();
const dirs = new Set<string>();

process.once('exit', () => {
  for (const p of live) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

let checked = false;
function requireRedis(): void {
  if (checked) return;
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'pipe' });
  } catch (err) {
    throw new Error(
      `redis-server is not installed or not on PATH (${(err as Error).message}); the Redis bus tests need Redis 7 (apt-get install redis-server)`,
    );
  }
  checked = true;
}

/** A free loopback TCP port (bound to port 0, then released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Sends one inline command over a raw socket; resolves with the raw reply text. */
export function rawCommand(port: number, command: string, timeoutMs = 500): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to ${command} on port ${port}`));
    }, timeoutMs);
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk) => {
      data += chunk.toString('utf8');
      // Simple (+/-/:) replies end at the first CRLF; bulk replies after their length.
      const m = /^\$(\d+)\r\n/.exec(data);
      if ((m !== null && data.length >= m[0].length + Number(m[1]) + 2) || (m === null && data.includes('\r\n') && !data.startsWith('$'))) {
        clearTimeout(timer);
        socket.end();
        resolve(data);
      }
    });
  });
}

async function until(what: string, check: () => Promise<boolean>, ms: number, detail: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} within ${ms} ms${detail()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function spawnRedis(args: string[]): Promise<Proc> {
  const child = spawn('sh', ['-c', WRAPPER, 'redis-wrapper', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let err = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    if (err.length < 10_000) err += chunk.toString('utf8');
  });
  const stderr = (): string => err;
  return new Promise((resolve, reject) => {
    let out = '';
    let started = false;
    child.once('error', reject);
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const line = /^(\d+)\n/.exec(out);
      if (line !== null && !started) {
        started = true;
        const proc = { child, pid: Number(line[1]), exited, stderr };
        live.add(proc);
        resolve(proc);
      }
    });
    void exited.then(() => {
      if (!started) reject(new Error(`redis-server wrapper exited before starting: ${err}`));
    });
  });
}

async function endProc(proc: Proc, signal: NodeJS.Signals): Promise<void> {
  try {
    process.kill(proc.pid, signal);
  } catch {
    // already gone
  }
  const timer = setTimeout(() => {
    try {
      process.kill(proc.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }, 3000);
  await proc.exited;
  clearTimeout(timer);
  proc.child.stdin?.end();
  live.delete(proc);
}

/** Starts a redis-server on a free loopback port and waits until it answers PING. */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  requireRedis();
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'burrow-redis-'));
  dirs.add(dir);
  const log = join(dir, 'redis.log');
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', log, ...(options.args ?? [])];
  let proc: Proc | undefined;
  let stopped = false;
  const logTail = (): string => {
    let text = proc !== undefined ? `; stderr: ${proc.stderr()}` : '';
    try {
      text += `; redis log:\n${readFileSync(log, 'utf8').split('\n').slice(-15).join('\n')}`;
    } catch {
      // no log yet
    }
    return text;
  };

  const boot = async (): Promise<void> => {
    proc = await spawnRedis(args);
    const p = proc;
    let gone = false;
    void p.exited.then(() => {
      gone = true;
    });
    await until(
      `redis-server on port ${port} did not answer PING`,
      async () => {
        if (gone) throw new Error('exited');
        return (await rawCommand(port, 'PING')).startsWith('+PONG');
      },
      5000,
      logTail,
    ).catch(async (err) => {
      await endProc(p, 'SIGKILL');
      throw err;
    });
    if (gone) throw new Error(`redis-server on port ${port} exited at startup${logTail()}`);
  };

  const end = async (signal: NodeJS.Signals): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (p !== undefined) await endProc(p, signal);
  };

  await boot();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill: () => end('SIGKILL'),
    async stop() {
      if (stopped) return;
      stopped = true;
      await end('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
      dirs.delete(dir);
    },
    async restart() {
      await end('SIGKILL');
      // nodes.conf etc. stay; data is not persisted (--save '' --appendonly no).
      await boot();
    },
  };
}

function cli(args: string[], timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`redis-cli ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Starts `masters` cluster-enabled redis-servers (no replicas), joins them, and waits for cluster_state:ok on all. */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  requireRedis();
  const servers: RedisServer[] = [];
  try {
    for (let i = 0; i < masters; i++) {
      const busPort = await freePort();
      servers.push(
        await startRedis({
          args: ['--cluster-enabled', 'yes', '--cluster-port', String(busPort), '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'],
        }),
      );
    }
    const seeds = servers.map((s) => `127.0.0.1:${s.port}`);
    await cli(['--cluster', 'create', ...seeds, '--cluster-replicas', '0', '--cluster-yes']);
    for (const s of servers) {
      await until(
        `cluster node ${s.port} did not reach cluster_state:ok`,
        async () => (await cli(['-p', String(s.port), 'cluster', 'info'], 2000)).includes('cluster_state:ok'),
        15_000,
      );
    }
    return {
      seeds,
      ports: servers.map((s) => s.port),
      async stop() {
        await Promise.all(servers.map((s) => s.stop()));
      },
    };
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop().catch(() => {})));
    throw err;
  }
}
