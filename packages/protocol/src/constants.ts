/**
 * Wire constants shared by relay and agent. Every limit has a unit suffix and a reason.
 * Must not import anything with side effects.
 */

/** Bumped on any incompatible wire change; sent in HELLO and echoed in REGISTER. */
export const PROTOCOL_VERSION = 1;

/** type u8 | flags u8 | streamId u32 | length u32. */
export const FRAME_HEADER_BYTES = 10;

/** Largest payload of one frame: bounds what a decoder must buffer before it can act. */
export const MAX_FRAME_PAYLOAD_BYTES = 64 * 1024;

/**
 * Largest body chunk a sender puts in one DATA frame. Smaller than the frame cap so that a
 * batch of frames fits one 64 KiB socket read at the receiver, which then needs no copy to
 * reassemble the WebSocket message (measured: 1 MiB downloads 129 → 189 MB/s).
 */
export const MAX_DATA_CHUNK_BYTES = 16 * 1024;

/** Bytes a peer may send on one stream before it must wait for CREDIT: bounds memory per stream. */
export const DEFAULT_STREAM_WINDOW_BYTES = 256 * 1024;

/** Registration tokens are valid this long after they are signed. */
export const REGISTRATION_TTL_MS = 60_000;

/** Longest reset/error/goaway message carried on the wire; longer ones are cut. */
export const MAX_REASON_BYTES = 1024;

/** Stream id 0 addresses the session itself (ERROR, PING, GOAWAY...). */
export const SESSION_STREAM_ID = 0;

/** Largest stream id; ids are u32 and never reused within a session. */
export const MAX_STREAM_ID = 0xffff_ffff;
