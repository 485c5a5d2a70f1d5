/** endIdentity: the step's error when the agent's user could not be removed carries no secret. */
import { describe, expect, test } from '@jest/globals';
import { endIdentity } from '../../../src/actions/run/identity.js';
import type { AgentEnd } from '../../../src/actions/run/agent-protocol.js';
import { SecretRegistry } from '../../../src/platform/mask.js';
import type { Runner } from '../../../src/platform/runner.js';

describe('endIdentity', () => {
  test("hostile: a problem naming a path the agent chose after a secret is scrubbed from the step's error", () => {
    const secret = 'ghs_abcdefghijklmnopqrstuvwxyz0123456789';
    const registry = new SecretRegistry(() => undefined);
    registry.register(secret, { name: 'GH_TOKEN' });
    const agentEnd = {
      userRemoved: false,
      problems: [`/tmp/${secret}/held could not be removed: EBUSY`],
    } as unknown as AgentEnd;
    let message = '';
    try {
      endIdentity({
        agentEnd,
        user: 'cordon-agent-1',
        registry,
        runner: {} as Runner,
        outputs: {},
        outputError: undefined,
      });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain("the agent's user cordon-agent-1 could not be removed");
    expect(message).toContain('could not be removed: EBUSY');
    expect(message).not.toContain(secret);
  });
});
