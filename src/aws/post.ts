import { runEntry } from '../core/entry.js';
import { endCredentials } from './cleanup.js';

await runEntry((runner) => {
  endCredentials(runner);
});
