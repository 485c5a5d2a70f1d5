import { describe, expect, test } from '@jest/globals';
import { commandPreview, oneLine, redactLabels, scrubShapes } from '../../../src/platform/redact.js';

describe('redact', () => {
  test('takes out what looks like a credential, keeps variables and ordinary words', () => {
    const cases: [string, string][] = [
      ['curl -H "Authorization: Bearer abc123xyz" x', 'curl -H "Authorization: Bearer ***" x'],
      ['MY_API_KEY=hunter2 ./x', 'MY_API_KEY=*** ./x'],
      ['./x --token hunter2 --password=abc', './x --token *** --password=***'],
      ['{"token": "abc def"}', '{"token": ***}'],
      [`gh ghp_${'A1b2'.repeat(9)} AKIAABCDEFGHIJKLMNOP`, 'gh *** ***'],
      [
        'export TOKEN=$GH_TOKEN; echo "key $DEMO_API_KEY"',
        'export TOKEN=$GH_TOKEN; echo "key $DEMO_API_KEY"',
      ],
      [`x ${'q7Zr2mK9xP4vL8nB3cT6wY1sD5fH0jGe'}`, 'x ***'],
      [
        'npm ci && npm test -- --coverage-reporters=text-summary',
        'npm ci && npm test -- --coverage-reporters=text-summary',
      ],
    ];
    for (const [input, want] of cases) expect(scrubShapes(input)).toBe(want);
  });

  test('the password of user:password, in a URL or after curl -u, is taken out; the user and variables kept', () => {
    const cases: [string, string][] = [
      [
        'git clone https://bot:plain-pw-42@git.example.com/r.git && make',
        'git clone https://bot:***@git.example.com/r.git && make',
      ],
      ['psql postgres://app:Summer2024@db:5432/x', 'psql postgres://app:***@db:5432/x'],
      ['curl -u admin:S3cret! https://x.test/a', 'curl -u admin:*** https://x.test/a'],
      ['curl --user "ci:pa ss" x', 'curl --user "ci:***" x'],
      ["curl -u 'ci:pa ss' x", "curl -u 'ci:***' x"],
      ['curl -u "$U:$P" https://u:$PASS@x.test', 'curl -u "$U:$P" https://u:$PASS@x.test'],
      ['open http://x.test:8080/a@b', 'open http://x.test:8080/a@b'],
    ];
    for (const [input, want] of cases) expect(scrubShapes(input)).toBe(want);
  });

  test('a name after a newline is not taken as a value of the line before', () => {
    expect(scrubShapes('echo "$API_KEY"\necho done')).toBe('echo "$API_KEY"\necho done');
  });

  test('the command is scrubbed whole before it is cut, so no cut leaves part of a value', () => {
    const value = 'abcdefgh-secret-value';
    const cmd = `${'x'.repeat(95)} ${value}`;
    const preview = commandPreview(cmd, (t) => t.split(value).join('***'), 100);
    expect(preview).toBe(`${'x'.repeat(95)} ***`);
    expect(commandPreview(cmd, (t) => t, 100)).toContain('abc');
    expect(oneLine('a\nb\u0007c', 10)).toBe('a ⏎ b?c');
    expect(oneLine('y'.repeat(20), 10)).toBe(`${'y'.repeat(9)}…`);
  });

  test('a JWT and a PEM private key (whole, or cut before its END line) are taken out of the command preview', () => {
    // Segments under 32 characters: only the JWT shape can see this one.
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOngifQ.c2lnbmF0dXJlLXNpZw';
    const body = ['MIIEvQIBADANBgkqhkiG9w0BAQEFAASC', 'oVfXk4ZqYb2Rt7LmNw0pQsUe3HcJgAaD', '=='];
    const pem = ['-----BEGIN RSA PRIVATE KEY-----', ...body, '-----END RSA PRIVATE KEY-----'].join('\n');
    const none = (t: string): string => t; // no registry knows these: the shapes alone
    expect(commandPreview(`./agent --oidc ${jwt} && echo ${jwt}|x`, none)).toBe(
      './agent --oidc *** && echo ***|x',
    );
    expect(commandPreview(`printf '%s' '${pem}' > k.pem && ./agent`, none)).toBe(
      "printf '%s' '***' > k.pem && ./agent",
    );
    expect(commandPreview(`echo '-----BEGIN OPENSSH PRIVATE KEY-----\n${body.join('\n')}`, none)).toBe(
      "echo '***",
    );
    for (const out of [commandPreview(`k=${jwt} ./a '${pem}'`, none, 100)]) {
      expect(out).not.toMatch(/eyJ|PRIVATE KEY|MIIE|oVfX/);
    }
  });

  test('labels of a name that could carry data are shown by their length', () => {
    expect(redactLabels('registry.npmjs.org')).toBe('registry.npmjs.org');
    expect(redactLabels('s3-us-west-2.amazonaws.com')).toBe('s3-us-west-2.amazonaws.com');
    expect(redactLabels('6b6579313233343536.x.evil.test')).toBe('[18 chars].x.evil.test');
    expect(redactLabels('ab12cd34ef.evil.test')).toBe('[10 chars].evil.test');
  });
});
