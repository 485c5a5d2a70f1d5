// Builds one minified bundle per entry point with @vercel/ncc into dist/<action>/<entry>.js.
// Entries are listed in scripts/entries.json: { "dist/<action>/<entry>.js": "src/<domain>/<file>.ts" }.
import { spawn } from 'node:child_process';
import {
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  mkdirSync,
  readdirSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, dirname } from 'node:path';

const entries = JSON.parse(readFileSync(new URL('./entries.json', import.meta.url), 'utf8'));
const only = process.argv.slice(2);
const selected = Object.entries(entries).filter(
  ([out, src]) => !only.length || only.some((o) => out.includes(o) || src.includes(o)),
);

function build([out, src]) {
  const tmp = mkdtempSync(join(tmpdir(), 'cordon-ncc-'));
  return new Promise((resolve, reject) => {
    const p = spawn('npx', ['ncc', 'build', src, '-m', '-q', '-o', tmp, '--target', 'es2022'], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    p.on('exit', (code) => {
      // The temp folder goes whichever way the build ended.
      const done = (e) => {
        rmSync(tmp, { recursive: true, force: true });
        return e ? reject(e) : resolve();
      };
      if (code !== 0) return done(new Error(`ncc failed for ${src}`));
      const files = readdirSync(tmp).filter((f) => f.endsWith('.js') || f.endsWith('.mjs'));
      if (files.length !== 1)
        return done(new Error(`ncc wrote ${files.join(', ')} for ${src}; expected one file`));
      mkdirSync(dirname(out), { recursive: true });
      renameSync(join(tmp, files[0]), out);
      done();
    });
  });
}

const started = Date.now();
const queue = [...selected];
const workers = Array.from({ length: Math.max(1, Math.min(cpus().length, 4)) }, async () => {
  for (let job = queue.shift(); job; job = queue.shift()) await build(job);
});
await Promise.all(workers);
// Each action folder is ESM because the root package.json says "type": "module".
writeFileSync('dist/package.json', '{ "type": "module" }\n');
console.log(`bundled ${selected.length} entries in ${Date.now() - started} ms`);
