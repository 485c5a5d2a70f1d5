/**
 * Hostile whole-program run of dist/run/main.js (issue 17, T46): the agent's command encodes
 * its secrets on the way out with the encoders real programs use (Python's urllib, json,
 * base64, binascii and repr; bash's printf %q and ${v@Q}; jq's @uri, @sh, @base64, @json;
 * Node's URI, form and Buffer encoders; UTF-16 hex), and the job log shows none of the forms
 * they wrote. The forms looked for are the ones the same encoders write here (test/harness/encoders.ts).
 */
import { describe, expect, test } from '@jest/globals';
import { chmodSync } from 'node:fs';
import { Job } from '../../src/devkit/run-action.js';
import { runEncoders } from '../harness/encoders.js';

const VALUES: Record<string, string> = {
  PRINTABLE: Array.from({ length: 95 }, (_, i) => String.fromCharCode(0x20 + i)).join(''),
  NON_ASCII: "pässwörd-é-ü/漢字 'key'-🔑?&=",
  TOKEN: 'ghp_e2eEncoderToken0123456789abcdefABCDEF',
};

/** The agent's command: each encoder's output on its own `form:` line, written as it comes. */
const SCRIPT = String.raw`
python3 - <<'PY'
import base64, binascii, json, os, urllib.parse as up
for n in ('PRINTABLE', 'NON_ASCII', 'TOKEN'):
    v = os.environ[n]; b = v.encode()
    for o in (up.quote(v), up.quote(v, safe=''), up.quote_plus(v), up.urlencode({'k': v})[2:],
              json.dumps(v), json.dumps(v, ensure_ascii=False), base64.b64encode(b).decode(),
              base64.urlsafe_b64encode(b).decode(), base64.b32encode(b).decode(),
              binascii.hexlify(b).decode(), repr(v), repr(b), v.encode('utf-16-le').hex(),
              v.encode('utf-16-be').hex()):
        print('form:', o, flush=True)
PY
for n in PRINTABLE NON_ASCII TOKEN; do
  v="${'$'}{!n}"
  printf 'form: %q\n' "$v"
  printf 'form: %s\n' "${'$'}{v@Q}"
  printf '%s' "$v" | jq -Rr '"form: " + @uri, "form: " + @sh, "form: " + @base64, "form: " + @json'
done
node -e '
for (const n of ["PRINTABLE", "NON_ASCII", "TOKEN"]) {
  const v = process.env[n];
  for (const o of [encodeURIComponent(v), encodeURI(v), new URLSearchParams({ k: v }).toString().slice(2),
    JSON.stringify(v), Buffer.from(v).toString("base64url"), Buffer.from(v).toString("hex")])
    console.log("form: " + o);
}'
echo done-marker
`;
/** Lines the command prints: 14 Python, 6 bash and jq, 6 Node, for each value. */
const LINES = Object.keys(VALUES).length * 26;

describe('run action against an agent that encodes its secrets on the way out', () => {
  test('no form a real encoder writes reaches the job log', async () => {
    const job = new Job({ env: {} });
    chmodSync(job.root, 0o1777);
    const r = await job.run('run', 'main', {
      inputs: {
        run: SCRIPT,
        secrets: Object.keys(VALUES)
          .map((n) => `${n}=json:${n}`)
          .join('\n'),
        'secrets-json': JSON.stringify(VALUES),
      },
    });
    const log = (r.stdout + '\n' + r.stderr)
      .split('\n')
      // The runner consumes mask commands; they never reach the log.
      .filter((l) => !l.startsWith('::add-mask::'));
    expect(log).toContain('done-marker');
    expect(r.code).toBe(0);
    const formLines = log.filter((l) => l.startsWith('form: '));
    expect(formLines).toHaveLength(LINES);
    // What is left of each line: the encoder's quotes, base32 padding, a UTF-16 zero byte.
    const open = formLines.filter((l) => !/^form: (?:b|\$)?(?:00)?(['"]?)\*\*\*\1(?:00|=+)?$/.test(l));
    expect(open).toEqual([]);
    const text = log.join('\n');
    const forms = runEncoders(VALUES);
    const shown = forms.filter((f) => f.output.length >= 8 && text.includes(f.output)).map((f) => f.encoder);
    expect(shown).toEqual([]);
    for (const v of Object.values(VALUES)) {
      for (const where of [r.summary, JSON.stringify(r.outputs), text]) expect(where.includes(v)).toBe(false);
    }
  });
});
