/**
 * Whole-program runs of dist/secrets/{main,post}.js through the harness against moto:
 * export to GITHUB_ENV or outputs with a warning, values delivered byte for byte (a value
 * cannot inject another variable), post blanks them, nothing leaks to log, summary or ledger.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { motoAvailable, startMoto, type Moto } from '../../src/devkit/moto.js';
import { Job, type StepResult } from '../../src/devkit/run-action.js';

const available = motoAvailable();
if (!available && process.env.CI === 'true')
  throw new Error('moto_server is not on PATH; CI must provide it');
if (!available) console.log('secrets e2e skipped: moto_server is not on PATH and CI is unset');
const maybe = available ? describe : describe.skip;

const INJECT = 'first-line-value\nEVIL=1\nPATH=/tmp/evil';
const PEM =
  '-----BEGIN PRIVATE KEY-----\r\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\r\n-----END PRIVATE KEY-----\r\n';
const DELIM = 'value with a heredoc\nghadelimiter_00000000-0000-0000-0000-000000000000\nEOF';
/** One line, with characters every text encoding changes. */
const ENCODED = `p@ss w/rd&"x'<é>`;
const VALUES = [INJECT, PEM, DELIM, ENCODED];

let moto: Moto;
beforeAll(async () => {
  if (!available) return;
  moto = await startMoto();
  const sm = new SecretsManagerClient({
    region: 'us-east-1',
    endpoint: moto.endpoint,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  await sm.send(new CreateSecretCommand({ Name: 'inject', SecretString: INJECT }));
  await sm.send(new CreateSecretCommand({ Name: 'pem', SecretString: PEM }));
  await sm.send(new CreateSecretCommand({ Name: 'delim', SecretString: DELIM }));
  await sm.send(new CreateSecretCommand({ Name: 'encoded', SecretString: ENCODED }));
  sm.destroy();
}, 60000);
afterAll(async () => {
  await moto?.stop();
});

function ledgerText(job: Job): string {
  const p = join(job.runnerTemp, 'cordon', 'ledger.jsonl');
  return existsSync(p) ? readFileSync(p, 'utf8') : '';
}

function expectNotIn(texts: Record<string, string>): void {
  for (const [where, text] of Object.entries(texts)) {
    for (const v of VALUES) {
      for (const piece of [v, ...v.split(/\r?\n/).filter((l) => l.length >= 6 && !l.startsWith('-----'))]) {
        if (text.includes(piece)) throw new Error(`a secret appears in ${where}`);
      }
    }
  }
}

function logOf(r: StepResult): string {
  return r.stdout
    .split('\n')
    .filter((l) => !l.startsWith('::add-mask::'))
    .join('\n');
}

const SECRETS = 'INJECTED=aws-sm:inject\nPEM_KEY=aws-sm:pem\nDELIM=aws-sm:delim';

maybe('secrets action, as a whole program', () => {
  test('exports to GITHUB_ENV byte for byte with a warning; a value cannot add a variable; post blanks them', async () => {
    const job = new Job({ env: moto.env });
    const r = await job.run('secrets', 'main', { inputs: { secrets: SECRETS } });
    expect(r.code).toBe(0);
    expect(r.env).toEqual({ INJECTED: INJECT, PEM_KEY: PEM, DELIM: DELIM });
    const raw = readFileSync(join(job.runnerTemp, '_runner_file_commands', 'set_env_1'), 'utf8');
    expect(raw).toContain(PEM);
    expect(r.env.EVIL).toBeUndefined();
    expect(r.env.PATH).toBeUndefined();
    const warning = r.commands.find((c) => c.command === 'warning');
    expect(warning?.message).toContain(
      "INJECTED, PEM_KEY, DELIM now live on the runner's disk in GITHUB_ENV",
    );
    expect(r.summary).toContain('[!WARNING]');
    expect(r.summary).toContain('INJECTED, PEM_KEY, DELIM');
    // Every line of every value was masked with the runner, one line per mask.
    expect(r.masks).toEqual(
      expect.arrayContaining([
        'first-line-value',
        'EVIL=1',
        'PATH=/tmp/evil',
        'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7',
      ]),
    );
    const ledger = ledgerText(job);
    expect(JSON.parse(ledger.trim()).data).toEqual({
      secrets: [
        { name: 'INJECTED', source: 'aws-sm:inject' },
        { name: 'PEM_KEY', source: 'aws-sm:pem' },
        { name: 'DELIM', source: 'aws-sm:delim' },
      ],
      export: 'env',
    });
    expectNotIn({
      log: logOf(r),
      stderr: r.stderr,
      summary: r.summary,
      ledger,
      state: JSON.stringify(r.state),
      outputs: JSON.stringify(r.outputs),
    });

    const post = await job.run('secrets', 'post', { state: r.state });
    expect(post.code).toBe(0);
    expect(post.env).toEqual({ INJECTED: '', PEM_KEY: '', DELIM: '' });
    expect(job.env.INJECTED).toBe('');
  });

  test('masks the encoded forms a later step could print, not only the value', async () => {
    const job = new Job({ env: moto.env });
    const r = await job.run('secrets', 'main', {
      inputs: { secrets: 'ENCODED=aws-sm:encoded', export: 'outputs' },
    });
    expect(r.code).toBe(0);
    const utf8 = Buffer.from(ENCODED, 'utf8');
    // What `base64`, `xxd -p`, a URL encoder, a JSON writer and Python's repr would print.
    for (const form of [
      ENCODED,
      utf8.toString('base64'),
      utf8.toString('hex'),
      encodeURIComponent(ENCODED),
      JSON.stringify(ENCODED).slice(1, -1),
      new URLSearchParams({ v: ENCODED }).toString().slice(2),
    ])
      expect(r.masks).toContain(form);
    expectNotIn({ log: logOf(r), stderr: r.stderr, summary: r.summary, ledger: ledgerText(job) });
  });

  test('exports to masked outputs', async () => {
    const job = new Job({ env: moto.env });
    const r = await job.run('secrets', 'main', {
      inputs: { secrets: 'INJECTED=aws-sm:inject', export: 'outputs' },
    });
    expect(r.code).toBe(0);
    expect(r.outputs.INJECTED).toBe(INJECT);
    expect(r.env).toEqual({});
    expect(r.commands.find((c) => c.command === 'warning')?.message).toContain('step outputs');
    expectNotIn({ log: logOf(r), summary: r.summary, ledger: ledgerText(job) });
  });

  test('a missing secret fails the step, naming it; nothing is exported', async () => {
    const job = new Job({ env: moto.env });
    const r = await job.run('secrets', 'main', { inputs: { secrets: `${SECRETS}\nGONE=aws-sm:gone` } });
    expect(r.code).not.toBe(0);
    expect(r.env).toEqual({});
    expect(r.commands.find((c) => c.command === 'error')?.message).toContain(
      'GONE (aws-sm:gone): it was not found',
    );
    expectNotIn({ log: logOf(r), summary: r.summary, ledger: ledgerText(job) });
  });
});
