/**
 * Whole-program runs of dist/run/main.js through the harness, with secrets in the moto
 * server (Secrets Manager and SSM) on loopback. Every test greps every output the step
 * leaves (log, file commands, summary, ledger) for the secret bytes.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseLedgerText } from '../../src/ledger/ledger.js';
import { motoAvailable, startMoto, type Moto } from '../../src/devkit/moto.js';
import { startOidcIssuer, type OidcIssuer } from '../../src/devkit/oidc-issuer.js';
import { Job, REPO_ROOT, type StepResult } from '../../src/devkit/run-action.js';
import { alive } from '../harness/proc.js';

const available = motoAvailable();
if (!available && process.env.CI === 'true')
  throw new Error('moto_server is not on PATH; CI must provide it');
if (!available) console.log('run e2e skipped: moto_server is not on PATH and CI is unset');
const maybe = available ? describe : describe.skip;

// A CRLF PEM (a public sample key's text, kept under test/fixtures), delivered byte for byte.
const PEM = readFileSync(join(REPO_ROOT, 'test/fixtures/sample-rsa-key.pem'), 'utf8');
const DB_PASSWORD = 'db-p4ss/w0rd+with=chars&<tricky>';
const DB_USER = 'svc_agent_user';
const SSM_VALUE = 'ssm-secure-value-7f3a9c';
const JSON_VALUE = 'json-api-key-0c8e1d2b';
const ENV_VALUE = 'env-sourced-value-55aa';
const UNICODE = 'pässwörd-日本語-🔑-\u00ff\u0001end';
const TRICKY = 'line1%0Aline2::add-mask::x\nEVIL=1\nEOF\nghadelimiter_1234';
const ALL = [PEM, DB_PASSWORD, SSM_VALUE, JSON_VALUE, ENV_VALUE, UNICODE, TRICKY];

let moto: Moto;
let issuer: OidcIssuer;

beforeAll(async () => {
  if (!available) return;
  moto = await startMoto();
  issuer = await startOidcIssuer();
  const sm = new SecretsManagerClient({
    region: 'us-east-1',
    endpoint: moto.endpoint,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  const ssm = new SSMClient({
    region: 'us-east-1',
    endpoint: moto.endpoint,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
  await sm.send(
    new CreateSecretCommand({
      Name: 'prod/db',
      SecretString: JSON.stringify({ username: DB_USER, password: DB_PASSWORD, port: 5432 }),
    }),
  );
  await sm.send(new CreateSecretCommand({ Name: 'prod/pem', SecretString: PEM }));
  await sm.send(new CreateSecretCommand({ Name: 'prod/unicode', SecretString: UNICODE }));
  await sm.send(new CreateSecretCommand({ Name: 'prod/tricky', SecretString: TRICKY }));
  await ssm.send(new PutParameterCommand({ Name: '/app/key', Value: SSM_VALUE, Type: 'SecureString' }));
  sm.destroy();
  ssm.destroy();
}, 60000);

afterAll(async () => {
  await issuer?.close();
  await moto?.stop();
});

/** Variables the runner gives every step, credentials among them. */
const RUNNER_CREDENTIALS = {
  ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'runner-oidc-request-token-value',
  ACTIONS_ID_TOKEN_REQUEST_URL: 'http://127.0.0.1:9/token',
  ACTIONS_RUNTIME_TOKEN: 'runner-runtime-token-value',
  ACTIONS_CACHE_URL: 'http://127.0.0.1:9/cache/',
  ACTIONS_RESULTS_URL: 'http://127.0.0.1:9/results/',
  GITHUB_TOKEN: 'ghs_jobtokenvalue000000000000000000000',
};

function newJob(): Job {
  const job = new Job({ env: { ...moto.env, ...RUNNER_CREDENTIALS } });
  // The command runs as its own user (run's default where it is root): it writes what it
  // saw into the job's folder, open to all like /tmp; RUNNER_TEMP and the rest stay root's.
  chmodSync(job.root, 0o1777);
  return job;
}

