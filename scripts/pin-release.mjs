// Pins the one-step fence (actions/agent/action.yml) and the reusable workflow
// (.github/workflows/agent.yml) to the exact release they ship in: every
// `uses: cordon-dev/cordon/...@<ref>` in them is rewritten to `@<commit>`, the commit the
// release is built from. A user who pins the outer action to a commit then gets the inner
// actions of that same release, never whatever a floating tag points at later.
//   node scripts/pin-release.mjs <40-hex commit> [--root DIR]
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const OWNER_REPO = 'cordon-dev/cordon';
export const PINNED_FILES = ['actions/agent/action.yml', '.github/workflows/agent.yml'];

const OWN_USES = new RegExp(
  `(uses:\\s*['"]?${OWNER_REPO.replace('/', '\\/')}\\/(?:actions\\/[a-z0-9-]+|\\.github\\/workflows\\/[a-z0-9-]+\\.ya?ml))@[^\\s'"#]+`,
  'g',
);

/** The text with every reference to this repository's actions set to `ref`; and how many. */
export function pin(text, ref) {
  let count = 0;
  const out = text.replace(OWN_USES, (_, head) => {
    count++;
    return `${head}@${ref}`;
  });
  return { text: out, count };
}

function main(argv) {
  const [ref] = argv.filter((a, i) => !a.startsWith('--') && argv[i - 1] !== '--root');
  const rootAt = argv.indexOf('--root');
  const root = rootAt >= 0 ? resolve(argv[rootAt + 1] ?? '.') : process.cwd();
  if (!/^[0-9a-f]{40}$/.test(ref ?? '')) {
    console.error(
      `pin-release: the ref "${ref ?? ''}" is not a full commit SHA (40 hex digits); give the commit the release is built from, e.g. $(git rev-parse HEAD)`,
    );
    return 2;
  }
  for (const file of PINNED_FILES) {
    const path = join(root, file);
    const { text, count } = pin(readFileSync(path, 'utf8'), ref);
    if (count === 0) {
      console.error(`pin-release: ${file} names no ${OWNER_REPO} action to pin; is it the generated file?`);
      return 1;
    }
    writeFileSync(path, text);
    console.log(`pin-release: ${file}: ${count} reference(s) pinned to ${ref}`);
  }
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  process.exit(main(process.argv.slice(2)));
