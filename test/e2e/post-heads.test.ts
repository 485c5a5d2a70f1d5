/**
 * Hostile whole-program runs of start -> aws -> secrets -> (a hostile step) -> the posts,
 * every step as an unprivileged runner user, against moto and the loopback OIDC issuer.
 * Between the mains and the posts a step that is not Cordon's, as the same user, edits,
 * removes or rechains the lines aws and secrets wrote; each post must record exactly what
 * docs/integrity.md says (`ledger.tampered`, `by: "<step> post"`, with a warning) and a
 * job nobody touched must stay `ledger.verified`.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLedgerText, type LedgerEvent } from '../../src/ledger/ledger.js';
import { motoAvailable, startMoto, type Moto } from '../../src/devkit/moto.js';
import { startOidcIssuer, type OidcIssuer } from '../../src/devkit/oidc-issuer.js';
import { Job, type StepResult } from '../../src/devkit/run-action.js';
import { canMakeUsers, makeTestUser, type TestUser } from '../harness/users.js';

const ROLE = 'arn:aws:iam::111122223333:role/cordon-agent';
const SECRET = 'post-heads-secret-value-7f3a91';

const available = motoAvailable();
if (!available && process.env.CI === 'true')
  throw new Error('moto_server is not on PATH; CI must provide it (.ci/run checks)');
const maybe = available && canMakeUsers() ? describe : describe.skip;
if (!available) console.log('post-heads e2e skipped: moto_server is not on PATH and CI is unset');

let moto: Moto;
let issuer: OidcIssuer;
let user: TestUser;

beforeAll(async () => {
  if (!available || !canMakeUsers()) return;
  user = makeTestUser('cdhead', { sudo: false });
  [moto, issuer] = await Promise.all([startMoto(), startOidcIssuer()]);
}, 60000);

afterAll(async () => {
  await Promise.all([moto?.stop(), issuer?.close()]);
  user?.remove();
});

function events(job: Job): LedgerEvent[] {
  const path = join(job.runnerTemp, 'cordon', 'ledger.jsonl');
  return parseLedgerText(existsSync(path) ? readFileSync(path, 'utf8') : '').flatMap((l) =>
    l.event ? [l.event] : [],
  );
}

/** What the post of `step` recorded about its head: the one ledger.verified/tampered line it wrote. */
function headCheck(job: Job, step: string): LedgerEvent | undefined {
  const found = events(job).filter(
    (e) =>
      (e.type === 'ledger.verified' || e.type === 'ledger.tampered') &&
      (e.data as { by?: string }).by === `${step} post`,
  );
  expect(found).toHaveLength(1);
  return found[0];
}

function warned(r: StepResult): boolean {
  return r.commands.some((c) => c.command === 'warning' && /ledger was altered/.test(c.message));
}

interface Ran {
  job: Job;
  main: { aws: StepResult; secrets: StepResult };
  post: { aws: StepResult; secrets: StepResult; start: StepResult };
  all: StepResult[];
}

/**
 * One job: start, aws (export env), secrets (aws-sm: with the credentials aws exported),
 * then `hostile` (a node script) as the runner user, then the posts in the runner's order.
 */