function ledgerText(job: Job): string {
  const p = join(job.runnerTemp, 'cordon', 'ledger.jsonl');
  return existsSync(p) ? readFileSync(p, 'utf8') : '';
}

function events(job: Job): { type: string; data: Record<string, unknown> }[] {
  return parseLedgerText(ledgerText(job)).flatMap((l) => (l.event ? [l.event] : []));
}

/** Everything the step left where the runner or a later step can read it. */
function everyOutput(job: Job, r: StepResult): Record<string, string> {
  return {
    stdout: r.stdout
      .split('\n')
      // The runner consumes mask commands; they never reach the log.
      .filter((l) => !l.startsWith('::add-mask::'))
      .join('\n'),
    stderr: r.stderr,
    outputs: JSON.stringify(r.outputs),
    env: JSON.stringify(r.env),
    state: JSON.stringify(r.state),
    summary: r.summary,
    ledger: ledgerText(job),
  };
}

/** No secret, and none of its lines of 6+ characters or its base64, in any output. */
function expectNoSecrets(job: Job, r: StepResult, values: string[] = ALL): void {
  for (const [where, text] of Object.entries(everyOutput(job, r))) {
    for (const v of values) {
      const pieces = [
        v,
        Buffer.from(v).toString('base64'),
        ...v.split(/\r?\n/).filter((l) => l.length >= 6 && !l.startsWith('-----')),
      ];
      for (const p of pieces) {
        if (text.includes(p)) throw new Error(`a secret (${v.length} chars) appears in ${where}`);
      }
    }
  }
}

const SECRETS = [
  'DB_PASSWORD=aws-sm:prod/db#password',
  'PEM_KEY=aws-sm:prod/pem',
  'UNICODE_VALUE=aws-sm:prod/unicode',
  'TRICKY=aws-sm:prod/tricky',
  'APP_KEY=ssm:/app/key',
  'API_KEY=json:API_KEY',
  'FROM_ENV=env:SOURCE_VALUE',
].join('\n');

