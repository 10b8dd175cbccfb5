/** Relay version, reported by /version and --version. */
export const RELAY_VERSION = '0.1.0';
