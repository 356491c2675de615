/**
 * Cleanup that happens whatever goes wrong: each measurement opens a scope, registers an undo step right
 * after each thing it creates (a process, a database, a broker queue), and the scope runs them in reverse
 * order when the measurement ends — normally, by an error, or when the run is interrupted (SIGINT/SIGTERM
 * run every open scope, innermost first, before the private server goes).
 */

type Step = { readonly what: string; readonly undo: () => Promise<unknown> };

const STEP_TIMEOUT_MS = 60_000;

export class Teardown {
  private steps: Step[] = [];
  private children = new Set<Teardown>();
  private done = false;

  constructor(
    private readonly log: (line: string) => void,
    private readonly parent: Teardown | null = null,
  ) {}

  /** Registers an undo step; it runs once, even if the scope runs twice (signal during a normal end). */
  add(what: string, undo: () => Promise<unknown>): void {
    if (this.done) throw new Error(`teardown already ran; cannot add "${what}"`);
    this.steps.push({ what, undo });
  }

  /** A nested scope, run by its owner when it ends, or by this one if it ends first. */
  scope(): Teardown {
    const child = new Teardown(this.log, this);
    this.children.add(child);
    return child;
  }

  /** Runs every step, newest first; a failing step is reported and the others still run. */
  async run(): Promise<void> {
    if (this.done) return;
    this.done = true;
    for (const child of [...this.children].reverse()) await child.run();
    const steps = this.steps.reverse();
    this.steps = [];
    for (const step of steps) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          step.undo(),
          new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`took more than ${STEP_TIMEOUT_MS / 1000} s`)), STEP_TIMEOUT_MS))),
        ]);
      } catch (error) {
        this.log(`cleanup: ${step.what} failed: ${(error as Error).message}`);
      } finally {
        clearTimeout(timer);
      }
    }
    this.parent?.children.delete(this);
  }

  /** Runs `work` in a fresh scope that is torn down when it settles. */
  async within<T>(work: (scope: Teardown) => Promise<T>): Promise<T> {
    const scope = this.scope();
    try {
      return await work(scope);
    } finally {
      await scope.run();
    }
  }
}
