import { CordonError } from '../../src/platform/errors.js';

/** The CordonError `fn` throws; any other outcome fails the test. */
export function errorOf(fn: () => unknown): CordonError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CordonError) return e;
    throw e;
  }
  throw new Error('expected a CordonError');
}
