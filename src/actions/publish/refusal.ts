/**
 * A refusal of publish's: what, why and the fix, shown as the step's error and written as
 * its `publish.refused` line.
 */
export class Refusal extends Error {
  constructor(
    readonly what: string,
    readonly why: string,
    readonly fix: string,
    readonly input?: string,
  ) {
    super(what);
  }
}
