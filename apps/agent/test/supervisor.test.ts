/**
 * The supervisor of `burrow start` with fake workers: restarts with capped backoff, gives up
 * after repeated failures or at once on an unfixable error, stops every worker, and its output.
 * No sockets; timers are real but short.
 */
import { EventEmitter } from 'node:events';
import { BurrowError } from '@burrow/protocol';
import type { AgentEvents, OnlineEvent } from '../src/agent';
import { attachStartHumanOutput, attachStartJsonOutput, type ForwardWorker, Supervisor, type SupervisorEvent } from '../src/supervisor';

class FakeWorker extends EventEmitter<AgentEvents> implements ForwardWorker {
  started = false;
  closed = false;
  constructor(readonly name: string) {
    super();
  }
  start(): void {
    this.started = true;
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
  online(reconnected = false): void {
    this.emit('online', { url: `http://${this.name}.localhost`, label: this.name, sessionId: 's', reconnected, relay: 'http://r' });
  }
}

const onlineEvent = (name: string): OnlineEvent => ({ url: `http://${name}.localhost`, label: name, sessionId: 's', reconnected: false, relay: 'http://r' });

interface Rig {
  supervisor: Supervisor<{ name: string }>;
  workers: Map<string, FakeWorker[]>;
  events: SupervisorEvent[];
  last: (name: string) => FakeWorker;
}

function rig(names: string[], options: { maxFailures?: number; throwFor?: Set<string> } = {}): Rig {
  const workers = new Map<string, FakeWorker[]>(names.map((n) => [n, []]));
  const events: SupervisorEvent[] = [];
  const supervisor = new Supervisor({
    forwards: names.map((name) => ({ name })),
    createWorker: (f) => {
      if (options.throwFor?.has(f.name)) throw new Error(`cannot make ${f.name}`);
      const w = new FakeWorker(f.name);
      workers.get(f.name)?.push(w);
      return w;
    },
    restartInitialMs: 10,
    restartMaxMs: 40,
    ...(options.maxFailures !== undefined ? { maxFailures: options.maxFailures } : {}),
  });
  supervisor.on('event', (e) => events.push(e));
  const last = (name: string): FakeWorker => {
    const list = workers.get(name) as FakeWorker[];
    return list[list.length - 1] as FakeWorker;
  };
  return { supervisor, workers, events, last };
}

const waitFor = async (check: () => boolean, what: string): Promise<void> => {
  const deadline = Date.now() + 3000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
};

describe('Supervisor', () => {
  test('starts one worker per forward and passes on their events with the forward name', async () => {
    const { supervisor, last, events } = rig(['web', 'api']);
    supervisor.start();
    expect(last('web').started && last('api').started).toBe(true);
    last('api').online();
    last('web').emit('reconnecting', { attempt: 1, delayMs: 100, reason: 'gone' });
    expect(events).toEqual([
      { type: 'online', forward: 'api', online: onlineEvent('api') },
      { type: 'reconnecting', forward: 'web', reconnecting: { attempt: 1, delayMs: 100, reason: 'gone' } },
    ]);
    expect(await supervisor.stop()).toEqual({ exitCode: 0 });
    expect(last('web').closed && last('api').closed).toBe(true);
  });

  test('a retryable fatal error restarts the forward with doubling, capped delays; coming online resets the count', async () => {
    const { supervisor, workers, last, events } = rig(['web', 'api'], { maxFailures: 10 });
    supervisor.start();
    for (let i = 1; i <= 4; i++) {
      last('web').emit('fatal', new BurrowError('BURROW_ERR_QUOTA_TUNNELS', 'full'));
      await waitFor(() => workers.get('web')?.length === i + 1, `restart ${i}`);
    }
    expect(events.filter((e) => e.type === 'restarting').map((e) => (e.type === 'restarting' ? [e.failures, e.delayMs] : []))).toEqual([
      [1, 10],
      [2, 20],
      [3, 40],
      [4, 40],
    ]);
    last('web').online();
    last('web').emit('fatal', new BurrowError('BURROW_ERR_QUOTA_TUNNELS', 'full'));
    expect(events[events.length - 1]).toEqual(expect.objectContaining({ type: 'restarting', failures: 1, delayMs: 10 }));
    // The other forward never noticed.
    expect(workers.get('api')).toHaveLength(1);
    expect(last('api').closed).toBe(false);
    await supervisor.stop();
  });

  test('after maxFailures failures in a row without coming online it gives up: every worker closed, exit 1', async () => {
    const { supervisor, workers, last, events } = rig(['web', 'api'], { maxFailures: 3 });
    supervisor.start();
    last('api').online();
    for (let i = 1; i <= 3; i++) {
      await waitFor(() => workers.get('web')?.length === i, `worker ${i}`);
      last('web').emit('fatal', new BurrowError('BURROW_ERR_NAME_LIMIT', 'no room'));
    }
    expect(await supervisor.done).toEqual({ exitCode: 1, forward: 'web', code: 'BURROW_ERR_NAME_LIMIT', message: 'no room' });
    expect(events[events.length - 1]).toEqual({
      type: 'error',
      forward: 'web',
      code: 'BURROW_ERR_NAME_LIMIT',
      message: 'no room',
      failures: 3,
      why: 'repeated',
    });
    expect(last('api').closed).toBe(true);
    expect(workers.get('web')).toHaveLength(3);
  });

  test('an unfixable error stops everything at once', async () => {
    const { supervisor, workers, last, events } = rig(['web', 'api']);
    supervisor.start();
    last('web').emit('fatal', new BurrowError('BURROW_ERR_NAME_TAKEN', 'subdomain "shop" belongs to another key'));
    const result = await supervisor.done;
    expect(result).toEqual(expect.objectContaining({ exitCode: 1, forward: 'web', code: 'BURROW_ERR_NAME_TAKEN' }));
    expect(events).toEqual([expect.objectContaining({ type: 'error', forward: 'web', why: 'unfixable', failures: 1 })]);
    expect(last('api').closed).toBe(true);
    expect(workers.get('web')).toHaveLength(1);
  });

  test('a worker that throws while being made is a failure like any other', async () => {
    const { supervisor, events } = rig(['web'], { maxFailures: 2, throwFor: new Set(['web']) });
    supervisor.start();
    expect(await supervisor.done).toEqual({ exitCode: 1, forward: 'web', code: 'BURROW_ERR_INTERNAL', message: 'cannot make web' });
    expect(events.map((e) => e.type)).toEqual(['restarting', 'error']);
  });

  test('stop() during a restart delay cancels the restart; late events of old workers are ignored', async () => {
    const { supervisor, workers, last, events } = rig(['web']);
    supervisor.start();
    const first = last('web');
    first.emit('fatal', new BurrowError('BURROW_ERR_TOKEN_EXPIRED', 'clock'));
    first.online();
    expect(events.map((e) => e.type)).toEqual(['restarting']);
    expect(await supervisor.stop()).toEqual({ exitCode: 0 });
    await new Promise((r) => setTimeout(r, 30));
    expect(workers.get('web')).toHaveLength(1);
  });
});

describe('start output', () => {
  const emitAll = (emitter: EventEmitter<{ event: [SupervisorEvent] }>): void => {
    emitter.emit('event', { type: 'online', forward: 'web', online: { ...onlineEvent('lbl'), subdomainUrl: 'http://shop.localhost' } });
    emitter.emit('event', { type: 'online', forward: 'api', online: { ...onlineEvent('lbl2'), reconnected: true } });
    emitter.emit('event', {
      type: 'request',
      forward: 'api',
      request: { method: 'GET', path: '/x', status: 200, durationMs: 1.234, websocket: false },
    });
    emitter.emit('event', { type: 'reconnecting', forward: 'web', reconnecting: { attempt: 2, delayMs: 500, reason: 'gone' } });
    emitter.emit('event', {
      type: 'restarting',
      forward: 'web',
      code: 'BURROW_ERR_QUOTA_TUNNELS',
      message: 'full',
      failures: 1,
      maxFailures: 5,
      delayMs: 1000,
    });
    emitter.emit('event', { type: 'error', forward: 'api', code: 'BURROW_ERR_NAME_TAKEN', message: 'taken', failures: 1, why: 'unfixable' });
  };

  test('--json: one object per line, each naming its forward', () => {
    const lines: string[] = [];
    const emitter = new EventEmitter<{ event: [SupervisorEvent] }>();
    attachStartJsonOutput(emitter, (l) => lines.push(l));
    emitAll(emitter);
    expect(lines.map((l) => JSON.parse(l))).toEqual([
      { event: 'online', forward: 'web', url: 'http://shop.localhost', label: 'lbl', labelUrl: 'http://lbl.localhost' },
      { event: 'reconnected', forward: 'api', url: 'http://lbl2.localhost', label: 'lbl2' },
      { event: 'request', forward: 'api', method: 'GET', path: '/x', status: 200, durationMs: 1.2 },
      { event: 'reconnecting', forward: 'web', attempt: 2, delayMs: 500, reason: 'gone' },
      { event: 'restarting', forward: 'web', code: 'BURROW_ERR_QUOTA_TUNNELS', message: 'full', failures: 1, delayMs: 1000 },
      { event: 'error', forward: 'api', code: 'BURROW_ERR_NAME_TAKEN', message: 'taken', failures: 1, why: 'unfixable' },
    ]);
  });

  test('human: lines start with the forward name, padded', () => {
    const lines: string[] = [];
    const emitter = new EventEmitter<{ event: [SupervisorEvent] }>();
    attachStartHumanOutput(
      emitter,
      new Map([
        ['web', 'http://localhost:3000'],
        ['api', 'http://localhost:8000'],
      ]),
      (l) => lines.push(l),
      false,
    );
    emitAll(emitter);
    expect(lines.join('')).toBe(
      [
        'web  online  http://shop.localhost  →  http://localhost:3000',
        'web  online  http://lbl.localhost  →  http://localhost:3000',
        'api  reconnected  http://lbl2.localhost',
        `api  GET     ${'/x'.padEnd(60)} 200 1.2 ms`,
        'web  reconnecting in 0.5 s (attempt 2): gone',
        'web  failed BURROW_ERR_QUOTA_TUNNELS: full; restarting in 1.0 s (failure 1 of 5)',
        'api  error BURROW_ERR_NAME_TAKEN: taken (retrying cannot fix this); stopping every forward',
        '',
      ].join('\n'),
    );
  });
});
