/** @burrow/protocol: the wire format, registration and naming. Pure. */
export * from './access';
export * from './constants';
export * from './control';
export * from './ed25519';
export * from './errors';
export * from './frameCodec';
export * from './frameTypes';
export * from './heads';
export * from './keys';
export * from './naming';
export * from './registration';
export * from './share';
