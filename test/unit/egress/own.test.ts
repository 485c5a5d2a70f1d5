import { describe, expect, test } from '@jest/globals';
import { CordonError } from '../../../src/platform/errors.js';
import { parseEgressInputs } from '../../../src/actions/egress/inputs.js';
import { daemonLists } from '../../../src/actions/egress/launch.js';
import { ownEndpoints, parseRegions } from '../../../src/fence/own.js';

const entries = (regions: string[], env: Record<string, string>) =>
  ownEndpoints(regions, env).map((e) => e.entry);

describe("Cordon's own endpoints", () => {
  test('STS, Secrets Manager and SSM of each region, from the input and AWS_REGION/AWS_DEFAULT_REGION', () => {
    expect(
      entries(['eu-west-1'], { AWS_REGION: 'us-east-1', AWS_DEFAULT_REGION: 'us-east-1' }).sort(),
    ).toEqual([
      'secretsmanager.eu-west-1.amazonaws.com',
      'secretsmanager.us-east-1.amazonaws.com',
      'ssm.eu-west-1.amazonaws.com',
      'ssm.us-east-1.amazonaws.com',
      'sts.eu-west-1.amazonaws.com',
      'sts.us-east-1.amazonaws.com',
    ]);
    expect(entries(['cn-north-1'], {})).toContain('sts.cn-north-1.amazonaws.com.cn');
  });

  test('the ID-token host and overridden AWS endpoints by name; addresses and junk are skipped', () => {
    const got = entries([], {
      ACTIONS_ID_TOKEN_REQUEST_URL: 'https://pipelines.actions.githubusercontent.com/abc/_apis/token?x=1',
      AWS_ENDPOINT_URL_STS: 'https://sts.internal.example:8443/',
      AWS_ENDPOINT_URL: 'http://127.0.0.1:5000',
      AWS_ENDPOINT_URL_SSM: 'not a url',
      AWS_REGION: '$(curl evil)',
    });
    expect(got.sort()).toEqual(['pipelines.actions.githubusercontent.com', 'sts.internal.example']);
  });

  test('a bad aws-regions entry is an error naming the input', () => {
    let e: unknown;
    try {
      parseRegions('us-east-1\nevil.test');
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(CordonError);
    expect((e as CordonError).message).toContain('aws-regions');
    expect((e as CordonError).message).toContain('evil.test');
  });

  test("the runner's list gets them, the agent's only what allowed-domains lists", () => {
    const s = parseEgressInputs({
      'INPUT_AWS-REGIONS': 'us-east-1',
      'INPUT_ALLOWED-DOMAINS': 'ssm.us-east-1.amazonaws.com',
    });
    const { domains, agentDomains } = daemonLists(s);
    const names = (l: typeof domains) => l.map((d) => d.name);
    expect(names(domains)).toEqual(expect.arrayContaining(['sts.us-east-1.amazonaws.com', 'api.github.com']));
    expect(names(agentDomains)).toEqual(['ssm.us-east-1.amazonaws.com']);
  });
});
