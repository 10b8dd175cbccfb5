/**
 * Public-side streams on this node (the ingress end). Each stream's frames travel over the bus
 * to the node holding the agent's socket; replies come back by this node's stream id.
 * A stream is in the table before its first frame is sent.
 */
import type { Bus, BusFrame, Holder } from '@burrow/bus';
import { type FrameSink, MuxStream } from '@burrow/mux';
import type { ErrorCode, FrameType } from '@burrow/protocol';

const EMPTY = Buffer.alloc(0);

class BusSink implements FrameSink {
  constructor(
    private readonly bus: Bus,
    readonly holder: Holder,
    private readonly replyNode: string,
  ) {}
  sendFrame(type: FrameType, flags: number, streamId: number, payload?: Buffer): void {
    // Undelivered frames come back through the bus's undelivered handler (abortStream).
    this.bus.publish(this.holder.nodeId, {
      kind: 'toSession',
      sessionId: this.holder.sessionId,
      replyNode: this.replyNode,
      frame: { type, flags, streamId, payload: payload ?? EMPTY },
    });
  }
}

interface Entry {
  readonly stream: MuxStream;
  readonly holderNode: string;
}

export class IngressTable {
  private readonly streams = new Map<number, Entry>();
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
    this.streams.set(id, { stream, holderNode: holder.nodeId });
    return stream;
  }

  /** A frame from the holder node for one of our streams; unknown ids are late frames for finished streams. */
  receive(frame: BusFrame): void {
    this.streams.get(frame.streamId)?.stream.receive(frame.type, frame.flags, frame.payload);
  }

  /** Ends one stream here with an error (its frames could not be delivered). */
  abortStream(id: number, code: ErrorCode, message: string): void {
    this.streams.get(id)?.stream.abort({ code, message });
  }

  /** The other nodes that hold agents for streams open here. */
  remoteNodes(): Set<string> {
    const nodes = new Set<string>();
    for (const e of this.streams.values()) if (e.holderNode !== this.bus.nodeId) nodes.add(e.holderNode);
    return nodes;
  }

  /** Ends every stream whose agent is on one of `nodes` (they died, or the bus is down). */
  abortNodes(nodes: ReadonlySet<string>, code: ErrorCode, message: string): number {
    let n = 0;
    for (const e of [...this.streams.values()]) {
      if (nodes.has(e.holderNode)) {
        e.stream.abort({ code, message });
        n++;
      }
    }
    return n;
  }

  abortAll(code: ErrorCode, message: string): void {
    for (const e of [...this.streams.values()]) e.stream.abort({ code, message });
  }
}
