/**
 * Joins a byte duplex (a TCP socket, an upgraded HTTP socket) to a stream, both ways, with
 * backpressure: the duplex is paused while the stream has no credit, and credit is returned
 * only once the duplex has taken the bytes. Half-close passes through (end ↔ END).
 * Socketless: it only sees the minimal interface below.
 */
import type { ErrorCode, Reason } from '@burrow/protocol';
import type { MuxStream, StreamHandler } from './muxStream';

export interface ByteDuplex {
  write(chunk: Buffer): boolean;
  end(): void;
  destroy(): void;
  pause(): void;
  resume(): void;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'end' | 'drain', listener: () => void): unknown;
  on(event: 'close', listener: (hadError: boolean) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  readonly writableEnded?: boolean;
}

export interface BridgeOptions {
  /** Code sent when the duplex fails or closes before the stream finished. */
  readonly failureCode: ErrorCode;
  /** Called once when both directions are done or either side aborted. */
  readonly onDone?: (reason: Reason | undefined) => void;
}

export function bridge(duplex: ByteDuplex, stream: MuxStream, options: BridgeOptions): void {
  let owed = 0;
  let done = false;
  let duplexEnded = false;
  const finish = (reason: Reason | undefined): void => {
    if (done) return;
    done = true;
    options.onDone?.(reason);
  };
  const handler: StreamHandler = {
    onData(chunk) {
      if (duplex.write(chunk)) stream.consumed(chunk.length);
      else owed += chunk.length;
    },
    onEnd() {
      duplex.end();
      if (duplexEnded) finish(undefined);
    },
    onReset(reason) {
      duplex.destroy();
      finish(reason);
    },
    onDrain() {
      duplex.resume();
    },
  };
  stream.handler = handler;
  duplex.on('drain', () => {
    if (owed > 0) {
      const n = owed;
      owed = 0;
      stream.consumed(n);
    }
  });
  duplex.on('data', (chunk) => {
    if (!stream.write(chunk)) duplex.pause();
  });
  duplex.on('end', () => {
    duplexEnded = true;
    stream.end();
    if (stream.isRemoteEnded) finish(undefined);
  });
  duplex.on('error', () => {
    // 'close' follows and decides.
  });
  duplex.on('close', () => {
    if (!stream.isClosed && !(duplexEnded && stream.isRemoteEnded)) {
      const message = duplexEnded ? 'connection closed before the peer finished' : 'connection closed';
      stream.reset(options.failureCode, message);
      finish({ code: options.failureCode, message });
      return;
    }
    finish(undefined);
  });
  duplex.resume();
}
