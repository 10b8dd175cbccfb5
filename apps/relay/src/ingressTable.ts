/**
 * Public-side streams on this node (the ingress end). Each stream's frames travel over the bus
 * to the node holding the agent's socket; replies come back by this node's stream id.
 * A stream is in the table before its first frame is sent.
 */
import type { Bus, BusFrame, Holder } from '@burrow/bus';
import { type FrameSink, MuxStream } from '@burrow/mux';
import { FrameType } from '@burrow/protocol';

const EMPTY = Buffer.alloc(0);

class BusSink implements FrameSink {
  stream: MuxStream | undefined;
  constructor(
    private readonly bus: Bus,
    private readonly holder: Holder,
    private readonly replyNode: string,
  ) {}
  sendFrame(type: FrameType, flags: number, streamId: number, payload?: Buffer): void {
    const delivered = this.bus.publish(this.holder.nodeId, {
      kind: 'toSession',
      sessionId: this.holder.sessionId,
      replyNode: this.replyNode,
      frame: { type, flags, streamId, payload: payload ?? EMPTY },
    });
    if (!delivered && type !== FrameType.RESET) {
      const stream = this.stream;
      queueMicrotask(() => stream?.abort({ code: 'BURROW_ERR_AGENT_DISCONNECTED', message: 'the relay node holding this tunnel is unreachable' }));
    }
  }
}

export class IngressTable {
  private readonly streams = new Map<number, MuxStream>();
  private nextId = 1;
  private readonly onClose = (s: MuxStream): void => {
    this.streams.delete(s.id);
  };

  constructor(
    private readonly bus: Bus,
    private readonly windowBytes: number,
  ) {}

  get size(): number {
    return this.streams.size;
  }

  open(holder: Holder): MuxStream {
    let id = this.nextId;
    while (this.streams.has(id)) id = id >= 0xffff_fffe ? 1 : id + 1;
    this.nextId = id >= 0xffff_fffe ? 1 : id + 1;
    const sink = new BusSink(this.bus, holder, this.bus.nodeId);
    const stream = new MuxStream(id, sink, { windowBytes: this.windowBytes, onClose: this.onClose });
    sink.stream = stream;
    this.streams.set(id, stream);
    return stream;
  }

  /** A frame from the holder node for one of our streams; unknown ids are late frames for finished streams. */
  receive(frame: BusFrame): void {
    this.streams.get(frame.streamId)?.receive(frame.type, frame.flags, frame.payload);
  }

  abortAll(code: 'BURROW_ERR_RELAY_SHUTTING_DOWN'): void {
    for (const s of [...this.streams.values()]) s.abort({ code, message: 'relay is shutting down' });
  }
}
