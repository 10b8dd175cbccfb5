/** @burrow/bus: frame delivery between relay nodes and the label registry. */
export * from './bus';
export * from './memoryBus';
