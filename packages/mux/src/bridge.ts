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
  readonly destroyed?: boolean;
  /** Sockets: an idle timer closeGently() switches off. */
  setTimeout?(ms: number): unknown;
}

/** A duplex closed gently is destroyed after this long if its peer never closes its side. */
export const GENTLE_CLOSE_LINGER_MS = 2000;

/**
 * Ends our side with a FIN (a clean close for the peer, not a RST), discards whatever the peer
 * still sends, and lets go after `lingerMs`.
 */
export function closeGently(duplex: ByteDuplex, lingerMs = GENTLE_CLOSE_LINGER_MS): void {
  if (duplex.destroyed === true) return;
  duplex.setTimeout?.(0);
  duplex.on('data', () => {});
  duplex.resume();
  duplex.end();
  setTimeout(() => duplex.destroy(), lingerMs).unref();
}

export interface BridgeOptions {
  /** Code sent when the duplex fails or closes before the stream finished. */
  readonly failureCode: ErrorCode;
  /** Called once when both directions are done or either side aborted. */
  readonly onDone?: (reason: Reason | undefined) => void;
  /** The peer's head (its RESPONSE) arrived. */
  readonly onHead?: () => void;
  /** Resets after which the duplex gets a clean close (closeGently) instead of being destroyed. */
  readonly closeGentlyOn?: (code: ErrorCode) => boolean;
  /**
   * Last bytes for the duplex's peer when the stream is reset (a WebSocket close frame saying why),
   * written before a clean close; undefined: closeGentlyOn decides as usual.
   */
  readonly farewell?: (reason: Reason) => Buffer | undefined;
  /** The reason given when the duplex closes first; `endedFirst`: it had ended its side cleanly. */
  readonly closedMessage?: (endedFirst: boolean) => string;
}

export interface Bridged {
  /** Ends both sides now: resets the stream with this reason and closes the duplex gently. */
  cut(code: ErrorCode, message: string): void;
}

const defaultClosedMessage = (endedFirst: boolean): string => (endedFirst ? 'connection closed before the peer finished' : 'connection closed');

export function bridge(duplex: ByteDuplex, stream: MuxStream, options: BridgeOptions): Bridged {
  let owed = 0;
  let done = false;
  let duplexEnded = false;
  const finish = (reason: Reason | undefined): void => {
    if (done) return;
    done = true;
    options.onDone?.(reason);
  };
  const onHead = options.onHead;
  const handler: StreamHandler = {
    ...(onHead !== undefined ? { onHead: () => onHead() } : {}),
    onData(chunk) {
      if (duplex.write(chunk)) stream.consumed(chunk.length);
      else owed += chunk.length;
    },
    onEnd() {
      duplex.end();
      if (duplexEnded) finish(undefined);
    },
    onReset(reason) {
      const last = duplex.writableEnded === true || duplex.destroyed === true ? undefined : options.farewell?.(reason);
      if (last !== undefined) {
        duplex.write(last);
        closeGently(duplex);
      } else if (options.closeGentlyOn?.(reason.code) === true) closeGently(duplex);
      else duplex.destroy();
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
      const message = (options.closedMessage ?? defaultClosedMessage)(duplexEnded);
      stream.reset(options.failureCode, message);
      finish({ code: options.failureCode, message });
      return;
    }
    finish(undefined);
  });
  duplex.resume();
  return {
    cut(code, message) {
      stream.reset(code, message);
      finish({ code, message });
      closeGently(duplex);
    },
  };
}
