/**
 * Follows the frame boundaries of one direction of a WebSocket byte stream (RFC 6455 §5.2), so
 * the relay knows when it may add a frame of its own: a close frame when the tunnel under a public
 * WebSocket ends. It reads frame headers only; payloads are skipped, never kept or parsed, and it
 * holds at most one header (14 bytes).
 */

/** Opcode of a close frame. */
const OP_CLOSE = 0x8;
/** Longest frame header: 2 bytes, 8 of extended length, 4 of mask. */
const MAX_HEADER_BYTES = 14;
/** Longest close reason: a control frame payload is at most 125 bytes, 2 of them the code. */
const MAX_CLOSE_REASON_BYTES = 123;

export class WsFrameBoundary {
  private readonly header = Buffer.alloc(MAX_HEADER_BYTES);
  private headerBytes = 0;
  private payloadLeft = 0;
  /** A close frame went by: nothing may follow it. */
  private closeSeen = false;
  /** A length beyond 2^53: not a stream we can follow. */
  private lost = false;

  /** Bytes on their way to the peer, in order. */
  feed(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length && !this.lost) {
      if (this.payloadLeft > 0) {
        const skip = Math.min(this.payloadLeft, chunk.length - i);
        this.payloadLeft -= skip;
        i += skip;
        continue;
      }
      this.header[this.headerBytes++] = chunk[i++] as number;
      if (this.headerBytes < 2) continue;
      const second = this.header[1] as number;
      const len7 = second & 0x7f;
      const needed = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + ((second & 0x80) !== 0 ? 4 : 0);
      if (this.headerBytes < needed) continue;
      let length = len7;
      if (len7 === 126) length = this.header.readUInt16BE(2);
      else if (len7 === 127) {
        const big = this.header.readBigUInt64BE(2);
        if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
          this.lost = true;
          return;
        }
        length = Number(big);
      }
      if (((this.header[0] as number) & 0x0f) === OP_CLOSE) this.closeSeen = true;
      this.headerBytes = 0;
      this.payloadLeft = length;
    }
  }

  /** Between two frames, and no close frame sent yet: a frame added now is well-formed and allowed. */
  get canAddFrame(): boolean {
    return !this.lost && !this.closeSeen && this.headerBytes === 0 && this.payloadLeft === 0;
  }
}

/** A server's (unmasked) close frame with `code` and `reason` (cut to what a control frame holds). */
export function wsCloseFrame(code: number, reason: string): Buffer {
  const text = Buffer.from(reason, 'utf8').subarray(0, MAX_CLOSE_REASON_BYTES);
  return Buffer.concat([Buffer.from([0x80 | OP_CLOSE, 2 + text.length, code >> 8, code & 0xff]), text]);
}
