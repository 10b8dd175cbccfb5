/**
 * Frame type and flag numbers. These are the wire: test/wireNumbers.test.ts pins them,
 * so a renumbering fails CI. Direction sets say which side may send which type.
 */

export const FrameType = {
  HELLO: 0x01,
  REGISTER: 0x02,
  REGISTERED: 0x03,
  ERROR: 0x04,
  PING: 0x05,
  PONG: 0x06,
  GOAWAY: 0x07,
  OPEN: 0x10,
  RESPONSE: 0x11,
  DATA: 0x12,
  CREDIT: 0x13,
  END: 0x14,
  RESET: 0x15,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** The sender will send nothing more on this stream after this frame (coalesced END). */
export const FLAG_FIN = 0x01;
/** Flags a frame of each type may carry; any other bit is a protocol violation. */
export const ALLOWED_FLAGS: Readonly<Record<FrameType, number>> = {
  [FrameType.HELLO]: 0,
  [FrameType.REGISTER]: 0,
  [FrameType.REGISTERED]: 0,
  [FrameType.ERROR]: 0,
  [FrameType.PING]: 0,
  [FrameType.PONG]: 0,
  [FrameType.GOAWAY]: 0,
  [FrameType.OPEN]: FLAG_FIN,
  [FrameType.RESPONSE]: FLAG_FIN,
  [FrameType.DATA]: FLAG_FIN,
  [FrameType.CREDIT]: 0,
  [FrameType.END]: 0,
  [FrameType.RESET]: 0,
};

/** Which end of an agent session sent a frame. */
export type Direction = 'relayToAgent' | 'agentToRelay';

const relayToAgent: ReadonlySet<number> = new Set<number>([
  FrameType.HELLO,
  FrameType.REGISTERED,
  FrameType.ERROR,
  FrameType.PING,
  FrameType.PONG,
  FrameType.GOAWAY,
  FrameType.OPEN,
  // The relay's answer on a stream a connecting agent opened (burrow connect).
  FrameType.RESPONSE,
  FrameType.DATA,
  FrameType.CREDIT,
  FrameType.END,
  FrameType.RESET,
]);
const agentToRelay: ReadonlySet<number> = new Set<number>([
  FrameType.REGISTER,
  FrameType.ERROR,
  FrameType.PING,
  FrameType.PONG,
  FrameType.GOAWAY,
  // Only a connecting agent (`connect` claim) opens streams; the relay refuses OPEN from any other.
  FrameType.OPEN,
  FrameType.RESPONSE,
  FrameType.DATA,
  FrameType.CREDIT,
  FrameType.END,
  FrameType.RESET,
]);

export function isAllowed(direction: Direction, type: number): type is FrameType {
  return (direction === 'relayToAgent' ? relayToAgent : agentToRelay).has(type);
}

/** Types that address a stream (stream id must be non-zero); the rest address the session (id 0). */
const streamTypes: ReadonlySet<number> = new Set<number>([
  FrameType.OPEN,
  FrameType.RESPONSE,
  FrameType.DATA,
  FrameType.CREDIT,
  FrameType.END,
  FrameType.RESET,
]);
export function isStreamType(type: number): boolean {
  return streamTypes.has(type);
}

/** What an OPEN asks the agent to reach. */
export const StreamKind = {
  HTTP: 1,
  WEBSOCKET: 2,
  TCP: 3,
} as const;
export type StreamKind = (typeof StreamKind)[keyof typeof StreamKind];
