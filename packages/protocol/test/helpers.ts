/** Shared test helpers for @burrow/protocol tests (not a test file itself). */
import { BurrowError, type ErrorCode } from '@burrow/protocol';

/**
 * Runs `fn` and returns the code of the BurrowError it throws, or undefined if it returns.
 * Any other kind of throw is re-thrown so the test fails loudly.
 */
export function codeOf(fn: () => unknown): ErrorCode | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof BurrowError) return err.code;
    throw err;
  }
  return undefined;
}

/** Buffer from a hex string that may contain spaces (for readable fixtures). */
export function hex(text: string): Buffer {
  const clean = text.replace(/\s+/g, '');
  if (!/^(?:[0-9a-f]{2})*$/i.test(clean)) throw new Error(`bad hex fixture: ${text}`);
  return Buffer.from(clean, 'hex');
}
