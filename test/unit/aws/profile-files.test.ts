import { describe, expect, test } from '@jest/globals';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { profilePaths, removeSection, sectionHeader, writeSection } from '../../../src/aws/profile-files.js';
import { tempDir } from '../../harness/tmp.js';

describe('profile files', () => {
  test('a section is replaced in place, others kept, and the file goes when the last one does', () => {
    const { dir, credentials } = profilePaths(tempDir('cordon-aws-profile-'));
    writeSection(credentials, '[a]', { k: '1' });
    writeSection(credentials, '[b]', { k: '2' });
    writeSection(credentials, '[a]', { k: '3' });
    expect(readFileSync(credentials, 'utf8')).toBe('[a]\nk = 3\n\n[b]\nk = 2\n');
    expect(statSync(credentials).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(removeSection(credentials, '[a]')).toBe(false);
    expect(readFileSync(credentials, 'utf8')).toBe('[b]\nk = 2\n');
    expect(removeSection(credentials, '[b]')).toBe(true);
    expect(existsSync(dir)).toBe(false);
    expect(removeSection(credentials, '[b]')).toBe(false);
  });

  test('a pre-existing file with a wider mode is tightened to 0600', () => {
    const { dir, config } = profilePaths(tempDir('cordon-aws-profile-'));
    writeSection(config, '[x]', {});
    writeFileSync(config, '[x]\n', { mode: 0o644 });
    writeSection(config, sectionHeader('config', 'agent'), { region: 'eu-west-1' });
    expect(statSync(config).mode & 0o777).toBe(0o600);
    expect(readFileSync(config, 'utf8')).toBe('[x]\n\n[profile agent]\nregion = eu-west-1\n');
    expect(sectionHeader('config', 'default')).toBe('[default]');
    expect(dir).toContain(join('cordon', 'aws'));
  });
});
