/** The files the `cordon` commands are given: regular files only, capped, or one clear error. */
import { MAX_WORKFLOW_BYTES, readRegularFile } from '../platform/regular-file.js';

/** The ledger's own cap (the root side stops writing there), so any ledger Cordon wrote fits. */
const MAX_LEDGER_BYTES = 64 * 1024 * 1024;

const KINDS = {
  workflow: { maxBytes: MAX_WORKFLOW_BYTES, expected: 'a workflow file, e.g. .github/workflows/ci.yml' },
  ledger: { maxBytes: MAX_LEDGER_BYTES, expected: 'a run ledger (ledger.jsonl)' },
};

/** The file's text, or undefined once `err` has been told why it cannot be read. */
export function readArgument(
  path: string,
  reader: string,
  kind: keyof typeof KINDS,
  err: (text: string) => void,
): string | undefined {
  try {
    return readRegularFile(path, { reader, ...KINDS[kind] });
  } catch (e) {
    err(`${(e as Error).message}\n`);
    return undefined;
  }
}
