import { Writable } from 'node:stream';
import { corkForTurn } from '@burrow/mux';

/** A writable that records how its chunks reached it: one call per write, or several per writev. */
function recordingWritable(): { w: Writable; calls: number[] } {
  const calls: number[] = [];
  const w = new Writable({
    write(_chunk, _enc, cb) {
      calls.push(1);
      cb();
    },
    writev(chunks, cb) {
      calls.push(chunks.length);
      cb();
    },
  });
  return { w, calls };
}

const nextTick = (): Promise<void> => new Promise((resolve) => process.nextTick(resolve));

describe('corkForTurn', () => {
  test('the writes of one turn reach the writable together, once the turn is over', async () => {
    const { w, calls } = recordingWritable();
    for (let i = 0; i < 4; i++) {
      corkForTurn(w);
      w.write(Buffer.alloc(16));
    }
    expect(w.writableCorked).toBe(1); // corked once, however many writes
    expect(calls).toEqual([]);
    await nextTick();
    expect(w.writableCorked).toBe(0);
    expect(calls).toEqual([4]);
  });

  test('the next turn corks again; without it, writes go one by one', async () => {
    const { w, calls } = recordingWritable();
    corkForTurn(w);
    w.write(Buffer.from('a'));
    await nextTick();
    corkForTurn(w);
    w.write(Buffer.from('b'));
    w.write(Buffer.from('c'));
    await nextTick();
    w.write(Buffer.from('d'));
    expect(calls).toEqual([1, 2, 1]);
  });

  test('end() within the turn flushes at once, and the later uncork does no harm', async () => {
    const { w, calls } = recordingWritable();
    const finished = new Promise((resolve) => w.once('finish', resolve));
    corkForTurn(w);
    w.write(Buffer.from('a'));
    w.end(Buffer.from('b'));
    expect(w.writableCorked).toBe(0);
    await finished;
    await nextTick();
    expect(calls.reduce((a, b) => a + b, 0)).toBe(2);
    expect(w.writableCorked).toBe(0);
  });
});
