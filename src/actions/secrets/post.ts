import { runEntry } from '../entry.js';
import { resetSecrets } from './export.js';

await runEntry(({ runner }) => resetSecrets(runner), { post: 'secrets' });
