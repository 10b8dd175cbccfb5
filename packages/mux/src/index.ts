/** @burrow/mux: streams, credit windows and end/reset over one frame channel. Socketless. */
export * from './frameBatcher';
export * from './mux';
export * from './muxStream';
export * from './bridge';
