import { callerUid, ConfigRefused, parseLaunchConfig } from '../../../src/actions/run/agent-config.js';

const good = () => ({
  argv: ['bash', '{home}/.cordon/run-1.sh'],
  env: { PATH: '/usr/bin', TOKEN: 'sekrit-value-123' },
  cwd: '/w/repo',
  workspace: '/w/repo',
  files: [{ path: '.cordon/run-1.sh', content: 'echo hi', mode: 0o500 }],
});

describe('parseLaunchConfig', () => {
  test('the config run sends is taken as it is', () => {
    expect(parseLaunchConfig(good())).toEqual(good());
  });

  test.each<[string, (c: Record<string, unknown>) => void, RegExp]>([
    ['a uid to run as', (c) => (c.uid = 0), /fields the launcher does not take: uid/],
    ['a user name', (c) => (c.user = 'root'), /does not take: user/],
    ['a home', (c) => (c.home = '/root'), /does not take: home/],
    ['no workspace', (c) => delete c.workspace, /lacks workspace/],
    ['a relative workspace', (c) => (c.workspace = 'etc'), /workspace must be an absolute path/],
    ['an empty argv', (c) => (c.argv = []), /argv must be/],
    ['an argument with NUL', (c) => (c.argv = ['a\0b']), /argv must be/],
    ['a variable name with =', (c) => (c.env = { 'A=B': 'x' }), /variable name/],
    [
      'a file outside the home',
      (c) => (c.files = [{ path: '../../etc/passwd', content: '', mode: 0o600 }]),
      /plain relative name/,
    ],
    [
      'an absolute file',
      (c) => (c.files = [{ path: '/etc/sudoers.d/x', content: '', mode: 0o600 }]),
      /plain relative name/,
    ],
    ['a set-uid file', (c) => (c.files = [{ path: 'x', content: '', mode: 0o4755 }]), /mode outside/],
    [
      'a file with an owner',
      (c) => (c.files = [{ path: 'x', content: '', mode: 0o600, uid: 0 }]),
      /does not take: uid/,
    ],
  ])('refused: %s', (_name, change, why) => {
    const c: Record<string, unknown> = good();
    change(c);
    expect(() => parseLaunchConfig(c)).toThrow(ConfigRefused);
    expect(() => parseLaunchConfig(c)).toThrow(why);
  });

  test('a refusal never quotes a value of the environment', () => {
    const c = { ...good(), env: { TOKEN: 'sekrit-value-123\0' } };
    expect(() => parseLaunchConfig(c)).toThrow(/env TOKEN is not a string without NUL/);
    try {
      parseLaunchConfig(c);
    } catch (e) {
      expect(String(e)).not.toContain('sekrit');
    }
  });
});

test("the caller is sudo's caller, or root when started as root", () => {
  expect(callerUid({ SUDO_UID: '1001' }, 0)).toBe(1001);
  expect(callerUid({}, 0)).toBe(0);
  expect(callerUid({ SUDO_UID: '1001; x' }, 0)).toBe(0);
});
