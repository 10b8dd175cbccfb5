import type { AddressInfo } from 'node:net';
import { binaryFrameHeader, FrameBatcher, sendVectored, VECTOR_MIN_PAYLOAD_BYTES } from '@burrow/mux';
import { decodeFrames, FrameType } from '@burrow/protocol';
import { WebSocket, WebSocketServer } from 'ws';
import { pseudoRandomBytes } from './harness';

const zeroMask = (mask: Buffer): void => {
  mask.fill(0);
};

/** A ws server and a client connected to it over loopback, as the relay and agent set them up. */
async function wsPair(): Promise<{ server: WebSocket; client: WebSocket; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const serverSide = new Promise<WebSocket>((resolve) => wss.once('connection', (ws) => resolve(ws)));
  const { port } = wss.address() as AddressInfo;
  const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, generateMask: zeroMask });
  await new Promise<void>((resolve, reject) => {
    client.once('open', () => resolve());
    client.once('error', reject);
  });
  const server = await serverSide;
  return {
    server,
    client,
    close: async () => {
      client.terminate();
      server.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

/** The next n binary messages on ws. */
function messages(ws: WebSocket, n: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    const onMessage = (data: Buffer, isBinary: boolean): void => {
      if (!isBinary) reject(new Error('text message'));
      got.push(Buffer.from(data));
      if (got.length === n) {
        ws.off('message', onMessage);
        resolve(got);
      }
    };
    ws.on('message', onMessage);
    ws.once('close', (code) => reject(new Error(`closed ${code} after ${got.length} messages`)));
  });
}

describe('binaryFrameHeader', () => {
  test.each([
    [0, false, '8200'],
    [125, false, '827d'],
    [126, false, '827e007e'],
    [65535, false, '827effff'],
    [65536, false, '827f0000000000010000'],
    [2 ** 32 + 5, false, '827f0000000100000005'],
    [5, true, '828500000000'],
    [300, true, '82fe012c00000000'],
    [70000, true, '82ff000000000001117000000000'],
  ])('%d bytes, masked %s: %s', (length, masked, hex) => {
    expect(binaryFrameHeader(length, masked).toString('hex')).toBe(hex);
  });
});

describe('sendVectored over a real ws connection', () => {
  let pair: Awaited<ReturnType<typeof wsPair>>;
  beforeEach(async () => {
    pair = await wsPair();
  });
  afterEach(async () => {
    await pair.close();
  });

  test.each([
    ['client to server (masked, zero key)', 'client'],
    ['server to client (unmasked)', 'server'],
  ] as const)('%s: parts arrive as one message, in order with ws.send around them', async (_name, from) => {
    const sender = from === 'client' ? pair.client : pair.server;
    const receiver = from === 'client' ? pair.server : pair.client;
    const parts = [Buffer.from('head'), pseudoRandomBytes(70_000, 1), Buffer.alloc(0), pseudoRandomBytes(100, 2), pseudoRandomBytes(16_384, 3)];
    const joined = Buffer.concat(parts);
    const small = [Buffer.from('a'), Buffer.from('bc')];
    const got = messages(receiver, 4);
    let sent = 0;
    sender.send(Buffer.from('before'));
    expect(sendVectored(sender, parts, joined.length, () => sent++)).toBe(true);
    expect(sendVectored(sender, small, 3, () => sent++)).toBe(true);
    sender.send(Buffer.from('after'));
    const received = await got;
    expect(received.map((b) => b.length)).toEqual([6, joined.length, 3, 5]);
    expect(received[1]?.equals(joined)).toBe(true);
    expect(received.map((b, i) => (i === 1 ? 'joined' : b.toString()))).toEqual(['before', 'joined', 'abc', 'after']);
    expect(sent).toBe(2);
  });

  test('refuses, writing nothing, once the socket is closing or gone, or when ws has frames of its own queued', async () => {
    const parts = [Buffer.from('x'), Buffer.from('y')];
    expect(sendVectored({ readyState: 1, _isServer: true, _socket: null, _sender: { _state: 0, _queue: [] } }, parts, 2)).toBe(false);
    const busySender = { readyState: 1, _isServer: true, _socket: { cork() {}, uncork() {}, write: () => true }, _sender: { _state: 1, _queue: [] } };
    expect(sendVectored(busySender, parts, 2)).toBe(false);
    expect(sendVectored({ ...busySender, _sender: { _state: 0, _queue: [{}] } }, parts, 2)).toBe(false);
    expect(sendVectored({ ...busySender, _sender: { _state: 0, _queue: [] } }, [], 0)).toBe(false);
    expect(sendVectored({}, parts, 2)).toBe(false);
    const closed = new Promise<void>((resolve) => pair.server.once('close', () => resolve()));
    pair.client.close(1000);
    expect(sendVectored(pair.client, parts, 2)).toBe(false);
    await closed;
    expect(sendVectored(pair.server, parts, 2)).toBe(false);
  });
});

