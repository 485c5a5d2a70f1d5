/**
 * The forms real encoders write for a secret, got by running them: Python's standard library,
 * Node, bash and jq, each with its defaults and common options. The scrubbing test runs them
 * live; `test/fixtures/encoder-forms.json` keeps what they wrote on the machine that last
 * regenerated it, so forms of other versions (jq 1.6 and 1.7 differ in `@uri`) stay tested.
 *
 * Regenerate the fixture (after adding a value or an encoder, and say so in the commit):
 *   npx tsx test/harness/encoders.ts
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Values to encode: none is a real secret. */
export const ENCODER_VALUES: Record<string, string> = {
  'printable ASCII': Array.from({ length: 95 }, (_, i) => String.fromCharCode(0x20 + i)).join(''),
  'printable ASCII reversed': Array.from({ length: 95 }, (_, i) => String.fromCharCode(0x7e - i)).join(''),
  'latin accents': 'pässwörd-é-ü-Ünïcødé',
  CJK: '秘密-漢字-トークン-x',
  emoji: 'key-🔑-🗝️-end',
  'mixed non-ASCII and reserved': "tök€n é/ü?a=1&b='漢字' (🔑)!*~",
  'GitHub-token-like': 'ghp_1A2b3C4d5E6f7G8h9I0jKlMnOpQrStUvWxYz',
  'AWS-secret-like': 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  'JWT-like': 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl-_Xy',
  'password-like': 'p@ss w0rd!#$%^&*()+={}[]|\\:;"\'<>,.?/~`',
  'tab and newline': 'line one\tcol\nline two',
};

export interface EncodedForm {
  /** Key of ENCODER_VALUES. */
  value: string;
  /** The call that wrote it, as a program would make it. */
  encoder: string;
  /** What it wrote, whole (quotes and prefixes included, `k=` of urlencode taken off). */
  output: string;
}

/** Python 3: urllib.parse, json, base64, binascii, repr, UTF-16. Reads the values as JSON on stdin. */
const PYTHON = String.raw`
import base64, binascii, json, sys, urllib.parse as up
out = []
for name, v in json.load(sys.stdin).items():
    b = v.encode('utf-8')
    forms = {
        'python urllib.parse.quote(v)': up.quote(v),
        "python urllib.parse.quote(v, safe='')": up.quote(v, safe=''),
        'python urllib.parse.quote_plus(v)': up.quote_plus(v),
        "python urllib.parse.urlencode({'k': v})": up.urlencode({'k': v})[2:],
        "python urllib.parse.urlencode({'k': v}, quote_via=quote)": up.urlencode({'k': v}, quote_via=up.quote)[2:],
        'python json.dumps(v)': json.dumps(v),
        'python json.dumps(v, ensure_ascii=False)': json.dumps(v, ensure_ascii=False),
        'python base64.b64encode': base64.b64encode(b).decode(),
        'python base64.urlsafe_b64encode': base64.urlsafe_b64encode(b).decode(),
        'python base64.b32encode': base64.b32encode(b).decode(),
        'python base64.b16encode': base64.b16encode(b).decode(),
        'python binascii.hexlify': binascii.hexlify(b).decode(),
        'python repr(str)': repr(v),
        'python repr(bytes)': repr(b),
        "python v.encode('utf-16-le').hex()": v.encode('utf-16-le').hex(),
        "python v.encode('utf-16-be').hex()": v.encode('utf-16-be').hex(),
        "python v.encode('utf-16').hex() (with BOM)": v.encode('utf-16').hex(),
        "python base64.b16encode(v.encode('utf-16-le'))": base64.b16encode(v.encode('utf-16-le')).decode(),
    }
    out += [{'value': name, 'encoder': k, 'output': o} for k, o in forms.items()]
json.dump(out, sys.stdout)
`;

