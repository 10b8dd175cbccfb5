/**
 * @burrow/mux: streams, credit windows and end/reset over one frame channel. Socketless, but for
 * wsVectorSend, which writes a batch onto the socket of a `ws` WebSocket (structurally typed; ws 8).
 */

export * from './bridge';
export * from './frameBatcher';
export * from './mux';
export * from './muxStream';
export * from './tickCork';
export * from './wsVectorSend';