maybe('run action, as a whole program', () => {
  test('delivers every secret byte for byte to the command only, scrubs every form it prints, records names only', async () => {
    const job = newJob();
    const dump = join(job.root, 'env.json');
    const script = [
      `node -e 'require("fs").writeFileSync(process.argv[1], JSON.stringify(process.env))' ${dump}`,
      'echo "plain: $DB_PASSWORD"',
      'echo "b64: $(echo "$DB_PASSWORD" | base64 -w0)"',
      'echo "b64url: $(printf %s "$APP_KEY" | base64 -w0 | tr "+/" "-_" | tr -d =)"',
      'echo "hex: $(printf %s "$API_KEY" | xxd -p | tr -d "\\n")"',
      'echo "url: $(node -e "console.log(encodeURIComponent(process.env.DB_PASSWORD))")"',
      'echo "json: $(node -e "console.log(JSON.stringify({k: process.env.DB_PASSWORD}))")"',
      'printf "%s" "${FROM_ENV:0:9}"; sleep 0.2; printf "%s\\n" "${FROM_ENV:9}"',
      'echo "$PEM_KEY" >&2',
      'echo "unicode: $UNICODE_VALUE"',
      'echo "tricky: $TRICKY"',
      'echo done-marker',
    ].join('\n');
    const r = await job.run('run', 'main', {
      inputs: {
        run: script,
        secrets: SECRETS,
        'secrets-json': JSON.stringify({ API_KEY: JSON_VALUE, OTHER: 'unused-value-1234' }),
      },
      env: { SOURCE_VALUE: ENV_VALUE },
    });
    expect(r.stderr + r.stdout).toContain('done-marker');
    expect(r.code).toBe(0);
    const seen = JSON.parse(readFileSync(dump, 'utf8')) as Record<string, string>;
    expect(seen.DB_PASSWORD).toBe(DB_PASSWORD);
    expect(seen.PEM_KEY).toBe(PEM);
    expect(seen.UNICODE_VALUE).toBe(UNICODE);
    expect(seen.TRICKY).toBe(TRICKY);
    expect(seen.APP_KEY).toBe(SSM_VALUE);
    expect(seen.API_KEY).toBe(JSON_VALUE);
    expect(seen.FROM_ENV).toBe(ENV_VALUE);
    // The runner's credentials and this step's inputs are gone; no GH_TOKEN was asked for.
    for (const k of Object.keys(RUNNER_CREDENTIALS)) expect(seen[k]).toBeUndefined();
    expect(Object.keys(seen).filter((k) => k.startsWith('INPUT_'))).toEqual([]);
    expect(seen.GH_TOKEN).toBeUndefined();
    expect(seen.EVIL).toBeUndefined();
    expect(seen.GITHUB_WORKSPACE).toBe(job.workspace);

    for (const line of [
      'plain: ***',
      'b64: ***',
      'b64url: ***',
      'hex: ***',
      'url: ***',
      'json: {"k":"***"}',
      'unicode: ***',
    ]) {
      expect(r.stdout).toContain(line);
    }
    expect(r.stdout).toMatch(/^\*\*\*$/m);
    expect(r.stderr).toContain('***');
    expectNoSecrets(job, r);
    for (const v of Object.values(RUNNER_CREDENTIALS)) expect(ledgerText(job)).not.toContain(v);

    const ev = events(job);
    const started = ev.find((e) => e.type === 'run.started')?.data as Record<string, unknown>;
    expect(started.secrets).toEqual(
      expect.arrayContaining([
        { name: 'DB_PASSWORD', source: 'aws-sm:prod/db#password' },
        { name: 'APP_KEY', source: 'ssm:/app/key' },
        { name: 'API_KEY', source: 'json:API_KEY' },
      ]),
    );
    expect(started.envRemoved).toEqual(
      expect.arrayContaining([...Object.keys(RUNNER_CREDENTIALS), 'INPUT_RUN', 'INPUT_SECRETS']),
    );
    expect(started.commandSha256).toMatch(/^[0-9a-f]{64}$/);
    const finished = ev.find((e) => e.type === 'run.finished')?.data as Record<string, unknown>;
    expect(finished.exitCode).toBe(0);
    expect(finished.bytesScrubbed as number).toBeGreaterThan(100);
    expect(finished.leaks).toEqual([]);
    expect(r.outputs['exit-code']).toBe('0');
  });

  test('a secret that fails to fetch means the command never starts; the error names it, never a value', async () => {
    const job = newJob();
    const marker = join(job.root, 'started');
    const r = await job.run('run', 'main', {
      inputs: {
        run: `touch ${marker}`,
        secrets:
          'DB_PASSWORD=aws-sm:prod/db#password\nMISSING=aws-sm:prod/does-not-exist\nNOPARAM=ssm:/app/missing\nNOKEY=aws-sm:prod/db#nope',
      },
    });
    expect(r.code).not.toBe(0);
    expect(existsSync(marker)).toBe(false);
    const err = r.commands.find((c) => c.command === 'error')?.message ?? '';
    expect(err).toContain(
      'MISSING (aws-sm:prod/does-not-exist): it was not found (ResourceNotFoundException',
    );
    expect(err).toContain('NOPARAM (ssm:/app/missing): it was not found (ParameterNotFound');
    expect(err).toContain('NOKEY (aws-sm:prod/db#nope): the JSON value has no key nope');
    expect(err).toContain('nothing was started');
    expectNoSecrets(job, r, [...ALL, DB_USER]);
    expect(events(job).map((e) => e.type)).not.toContain('run.started');
  });

  test('keep-env keeps a runner variable; github-token is handed as GH_TOKEN and GITHUB_TOKEN', async () => {
    const job = newJob();
    const dump = join(job.root, 'env.json');
    const token = 'ghs_agenttokenvalue1111111111111111111';
    const r = await job.run('run', 'main', {
      inputs: {
        run: `node -e 'require("fs").writeFileSync(process.argv[1], JSON.stringify(process.env))' ${dump}; echo "token=$GH_TOKEN"`,
        'github-token': token,
        'keep-env': 'ACTIONS_CACHE_URL',
      },
    });
    expect(r.code).toBe(0);
    const seen = JSON.parse(readFileSync(dump, 'utf8')) as Record<string, string>;
    expect(seen.GH_TOKEN).toBe(token);
    expect(seen.GITHUB_TOKEN).toBe(token);
    expect(seen.ACTIONS_CACHE_URL).toBe(RUNNER_CREDENTIALS.ACTIONS_CACHE_URL);
    expect(seen.ACTIONS_ID_TOKEN_REQUEST_TOKEN).toBeUndefined();
    expect(r.stdout).toContain('token=***');
    expectNoSecrets(job, r, [token]);
  });

  test('propagates the exit code', async () => {
    const job = newJob();
    const r = await job.run('run', 'main', { inputs: { run: 'echo "pid $$"; exit 3' } });
    expect(r.code).toBe(3);
    // The command's pid is left for the egress daemon's "who asked" labels.
    const pid = readFileSync(join(job.runnerTemp, 'cordon', 'agent.pid'), 'utf8').trim();
    expect(r.stdout).toContain(`pid ${pid}`);
    expect(r.outputs['exit-code']).toBe('3');
    expect(r.commands.find((c) => c.command === 'error')?.message).toContain('exit code 3');
  });

  test('on timeout kills the whole process group and fails; nothing outlives the step', async () => {
    const job = newJob();
    const pidFile = join(job.root, 'bg.pid');
    const r = await job.run('run', 'main', {
      inputs: { run: `sleep 300 & echo $! > ${pidFile}; sleep 300`, 'timeout-minutes': '0.02' },
      timeoutMs: 30000,
    });
    expect(r.code).not.toBe(0);
    expect(r.commands.find((c) => c.command === 'error')?.message).toContain('timed out');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(alive(pid)).toBe(false);
    const finished = events(job).find((e) => e.type === 'run.finished')?.data as Record<string, unknown>;
    expect(finished.timedOut).toBe(true);
    expect(finished.processesKilled as number).toBeGreaterThanOrEqual(2);
  });

  test('kills background processes left when the command ends', async () => {
    const job = newJob();
    const pidFile = join(job.root, 'bg.pid');
    const r = await job.run('run', 'main', {
      inputs: { run: `(sleep 300 >/dev/null 2>&1 &  echo $! > ${pidFile})` },
    });
    expect(r.code).toBe(0);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(alive(pid)).toBe(false);
  });

  test('finds a secret written to the workspace (not a git repository) and fails, naming path:line and the secret', async () => {
    const job = newJob();
    const r = await job.run('run', 'main', {
      inputs: {
        run: 'mkdir -p out; printf "one\\ntwo\\nkey=%s\\n" "$DB_PASSWORD" > out/config.txt; echo "$APP_KEY" | base64 > b64.txt; echo clean > clean.txt',
        secrets: 'DB_PASSWORD=aws-sm:prod/db#password\nAPP_KEY=ssm:/app/key',
      },
    });
    expect(r.code).not.toBe(0);
    const errors = r.commands.filter((c) => c.command === 'error');
    expect(errors.map((e) => e.message)).toEqual(
      expect.arrayContaining([
        'run: secret DB_PASSWORD was written to out/config.txt:3',
        'run: secret APP_KEY was written to b64.txt:1',
      ]),
    );
    expect(errors.find((e) => e.message.includes('out/config.txt'))?.properties).toMatchObject({
      file: 'out/config.txt',
      line: '3',
    });
    const finished = events(job).find((e) => e.type === 'run.finished')?.data as Record<string, unknown>;
    expect(finished.leaks).toEqual(
      expect.arrayContaining([
        { secret: 'DB_PASSWORD', path: 'out/config.txt', line: 3 },
        { secret: 'APP_KEY', path: 'b64.txt', line: 1 },
      ]),
    );
    expectNoSecrets(job, r);
  });

  test('in a git workspace, scans changed, untracked and ignored files and new commits; leak-scan: warn only warns', async () => {
    const job = newJob();
    const git = (...args: string[]): void => {
      execFileSync(
        'git',
        ['-C', job.workspace, '-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args],
        { stdio: 'ignore' },
      );
    };
    git('init', '-q');
    writeFileSync(join(job.workspace, 'tracked.txt'), 'a\nb\n');
    writeFileSync(join(job.workspace, '.gitignore'), 'ignored/\n');
    git('add', '.');
    git('commit', '-qm', 'init');
    mkdirSync(join(job.workspace, 'ignored'));
    const r = await job.run('run', 'main', {
      inputs: {
        run: [
          'echo "$DB_PASSWORD" >> tracked.txt; echo "x $DB_PASSWORD" > new.txt; echo "$DB_PASSWORD" > ignored/cache',
          // Committed, then deleted again: still in what a push sends.
          'printf "one\\nkey: %s\\n" "$APP_KEY" > committed.txt',
          'git -c user.name=a -c user.email=a@example.com add committed.txt',
          'git -c user.name=a -c user.email=a@example.com commit -qm add',
          'git -c user.name=a -c user.email=a@example.com rm -q committed.txt',
          'git -c user.name=a -c user.email=a@example.com commit -qm remove',
        ].join('\n'),
        secrets: 'DB_PASSWORD=aws-sm:prod/db#password\nAPP_KEY=ssm:/app/key',
        'leak-scan': 'warn',
      },
    });
    expect(r.code).toBe(0);
    const warnings = r.commands.filter((c) => c.command === 'warning').map((c) => c.message);
    expect(warnings).toEqual(
      expect.arrayContaining([
        'run: secret DB_PASSWORD was written to tracked.txt:3',
        'run: secret DB_PASSWORD was written to new.txt:1',
        'run: secret DB_PASSWORD was written to ignored/cache:1',
      ]),
    );
    // Reported at the blob that holds it, from every object the command created.
    const blob = execFileSync('git', ['-C', job.workspace, 'rev-parse', 'HEAD~1:committed.txt'])
      .toString()
      .trim()
      .slice(0, 12);
    expect(warnings).toContain(`run: secret APP_KEY was written to committed.txt@${blob}:2`);
    expectNoSecrets(job, r);
  });

  test('what the command wrote into .git that makes git run programs is put back, named, and runs in no git after it', async () => {
    const job = newJob();
    const git = (...args: string[]): string =>
      execFileSync(
        'git',
        ['-C', job.workspace, '-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args],
        {
          encoding: 'utf8',
        },
      );
    git('init', '-q');
    writeFileSync(join(job.workspace, 'tracked.txt'), 'a\n');
    git('add', '.');
    git('commit', '-qm', 'init');
    // What actions/checkout leaves: withheld during the command, back after it, on top of the restored config.
    git(
      'config',
      '--add',
      'http.https://github.com/.extraheader',
      'AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hzX2NoZWNrb3V0dG9rZW4xMjM=',
    );
    const configBefore = readFileSync(join(job.workspace, '.git', 'config'), 'utf8');
    const marker = join(job.root, 'git-program-ran');
    const r = await job.run('run', 'main', {
      inputs: {
        run: [
          `printf '#!/bin/sh\\necho "$0" >> ${marker}\\n' > "$PWD/evil.sh" && chmod 755 evil.sh`,
          'echo "$DB_PASSWORD" > leaked.txt',
          'git -c user.name=a -c user.email=a@example.com add leaked.txt',
          'git -c user.name=a -c user.email=a@example.com commit -qm leak',
          'for k in core.fsmonitor gpg.program core.pager pager.log diff.external diff.evil.textconv filter.evil.clean filter.evil.smudge; do git config "$k" "$PWD/evil.sh"; done',
          'git config core.hooksPath "$PWD/hooks"',
          'echo "* filter=evil diff=evil" > .gitattributes',
          'cp evil.sh .git/hooks/post-checkout && cp evil.sh .git/hooks/reference-transaction',
          'rm .git/info/exclude && ln -s "$PWD/evil.sh" .git/info/exclude',
          'echo ../elsewhere > .git/commondir',
        ].join('\n'),
        secrets: 'DB_PASSWORD=aws-sm:prod/db#password',
        'leak-scan': 'warn',
      },
    });
    expect(r.code).toBe(0);
    // The leak scan read the command's git objects: none of the programs ran.
    expect(r.commands.some((c) => c.command === 'warning' && /leaked\.txt@/.test(c.message))).toBe(true);
    expect(existsSync(marker)).toBe(false);
    expect(readFileSync(join(job.workspace, '.git', 'config'), 'utf8')).toBe(configBefore);
    expect(existsSync(join(job.workspace, '.git', 'hooks', 'post-checkout'))).toBe(false);
    expect(existsSync(join(job.workspace, '.git', 'commondir'))).toBe(false);
    expect(lstatSync(join(job.workspace, '.git', 'info', 'exclude')).isFile()).toBe(true);
    const finished = parseLedgerText(ledgerText(job))
      .flatMap((l) => (l.event ? [l.event] : []))
      .find((e) => e.type === 'run.finished')?.data as { gitRestored?: string[] };
    expect(finished.gitRestored).toEqual([
      '.git/commondir',
      '.git/config',
      '.git/hooks/post-checkout',
      '.git/hooks/reference-transaction',
      '.git/info/exclude',
    ]);
    expect(
      r.commands.some(
        (c) => c.command === 'warning' && /put back as before it: .git\/commondir/.test(c.message),
      ),
    ).toBe(true);
    // A later step of the user's runs git there as usual: still nothing of the command's runs.
    git('status', '--porcelain');
    git('checkout', '-q', '-b', 'later');
    git('log', '-p', '-1');
    expect(existsSync(marker)).toBe(false);
    expectNoSecrets(job, r);
  });

  test('refuses short values unless marked not secret, and refuses reserved target names', async () => {
    const job = newJob();
    const short = await job.run('run', 'main', {
      inputs: { run: 'echo hi', secrets: 'PIN=env:PIN_VALUE' },
      env: { PIN_VALUE: 'ab1' },
    });
    expect(short.code).not.toBe(0);
    expect(short.commands.find((c) => c.command === 'error')?.message).toContain(
      'secret PIN is only 3 character(s) long',
    );
    expect(short.stdout).not.toContain('ab1');

    const dump = join(job.root, 'pin');
    const ok = await job.run('run', 'main', {
      inputs: { run: `printf %s "$PIN" > ${dump}`, secrets: 'PIN=env:PIN_VALUE', 'not-secret': 'PIN' },
      env: { PIN_VALUE: 'ab1' },
    });
    expect(ok.code).toBe(0);
    expect(readFileSync(dump, 'utf8')).toBe('ab1');

    for (const target of [
      'PATH',
      'LD_PRELOAD',
      'NODE_OPTIONS',
      'BASH_ENV',
      'GITHUB_ENV',
      'RUNNER_TEMP',
      'ACTIONS_X',
      '1BAD',
    ]) {
      const r = await job.run('run', 'main', { inputs: { run: 'echo hi', secrets: `${target}=env:HOME` } });
      expect(r.code).not.toBe(0);
      expect(r.commands.find((c) => c.command === 'error')?.message).toContain(
        `target name "${target}" is refused`,
      );
    }
  }, 120000);

  test('hostile: a secret pasted into the command line reaches the ledger scrubbed, never as it is', async () => {
    const job = newJob();
    const value = 'pasted-secret-value-7Hq2';
    const r = await job.run('run', 'main', {
      inputs: {
        run: `test -n "${value}" && echo ok # password=hunter2hunter2\nexit 0`,
        secrets: 'FROM_ENV=env:SOURCE_VALUE',
      },
      env: { SOURCE_VALUE: value },
    });
    expect(r.code).toBe(0);
    const started = events(job).find((e) => e.type === 'run.started')?.data;
    // Registered: scrubbed by the registry; of a credential's shape: by its shape. One line.
    expect(started?.command).toBe('test -n "***" && echo ok # password=*** ⏎ exit 0');
    expect(ledgerText(job)).not.toContain('hunter2hunter2');
    expectNoSecrets(job, r, [value]);
  });

  test('expands a JSON secret to PREFIX_KEY names, and fails on a collision', async () => {
    const job = newJob();
    const dump = join(job.root, 'env.json');
    const r = await job.run('run', 'main', {
      inputs: {
        run: `node -e 'require("fs").writeFileSync(process.argv[1], JSON.stringify(process.env))' ${dump}`,
        secrets: 'DB_*=aws-sm:prod/db',
      },
    });
    expect(r.code).toBe(0);
    const seen = JSON.parse(readFileSync(dump, 'utf8')) as Record<string, string>;
    expect([seen.DB_USERNAME, seen.DB_PASSWORD, seen.DB_PORT]).toEqual([DB_USER, DB_PASSWORD, '5432']);

    const clash = await job.run('run', 'main', {
      inputs: { run: 'echo hi', secrets: 'DB_*=aws-sm:prod/db\nDB_PASSWORD=ssm:/app/key' },
    });
    expect(clash.code).not.toBe(0);
    expect(clash.commands.find((c) => c.command === 'error')?.message).toContain(
      'DB_PASSWORD would be set twice',
    );
    expectNoSecrets(job, clash, [DB_PASSWORD, SSM_VALUE]);
  });

  test('mints AWS credentials for the command only, fetches with them, and records the role', async () => {
    // Moto keeps data per account and takes the account from the caller's keys: the secret is
    // found only because the fetch used the credentials minted for this role's account.
    const job = new Job({
      env: {
        ...moto.env,
        ...issuer.env,
        AWS_ACCESS_KEY_ID: 'runner-key-id',
        AWS_SECRET_ACCESS_KEY: 'runner-secret-key',
      },
    });
    chmodSync(job.root, 0o1777);
    const dump = join(job.root, 'env.json');
    const r = await job.run('run', 'main', {
      inputs: {
        run: `node -e 'require("fs").writeFileSync(process.argv[1], JSON.stringify(process.env))' ${dump}; echo "key=$AWS_SECRET_ACCESS_KEY"`,
        secrets: 'DB_PASSWORD=aws-sm:prod/db#password',
        'aws-role-to-assume': 'arn:aws:iam::123456789012:role/cordon-agent',
        'aws-region': 'us-east-1',
        'aws-allow':
          'secretsmanager:GetSecretValue arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/*',
      },
    });
    expect(r.code).toBe(0);
    const seen = JSON.parse(readFileSync(dump, 'utf8')) as Record<string, string>;
    expect(seen.AWS_ACCESS_KEY_ID).toMatch(/^[A-Z0-9]{16,}$/);
    expect(seen.AWS_ACCESS_KEY_ID).not.toBe('runner-key-id');
    expect(seen.AWS_SESSION_TOKEN?.length).toBeGreaterThan(20);
    expect(seen.AWS_REGION).toBe('us-east-1');
    expect(seen.DB_PASSWORD).toBe(DB_PASSWORD);
    expect(seen.ACTIONS_ID_TOKEN_REQUEST_TOKEN).toBeUndefined();
    expect(seen.ACTIONS_ID_TOKEN_REQUEST_URL).toBeUndefined();
    expect(r.stdout).toContain('key=***');
    expect(r.env).toEqual({});
    expectNoSecrets(job, r, [
      DB_PASSWORD,
      seen.AWS_SECRET_ACCESS_KEY,
      seen.AWS_SESSION_TOKEN,
      seen.AWS_ACCESS_KEY_ID,
    ]);
    const ev = events(job);
    const issued = ev.find((e) => e.type === 'credentials.issued')?.data as Record<string, unknown>;
    expect(issued).toMatchObject({
      role: 'arn:aws:iam::123456789012:role/cordon-agent',
      export: 'command',
      region: 'us-east-1',
    });
    const started = ev.find((e) => e.type === 'run.started')?.data as Record<string, unknown>;
    expect((started.credentials as string[])[0]).toMatch(
      /^aws:arn:aws:sts::123456789012:assumed-role\/cordon-agent\//,
    );
  });

  test('as the runner user, fails when the command alters the ledger, and records that (its own user cannot)', async () => {
    const alter =
      'sed -i \'s/"commandSha256":"[0-9a-f]*"/"commandSha256":"0"/\' "$RUNNER_TEMP/cordon/ledger.jsonl"';
    const own = newJob();
    const denied = await own.run('run', 'main', { inputs: { run: alter } });
    expect(denied.stderr).toMatch(/Permission denied/);
    expect(
      (events(own).find((e) => e.type === 'run.finished')?.data as Record<string, unknown>).ledgerIntact,
    ).toBe(true);
    const job = newJob();
    const r = await job.run('run', 'main', { inputs: { run: alter, user: 'runner' } });
    expect(r.code).not.toBe(0);
    expect(r.commands.find((c) => c.command === 'error')?.message).toContain(
      'the run ledger was altered while the command ran',
    );
    const finished = events(job).find((e) => e.type === 'run.finished')?.data as Record<string, unknown>;
    expect(finished.ledgerIntact).toBe(false);

    const clean = newJob();
    const ok = await clean.run('run', 'main', { inputs: { run: 'true' } });
    expect(ok.code).toBe(0);
    expect(
      (events(clean).find((e) => e.type === 'run.finished')?.data as Record<string, unknown>).ledgerIntact,
    ).toBe(true);
  });

  test('runs in working-directory with the shell asked for; scrub-output: false leaves output to the runner', async () => {
    const job = newJob();
    mkdirSync(join(job.workspace, 'sub'));
    const py = await job.run('run', 'main', {
      inputs: {
        run: 'import os\nprint("cwd=" + os.getcwd())\nprint("v=" + os.environ["APP_KEY"])',
        shell: 'python3 {0}',
        'working-directory': 'sub',
        secrets: 'APP_KEY=ssm:/app/key',
      },
    });
    expect(py.code).toBe(0);
    expect(py.stdout).toContain(`cwd=${join(job.workspace, 'sub')}`);
    expect(py.stdout).toContain('v=***');
    expectNoSecrets(job, py);

    const raw = await job.run('run', 'main', {
      inputs: { run: 'echo "v=$APP_KEY"', secrets: 'APP_KEY=ssm:/app/key', 'scrub-output': 'false' },
    });
    expect(raw.code).toBe(0);
    // Unscrubbed by Cordon; the runner still masks it with the ::add-mask:: printed before.
    expect(raw.stdout).toContain(`v=${SSM_VALUE}`);
    expect(raw.masks).toContain(SSM_VALUE);

    const bad = await job.run('run', 'main', { inputs: { run: 'true', 'working-directory': 'nope' } });
    expect(bad.code).not.toBe(0);
    expect(bad.commands.find((c) => c.command === 'error')?.message).toContain(
      'working-directory "nope" does not exist',
    );
  });

  test('scrubs a secret inside 8 MB of base64 output wrapped at 76 columns', async () => {
    const job = newJob();
    const r = await job.run('run', 'main', {
      inputs: {
        run: '{ head -c 3000001 /dev/urandom; printf %s "$DB_PASSWORD"; head -c 3000000 /dev/urandom; } | base64',
        secrets: 'DB_PASSWORD=aws-sm:prod/db#password',
      },
      timeoutMs: 100_000,
    });
    // What the step said, when it did not end well (the harness notes a kill there).
    if (r.code !== 0) throw new Error(`run ended with ${r.code}:\n${r.stderr.slice(-3000)}`);
    expect(r.stdout.length).toBeGreaterThan(8_000_000);
    const joined = r.stdout
      .split('\n')
      .filter((l) => !l.startsWith('::add-mask::'))
      .join('');
    expect(joined.includes('***')).toBe(true);
    // Whatever offset the value landed at, no run of its base64 survives.
    for (let skip = 0; skip < 3; skip++) {
      const core = Buffer.from(DB_PASSWORD)
        .subarray(skip, skip + 24)
        .toString('base64');
      expect(joined.includes(core.slice(4, 28))).toBe(false);
    }
    const finished = events(job).find((e) => e.type === 'run.finished')?.data as Record<string, unknown>;
    expect(finished.bytesScrubbed as number).toBeGreaterThan(30);
  }, 120_000);
});