/** Node: URI and form encoders, JSON and Buffer encodings. */
const NODE = String.raw`
const values = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = [];
for (const [name, v] of Object.entries(values)) {
  const forms = {
    'node encodeURIComponent': encodeURIComponent(v),
    'node encodeURI': encodeURI(v),
    'node new URLSearchParams({k: v}).toString()': new URLSearchParams({ k: v }).toString().slice(2),
    'node JSON.stringify': JSON.stringify(v),
    "node Buffer.toString('base64')": Buffer.from(v).toString('base64'),
    "node Buffer.toString('base64url')": Buffer.from(v).toString('base64url'),
    "node Buffer.toString('hex')": Buffer.from(v).toString('hex'),
    "node Buffer.from(v, 'utf16le').toString('hex')": Buffer.from(v, 'utf16le').toString('hex'),
  };
  for (const [encoder, output] of Object.entries(forms)) out.push({ value: name, encoder, output });
}
process.stdout.write(JSON.stringify(out));
`;

/** bash: `printf %q` and `${v@Q}`; each value comes in as V<i> in the environment. */
const BASH = [
  'for ((i = 0; i < N; i++)); do',
  '  name="V$i"; v="${!name}"',
  '  printf \'%s\\0%q\\0%s\\0\' "$i" "$v" "${v@Q}"',
  'done',
].join('\n');

/** jq: the format strings; `-c` writes one JSON array, so the outputs come back exact. */
const JQ =
  'to_entries | map(.key as $k | .value | {k: $k, uri: @uri, sh: @sh, base64: @base64, json: @json})';

function run(cmd: string, args: string[], input: string, env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { input, env, encoding: 'utf8', timeout: 30_000, maxBuffer: 64 << 20 });
  if (r.error) {
    // A missing encoder fails the test: CI installs each of them (.ci/run), so it is never skipped.
    throw new Error(
      `encoder ${cmd} could not run (${r.error.message}): install it (CI: .ci/run installs jq)`,
    );
  }
  if (r.status !== 0) throw new Error(`encoder ${cmd} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** The versions that wrote the forms, for the fixture. */
export function encoderVersions(): Record<string, string> {
  const first = (s: string): string => s.trim().split('\n')[0];
  return {
    python3: first(run('python3', ['--version'], '')),
    node: process.version,
    bash: first(run('bash', ['--version'], '')),
    jq: first(run('jq', ['--version'], '')),
  };
}

/** Every form the encoders write for `values`, by running them. */
export function runEncoders(values: Record<string, string> = ENCODER_VALUES): EncodedForm[] {
  const json = JSON.stringify(values);
  const forms: EncodedForm[] = [
    ...(JSON.parse(run('python3', ['-c', PYTHON], json)) as EncodedForm[]),
    ...(JSON.parse(run(process.execPath, ['-e', NODE], json)) as EncodedForm[]),
  ];
  const names = Object.keys(values);
  // A UTF-8 locale, as on GitHub's runners; the C locale's forms are asked for below.
  for (const locale of ['C.UTF-8', 'C']) {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, LC_ALL: locale, N: String(names.length) };
    names.forEach((n, i) => (env[`V${i}`] = values[n]));
    const parts = run('bash', ['-c', BASH], '', env).split('\0');
    for (let p = 0; p + 2 < parts.length; p += 3) {
      const value = names[Number(parts[p])];
      forms.push({ value, encoder: `bash printf %q (LC_ALL=${locale})`, output: parts[p + 1] });
      forms.push({ value, encoder: `bash \${v@Q} (LC_ALL=${locale})`, output: parts[p + 2] });
    }
  }
  const jq = JSON.parse(run('jq', ['-c', JQ], json)) as Record<string, string>[];
  for (const row of jq) {
    for (const f of ['uri', 'sh', 'base64', 'json'])
      forms.push({ value: row.k, encoder: `jq @${f}`, output: row[f] });
  }
  return forms;
}

export const ENCODER_FIXTURE = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  'fixtures',
  'encoder-forms.json',
);

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const corpus = { versions: encoderVersions(), values: ENCODER_VALUES, forms: runEncoders() };
  writeFileSync(ENCODER_FIXTURE, JSON.stringify(corpus, null, 2) + '\n');
  console.log(`wrote ${corpus.forms.length} forms to ${ENCODER_FIXTURE}`);
}