async function runJob(hostile?: string): Promise<Ran> {
  const job = new Job({ env: { ...issuer.env, AWS_ENDPOINT_URL: moto.endpoint } });
  const as = (): string[] => user.wrap(job.root);
  const start = await job.run('start', 'main', { wrap: as() });
  expect(start.code).toBe(0);
  const aws = await job.run('aws', 'main', {
    inputs: { 'role-to-assume': ROLE, 'aws-region': 'eu-west-1', allow: 'secretsmanager:GetSecretValue *' },
    wrap: as(),
  });
  expect(aws.code).toBe(0);
  // The secret lives in the role's account: made with the credentials aws exported.
  const sm = new SecretsManagerClient({
    region: 'eu-west-1',
    endpoint: moto.endpoint,
    credentials: {
      accessKeyId: aws.env.AWS_ACCESS_KEY_ID,
      secretAccessKey: aws.env.AWS_SECRET_ACCESS_KEY,
      sessionToken: aws.env.AWS_SESSION_TOKEN,
    },
  });
  await sm.send(new CreateSecretCommand({ Name: 'post-heads', SecretString: SECRET })).catch((e: unknown) => {
    if (!/ResourceExists/.test(String((e as Error).name))) throw e;
  });
  sm.destroy();
  const secrets = await job.run('secrets', 'main', {
    inputs: { secrets: 'DEPLOY_KEY=aws-sm:post-heads' },
    wrap: as(),
  });
  expect(secrets.code).toBe(0);
  expect(secrets.env.DEPLOY_KEY).toBe(SECRET);
  expect(events(job).map((e) => e.type)).toEqual(
    expect.arrayContaining(['credentials.issued', 'secrets.fetched']),
  );
  if (hostile)
    execFileSync('runuser', ['-u', user.name, '--', process.execPath, '-e', hostile], {
      env: { PATH: process.env.PATH, RUNNER_TEMP: job.runnerTemp },
      timeout: 30000,
    });
  const secretsPost = await job.run('secrets', 'post', { state: secrets.state, wrap: as() });
  const awsPost = await job.run('aws', 'post', { state: aws.state, wrap: as() });
  const startPost = await job.run('start', 'post', { state: start.state, wrap: as() });
  expect(secretsPost.code).toBe(0);
  expect(awsPost.code).toBe(0);
  return {
    job,
    main: { aws, secrets },
    post: { aws: awsPost, secrets: secretsPost, start: startPost },
    all: [start, aws, secrets, secretsPost, awsPost, startPost],
  };
}

/** Reads the ledger as the hostile step sees it; `body` changes `lines` (parsed) and may rechain. */
const script = (body: string): string => `
  const fs = require("fs"), c = require("crypto");
  const f = process.env.RUNNER_TEMP + "/cordon/ledger.jsonl";
  let lines = fs.readFileSync(f, "utf8").split("\\n").filter(Boolean).map((l) => JSON.parse(l));
  const rechain = (from) => { let prev = from, out = "";
    for (const e of lines) { e.prev = prev; const l = JSON.stringify(e); out += l + "\\n";
      prev = c.createHash("sha256").update(l).digest("hex"); }
    return out; };
  ${body}`;

/** Nothing the job printed, saved or recorded holds the secret or the AWS keys. */
function expectNoValues(r: Ran): void {
  const text = [
    ...r.all.map((s) => [
      s.stdout
        .split('\n')
        .filter((l) => !l.startsWith('::add-mask::'))
        .join('\n'),
      s.stderr,
      s.summary,
      JSON.stringify(s.state),
    ]),
    JSON.stringify(events(r.job)),
  ].join('\n');
  for (const v of [SECRET, r.main.aws.env.AWS_SECRET_ACCESS_KEY, r.main.aws.env.AWS_SESSION_TOKEN])
    expect(text.includes(v)).toBe(false);
}

