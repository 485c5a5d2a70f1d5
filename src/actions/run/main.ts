import { runEntry } from '../entry.js';
import { parseRunInputs } from './inputs.js';
import { runCommand } from './run.js';

let exitCode = 0;
await runEntry(async (ctx) => {
  const result = await runCommand(parseRunInputs(ctx.env), ctx);
  if (result.exitCode !== 0) {
    exitCode = result.exitCode ?? 1;
    ctx.runner.setFailed(
      `run: the command failed with ${result.exitCode !== null ? `exit code ${result.exitCode}` : `signal ${result.signal}`}`,
    );
  }
});
// The step ends with the command's own exit code, as a run: step does.
if (exitCode > 0) process.exitCode = exitCode;
