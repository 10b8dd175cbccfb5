import type { Bus, BusMessage } from '@burrow/bus';
import { FrameType } from '@burrow/protocol';
import { MAX_OWED_RESETS, PeerResets } from '../src/peerResets';

/** Just enough of a Bus: whether it is up, and what was published where. */
function fakeBus(nodeId = 'me') {
  const published: [string, BusMessage][] = [];
  const bus = { nodeId, up: true, isUp: () => bus.up, publish: (node: string, m: BusMessage) => void published.push([node, m]) };
  return { bus, published, asBus: bus as unknown as Bus };
}

const reset = (streamId: number): BusMessage => ({ kind: 'toIngress', frame: { type: FrameType.RESET, flags: 0, streamId, payload: Buffer.alloc(0) } });

describe('PeerResets', () => {
  test('with the bus up a RESET goes out at once; with it down, once it is back, in order', () => {
    const { bus, published, asBus } = fakeBus();
    const resets = new PeerResets(asBus);
    resets.send('b', reset(1));
    expect(published).toEqual([['b', reset(1)]]);
    bus.up = false;
    resets.send('b', reset(2));
    resets.send('c', reset(3));
    resets.keep('b', reset(4));
    expect(published).toHaveLength(1);
    expect(resets.size).toBe(3);
    bus.up = true;
    resets.flush();
    expect(published.slice(1)).toEqual([
      ['b', reset(2)],
      ['c', reset(3)],
      ['b', reset(4)],
    ]);
    expect(resets.size).toBe(0);
  });

  test('to this node itself a RESET always goes at once (local delivery needs no Redis)', () => {
    const { bus, published, asBus } = fakeBus('me');
    bus.up = false;
    new PeerResets(asBus).send('me', reset(7));
    expect(published).toEqual([['me', reset(7)]]);
  });

  test(`at most ${MAX_OWED_RESETS} are kept while the bus is down; the oldest go first`, () => {
    const { bus, published, asBus } = fakeBus();
    const resets = new PeerResets(asBus);
    bus.up = false;
    for (let i = 0; i < MAX_OWED_RESETS + 2; i++) resets.send('b', reset(i));
    expect(resets.size).toBe(MAX_OWED_RESETS);
    bus.up = true;
    resets.flush();
    expect(published).toHaveLength(MAX_OWED_RESETS);
    expect(published[0]?.[1]).toEqual(reset(2));
  });
});