describe('FrameBatcher with a vector writer', () => {
  const manual = (): { schedule: (f: () => void) => void; run: () => void } => {
    const pending: Array<() => void> = [];
    return {
      schedule: (f) => {
        pending.push(f);
      },
      run: () => {
        for (const f of pending.splice(0)) f();
      },
    };
  };

  test('a batch carrying body bytes goes as its parts, unjoined; small batches are joined', () => {
    const vectors: Buffer[][] = [];
    const writes: Buffer[] = [];
    const sched = manual();
    const b = new FrameBatcher(
      (batch) => writes.push(batch),
      sched.schedule,
      undefined,
      (parts, bytes) => {
        expect(parts.reduce((n, p) => n + p.length, 0)).toBe(bytes);
        vectors.push([...parts]);
        return true;
      },
    );
    const body = pseudoRandomBytes(VECTOR_MIN_PAYLOAD_BYTES, 7);
    b.sendFrame(FrameType.RESPONSE, 0, 2, Buffer.from('head'));
    b.sendFrame(FrameType.DATA, 0, 2, body);
    sched.run();
    expect(writes).toHaveLength(0);
    expect(vectors).toHaveLength(1);
    // The payload is the caller's buffer itself: no copy.
    expect(vectors[0]?.includes(body)).toBe(true);
    const frames: Array<[number, number, number]> = [];
    decodeFrames(Buffer.concat(vectors[0] as Buffer[]), 'agentToRelay', (f) => frames.push([f.type, f.streamId, f.payload.length]));
    expect(frames).toEqual([
      [FrameType.RESPONSE, 2, 4],
      [FrameType.DATA, 2, VECTOR_MIN_PAYLOAD_BYTES],
    ]);
    b.sendFrame(FrameType.DATA, 0, 2, Buffer.alloc(VECTOR_MIN_PAYLOAD_BYTES - 1));
    b.sendFrame(FrameType.END, 0, 2);
    sched.run();
    expect(vectors).toHaveLength(1);
    expect(writes).toHaveLength(1);
  });

  test('when the vector writer refuses, the same bytes go joined to write', () => {
    const writes: Buffer[] = [];
    const sched = manual();
    let offered = 0;
    const b = new FrameBatcher(
      (batch) => writes.push(batch),
      sched.schedule,
      undefined,
      () => {
        offered++;
        return false;
      },
    );
    const body = pseudoRandomBytes(20_000, 9);
    b.sendFrame(FrameType.DATA, 0, 2, body);
    b.sendFrame(FrameType.END, 0, 2);
    sched.run();
    expect(offered).toBe(1);
    expect(writes).toHaveLength(1);
    const frames: Array<[number, number, Buffer]> = [];
    decodeFrames(writes[0] as Buffer, 'agentToRelay', (f) => frames.push([f.type, f.streamId, f.payload]));
    expect(frames.map(([t, id]) => [t, id])).toEqual([
      [FrameType.DATA, 2],
      [FrameType.END, 2],
    ]);
    expect(frames[0]?.[2].equals(body)).toBe(true);
  });
});