maybe('aws and secrets posts check the ledger lines their mains wrote', () => {
  test('control: nobody touched the ledger: both posts record ledger.verified, no warning, start says intact', async () => {
    const r = await runJob();
    expect(headCheck(r.job, 'aws')?.type).toBe('ledger.verified');
    expect(headCheck(r.job, 'secrets')?.type).toBe('ledger.verified');
    expect(warned(r.post.aws) || warned(r.post.secrets)).toBe(false);
    expect(r.post.start.code).toBe(0);
    expect(r.post.start.summary).toContain('Record intact');
    expectNoValues(r);
  }, 180000);

  test('hostile: aws credentials.issued edited in place (not rechained): aws post finds its line gone, secrets post the broken chain', async () => {
    const r = await runJob(
      script(`
      const i = lines.findIndex((e) => e.type === "credentials.issued");
      lines[i].data.durationSeconds = 43200;
      fs.writeFileSync(f, lines.map((e) => JSON.stringify(e)).join("\\n") + "\\n");`),
    );
    const aws = headCheck(r.job, 'aws');
    expect(aws?.type).toBe('ledger.tampered');
    expect(String(aws?.data.details)).toContain('the last line aws wrote is no longer in the ledger');
    expect(String(aws?.data.details)).toMatch(/line \d+ does not chain to the line before/);
    const secrets = headCheck(r.job, 'secrets');
    expect(secrets?.type).toBe('ledger.tampered');
    expect(String(secrets?.data.details)).toMatch(/line \d+ does not chain to the line before/);
    expect(String(secrets?.data.details)).not.toContain('no longer in the ledger');
    expect(warned(r.post.aws) && warned(r.post.secrets)).toBe(true);
    expect(r.post.start.code).toBe(1);
    expect(r.post.start.summary).toContain('RECORD ALTERED');
    expectNoValues(r);
  }, 180000);

  test('hostile: secrets.fetched removed and every later line rechained: secrets post finds its line gone; aws, whose line is untouched, stays verified', async () => {
    const r = await runJob(
      script(`
      lines = lines.filter((e) => e.type !== "secrets.fetched");
      fs.writeFileSync(f, rechain(lines[0].prev));`),
    );
    expect(events(r.job).map((e) => e.type)).not.toContain('secrets.fetched');
    const secrets = headCheck(r.job, 'secrets');
    expect(secrets?.type).toBe('ledger.tampered');
    expect(secrets?.data.details).toEqual([
      'the last line secrets wrote is no longer in the ledger (changed or removed)',
    ]);
    expect(warned(r.post.secrets)).toBe(true);
    expect(headCheck(r.job, 'aws')?.type).toBe('ledger.verified');
    expect(r.post.start.code).toBe(1);
    expect(r.post.start.summary).toContain('RECORD ALTERED');
    expectNoValues(r);
  }, 180000);

  test('hostile: credentials.issued removed and the rest rechained from line 1: both posts find their lines gone', async () => {
    const r = await runJob(
      script(`
      lines = lines.filter((e) => e.type !== "credentials.issued");
      fs.writeFileSync(f, rechain(lines[0].prev));`),
    );
    for (const step of ['aws', 'secrets']) {
      const check = headCheck(r.job, step);
      expect(check?.type).toBe('ledger.tampered');
      expect(String(check?.data.details)).toContain(`the last line ${step} wrote is no longer in the ledger`);
    }
    expect(warned(r.post.aws) && warned(r.post.secrets)).toBe(true);
    expect(r.post.start.code).toBe(1);
    expectNoValues(r);
  }, 180000);

  test("hostile: every line before aws's removed, the rest left byte for byte: both posts say line 1 is not the line the ledger started with", async () => {
    const r = await runJob(
      script(`
      const i = lines.findIndex((e) => e.type === "credentials.issued");
      const raw = fs.readFileSync(f, "utf8").split("\\n").filter(Boolean);
      fs.writeFileSync(f, raw.slice(i).join("\\n") + "\\n");`),
    );
    for (const step of ['aws', 'secrets']) {
      const check = headCheck(r.job, step);
      expect(check?.type).toBe('ledger.tampered');
      expect(check?.data.details).toEqual([
        'line 1 is not the line the ledger started with: lines before it were removed or it was changed',
      ]);
    }
    expect(r.post.start.code).toBe(1);
    expectNoValues(r);
  }, 180000);

  test('hostile: the whole ledger removed: both posts record that their lines are gone', async () => {
    const r = await runJob(script('fs.unlinkSync(f);'));
    for (const step of ['aws', 'secrets']) {
      const check = headCheck(r.job, step);
      expect(check?.type).toBe('ledger.tampered');
      expect(String(check?.data.details)).toContain(`the last line ${step} wrote is no longer in the ledger`);
    }
    expect(warned(r.post.aws) && warned(r.post.secrets)).toBe(true);
    expect(r.post.start.code).toBe(1);
    expectNoValues(r);
  }, 180000);
});
