/** @burrow/mux: streams, credit windows and end/reset over one frame channel. Socketless. */

export * from './bridge';
export * from './frameBatcher';
export * from './mux';
export * from './muxStream';
export * from './wsVectorSend';
