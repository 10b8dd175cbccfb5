/**
 * Public-side streams on this node (the ingress end). Each stream's frames travel over the bus
 * to the node holding the agent's socket; replies come back by this node's stream id.
 * A stream is in the table before its first frame is sent. Most end here in a MuxStream; a raw
 * entry (a private share's connection, spliced to a connecting agent's stream) hands the frames
 * on untouched, so credit runs end to end between the two agents.
 */
import type { Bus, BusFrame, Holder } from '@burrow/bus';
import { type FrameSink, MuxStream } from '@burrow/mux';
import type { ErrorCode, FrameType, Reason } from '@burrow/protocol';

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

/** Where the frames of a raw entry go: its owner forwards them and ends the entry with closeRaw. */
export interface RawPeer {
  /** A frame from the holder node, with this table's stream id. */
  onFrame(frame: BusFrame): void;
  /** The stream cannot go on (the holder node is gone, the bus is down, the relay closes). */
  onAbort(reason: Reason): void;
}

interface Entry {
  readonly stream?: MuxStream;
  readonly raw?: RawPeer;
  readonly holder: Holder;
}

/** A stream this table ended on its own (abort), without telling the node holding the agent. */
export type Abandoned = (holder: Holder, streamId: number, reason: Reason) => void;

export class IngressTable {
  private readonly streams = new Map<number, Entry>();
  private nextId = 1;
  private readonly onClose = (s: MuxStream): void => {
    this.streams.delete(s.id);
  };

  constructor(
    private readonly bus: Bus,
    private readonly windowBytes: number,
    /** Told of every stream to another node that ends here by abort, so that node can end its half too. */
    private readonly abandoned: Abandoned = () => {},
  ) {}

  get size(): number {
    return this.streams.size;
  }

  private allocate(): number {
    let id = this.nextId;
    while (this.streams.has(id)) id = id >= 0xffff_fffe ? 1 : id + 1;
    this.nextId = id >= 0xffff_fffe ? 1 : id + 1;
    return id;
  }

  open(holder: Holder): MuxStream {
    const id = this.allocate();
    const sink = new BusSink(this.bus, holder, this.bus.nodeId);
    const stream = new MuxStream(id, sink, { windowBytes: this.windowBytes, onClose: this.onClose });
    this.streams.set(id, { stream, holder });
    return stream;
  }

  /** A raw entry: frames for `holder` are sent by the owner with sendRaw, replies go to `peer`. Returns its id. */
  openRaw(holder: Holder, peer: RawPeer): number {
    const id = this.allocate();
    this.streams.set(id, { raw: peer, holder });
    return id;
  }

  /** Forgets a raw entry (both directions ended, or either side reset). */
  closeRaw(id: number): void {
    if (this.streams.get(id)?.raw !== undefined) this.streams.delete(id);
  }

  /** A frame from the holder node for one of our streams; unknown ids are late frames for finished streams. */
  receive(frame: BusFrame): void {
    const e = this.streams.get(frame.streamId);
    if (e === undefined) return;
    if (e.stream !== undefined) e.stream.receive(frame.type, frame.flags, frame.payload);
    else e.raw?.onFrame(frame);
  }

  private abortEntry(id: number, e: Entry, code: ErrorCode, message: string): void {
    if (e.stream !== undefined) e.stream.abort({ code, message });
    else e.raw?.onAbort({ code, message });
    if (e.holder.nodeId !== this.bus.nodeId) this.abandoned(e.holder, id, { code, message });
  }

  /** Ends one stream here with an error (its frames could not be delivered). */
  abortStream(id: number, code: ErrorCode, message: string): void {
    const e = this.streams.get(id);
    if (e !== undefined) this.abortEntry(id, e, code, message);
  }

  /** The other nodes that hold agents for streams open here. */
  remoteNodes(): Set<string> {
    const nodes = new Set<string>();
    for (const e of this.streams.values()) if (e.holder.nodeId !== this.bus.nodeId) nodes.add(e.holder.nodeId);
    return nodes;
  }

  /** Ends every stream whose agent is on one of `nodes` (they died, or the bus is down). */
  abortNodes(nodes: ReadonlySet<string>, code: ErrorCode, message: string): number {
    let n = 0;
    for (const [id, e] of [...this.streams]) {
      if (nodes.has(e.holder.nodeId)) {
        this.abortEntry(id, e, code, message);
        n++;
      }
    }
    return n;
  }

  abortAll(code: ErrorCode, message: string): void {
    for (const [id, e] of [...this.streams]) this.abortEntry(id, e, code, message);
  }
}
