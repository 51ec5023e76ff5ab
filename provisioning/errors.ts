/** A value that would render a broken file; names the field, what is allowed, what was given. */
export class RenderError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "RenderError";
  }
}

/** Throws one RenderError listing every problem, or returns quietly when there are none. */
export function throwIfProblems(problems: string[]): void {
  if (problems.length > 0) throw new RenderError(problems);
}
